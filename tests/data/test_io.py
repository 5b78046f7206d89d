"""Tests for hf_mig.data.io on the real pools in shared/data."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import datasets
import pytest

from hf_mig.data.io import PoolFormatError, load_pool, save_dataset

datasets.disable_progress_bars()

EXAMPLE = "mig_authors/data/example.jsonl"
SHAREGPT = "sharegpt/sharegpt_v3_slice_a_0-1999.json"


@pytest.fixture(scope="module")
def sharegpt(data_dir: Path) -> datasets.Dataset:
    return load_pool(data_dir / SHAREGPT)


# --------------------------------------------------------------------------------------
# malformed JSON Lines: the authors' example.jsonl


def test_example_jsonl_names_line_3(data_dir: Path) -> None:
    path = data_dir / EXAMPLE
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.lineno == 3
    assert err.path == str(path)
    text = str(err)
    assert text.startswith(f"{path}: line 3: invalid JSON (Extra data at column 2540)")
    assert '"annotation": {"instag"' in text  # the excerpt shows where it went wrong
    assert len(text) < len(str(path)) + 250  # an excerpt, not the whole 2,800-char line


def test_example_jsonl_skip_bad_lines(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = data_dir / EXAMPLE
    with caplog.at_level(logging.WARNING, logger="hf_mig.data.io"):
        with pytest.warns(UserWarning) as record:
            ds = load_pool(path, skip_bad_lines=True)
    message = str(record[0].message)
    assert "skipped 1 malformed line(s): 3;" in message
    assert "loaded 9 good line(s)" in message
    assert any("skipped 1 malformed line(s): 3;" in r.getMessage() for r in caplog.records)
    assert ds.num_rows == 9
    assert ds.column_names == ["dialogs", "source", "_id", "ifd_score", "annotation"]
    lines = path.read_text(encoding="utf-8").splitlines()
    expected_ids = [json.loads(line)["_id"] for i, line in enumerate(lines) if i != 2]
    assert ds["_id"] == expected_ids
    assert ds[0]["_id"] == "09968d11fd5b70c445cf361e"
    assert ds[0]["annotation"]["deita"]["quality_scores"] == [3.5785536465098664]


def test_skip_bad_lines_many(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    good = [json.dumps({"a": i}) for i in range(3)]
    path.write_text("\n".join([good[0], "{oops", "", "[1, 2]", good[1], "42", good[2]]) + "\n")
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    assert info.value.lineno == 2
    assert "(2 more bad line(s); skip_bad_lines=True loads the rest)" in str(info.value)
    with pytest.warns(UserWarning, match=r"skipped 3 malformed line\(s\): 2, 4, 6;"):
        ds = load_pool(path, skip_bad_lines=True)
    assert ds["a"] == [0, 1, 2]


def test_good_file_does_not_warn(parity_dir: Path) -> None:
    path = parity_dir / "pool.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_pool(path, skip_bad_lines=True)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert ds.num_rows == len(rows) == 2000
    assert ds.column_names == list(rows[0])
    assert ds.to_list() == rows  # exact, floats included


def test_all_lines_bad(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{x\n{y\n")
    with pytest.raises(PoolFormatError, match="line 1: no valid line in the file"):
        load_pool(path, skip_bad_lines=True)


def test_malformed_json_array_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n{"a": 1},\n{"a": 2}\n{"a": 3}\n]\n')
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    assert info.value.lineno == 4
    assert "Expecting ',' delimiter" in str(info.value)


# --------------------------------------------------------------------------------------
# reading real pools


def test_json_array_pools(data_dir: Path) -> None:
    lima = load_pool(data_dir / "lima" / "lima.json")
    assert lima.num_rows == 1029
    assert lima.column_names == ["instruction", "input", "output", "history"]
    assert lima[0]["instruction"].startswith("Can brain cells move?")
    demo = load_pool(data_dir / "llama_factory_demo" / "alpaca_en_demo.json")
    assert demo.num_rows == 999


def test_sharegpt_slice(sharegpt: datasets.Dataset) -> None:
    assert sharegpt.num_rows == 2000
    assert sharegpt[1]["id"] == "i6IyJda_0"
    assert sum(1 for c in sharegpt["conversations"] if not c) == 15


def test_csv_pool(data_dir: Path) -> None:
    ds = load_pool(data_dir / "car" / "Ranking" / "data" / "expert-revised" / "APE_score_valid.csv")
    assert ds.num_rows == 508
    assert {"src", "score"} <= set(ds.column_names)


# --------------------------------------------------------------------------------------
# saving and round trips


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.parquet", "out_folder"])
def test_round_trip(tmp_path: Path, sharegpt: datasets.Dataset, name: str) -> None:
    # more rows than datasets' default JSON batch (1,000), and empty conversations
    ds = sharegpt.select(range(1200))
    out = tmp_path / "nested" / "dir" / name
    save_dataset(ds, out)
    assert out.exists()
    back = load_pool(out)
    assert back.num_rows == 1200
    assert back.to_list() == ds.to_list()
    assert sorted(p.name for p in out.parent.iterdir()) == [name]  # no temporary left behind


def test_json_output_is_one_array(tmp_path: Path, sharegpt: datasets.Dataset) -> None:
    out = tmp_path / "subset.json"
    save_dataset(sharegpt.select(range(1100)), out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(data, list) and len(data) == 1100
    assert data[1]["id"] == "i6IyJda_0"


def test_csv_round_trip(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "score": [1.5, 2.0]})
    out = tmp_path / "x" / "subset.csv"
    save_dataset(ds, out)
    assert load_pool(out).to_dict() == {"id": ["a", "b"], "score": [1.5, 2.0]}


def test_dataset_dict_folder(tmp_path: Path) -> None:
    folder = tmp_path / "dd"
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"x": [1, 2, 3]}),
        test=datasets.Dataset.from_dict({"x": [9]}),
    ).save_to_disk(str(folder))
    assert load_pool(folder)["x"] == [1, 2, 3]
    assert load_pool(folder, split="test")["x"] == [9]
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        load_pool(folder, split="validation")


# --------------------------------------------------------------------------------------
# bad sources


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "pool.txt"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match=r"unsupported file extension '\.txt'"):
        load_pool(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pool(tmp_path / "missing.jsonl")


def test_hub_id_offline() -> None:
    import huggingface_hub.constants

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1")
    with pytest.raises(FileNotFoundError) as info:
        load_pool("someone/pool")
    text = str(info.value)
    assert "'someone/pool' is not a local file or folder" in text
    assert "loading it as a Hub dataset failed: ConnectionError" in text


def test_hub_id_is_passed_split(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def fake(path: str, **kwargs: object) -> datasets.Dataset:
        seen.update(path=path, **kwargs)
        return datasets.Dataset.from_dict({"x": [1]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert load_pool("someone/pool", split="test", revision="main")["x"] == [1]
    assert seen == {"path": "someone/pool", "split": "test", "revision": "main"}


# --------------------------------------------------------------------------------------
# invalid UTF-8: found before parsing, skipped only on request


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def _utf8_pool(path: Path) -> list[dict]:
    rows = [{"id": i, "text": f"row {i} \u00e9\U0001f600"} for i in range(6)]
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    lines.insert(2, b'{"id": 100, "text": "bad \xff here"}')
    lines.insert(5, b'{"id": 101, "text": "cut \xe2\x82"}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    return rows


def test_invalid_utf8_names_line_and_offset(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "pool.jsonl"
    _utf8_pool(path)
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    err = info.value
    first_line = (
        len(json.dumps({"id": 0, "text": "row 0 \u00e9\U0001f600"}, ensure_ascii=False).encode())
        + 1
    )
    second_line = first_line  # same length
    assert err.lineno == 3
    assert err.offset == first_line + second_line + len(b'{"id": 100, "text": "bad ')
    assert str(err).startswith(f"{path}: line 3: invalid UTF-8: byte(s) b'\\xff' at byte offset")
    assert "(1 more bad line(s); skip_bad_lines=True loads the rest)" in str(err)
    assert not private_cache.exists() or not any(private_cache.rglob("*.arrow"))  # no work done


def test_invalid_utf8_skipped_and_counted(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "pool.jsonl"
    rows = _utf8_pool(path)
    with pytest.warns(
        UserWarning,
        match=r"skipped 2 malformed line\(s\): 3, 6; first: invalid "
        r"UTF-8.*loaded 6 good line\(s\)",
    ):
        ds = load_pool(path, skip_bad_lines=True)
    assert ds.to_list() == rows
    # loaded again from the cache: still warned, and still refused without skip_bad_lines
    with pytest.warns(UserWarning, match=r"skipped 2 malformed line\(s\): 3, 6;"):
        assert load_pool(path, skip_bad_lines=True).to_list() == rows
    with pytest.raises(PoolFormatError, match="line 3: invalid UTF-8"):
        load_pool(path)


def test_invalid_utf8_csv_skipped(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "pool.csv"
    path.write_bytes(b'"id","text"\n1,"a"\n2,"b\xff"\n3,"c"\n')
    with pytest.raises(PoolFormatError, match="line 3: invalid UTF-8"):
        load_pool(path)
    with pytest.warns(UserWarning, match=r"skipped 1 malformed line\(s\): 3;"):
        ds = load_pool(path, skip_bad_lines=True)
    assert ds.to_list() == [{"id": 1, "text": "a"}, {"id": 3, "text": "c"}]


def test_parquet_never_gets_invalid_utf8(tmp_path: Path, private_cache: Path) -> None:
    """The old path loaded such a line silently and wrote a parquet file with invalid UTF-8."""
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"a": "b\xff\xfec"}\n{"a": "z"}\n')
    with pytest.warns(UserWarning):
        ds = load_pool(path, skip_bad_lines=True)
    save_dataset(ds, tmp_path / "out.parquet")
    assert load_pool(tmp_path / "out.parquet")["a"][:] == ["ok", "z"]


# --------------------------------------------------------------------------------------
# errors that name the file, the row and the field


def test_empty_jsonl_is_an_error(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"")
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    assert str(info.value) == f"{path}: the file holds no rows: it is empty"
    assert info.value.lineno is None


@pytest.mark.parametrize(
    ("rows", "lineno", "field", "message"),
    [
        (
            [{"id": 1, "score": 1.5}, {"id": 2, "score": 2.0}, {"id": 3, "score": "high"}],
            3,
            "score",
            "field 'score' is a string ('high') but a number in line 1",
        ),
        (
            [{"labels": ["a", "b"]}, {"labels": []}, {"labels": None}, {"labels": "a"}],
            4,
            "labels",
            "field 'labels' is a string ('a') but an array in line 1",
        ),
        (
            [{"labels": ["a"]}, {"labels": [["a"]]}],
            2,
            "labels[]",
            "field 'labels[]' is an array (['a']) but a string in line 1",
        ),
    ],
)
def test_mixed_types_name_line_and_field(
    tmp_path: Path, private_cache: Path, rows: list, lineno: int, field: str, message: str
) -> None:
    for name in ("pool.jsonl", "pool.json"):
        path = tmp_path / name
        if name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
            lineno_here = lineno + 1
        with pytest.raises(PoolFormatError) as info:
            load_pool(path)
        want = lineno if name.endswith(".jsonl") else lineno_here
        assert info.value.lineno == want and info.value.field == field
        assert str(info.value).startswith(f"{path}: line {want}: ")
        assert message.replace("line 1", f"line {1 if name.endswith('.jsonl') else 2}") in str(
            info.value
        )


# --------------------------------------------------------------------------------------
# caches keyed by content


def _rewrite_same_size_and_time(path: Path, data: bytes) -> None:
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _pool_bytes(name: str, ids: list[str], tmp: Path) -> bytes:
    ds = datasets.Dataset.from_dict({"id": ids, "score": [0.25] * len(ids)})
    out = tmp / f"scratch-{ids[0]}" / name
    save_dataset(ds, out)
    return out.read_bytes()


@pytest.mark.parametrize("name", ["pool.jsonl", "pool.json", "pool.csv", "pool.parquet"])
def test_rewritten_pool_loads_new_rows(
    tmp_path: Path, private_cache: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    old = _pool_bytes(name, ["a1", "a2", "a3"], tmp_path)
    new = _pool_bytes(name, ["b1", "b2", "b3"], tmp_path)
    path = tmp_path / name
    path.write_bytes(old)
    assert load_pool(path)["id"][:] == ["a1", "a2", "a3"]
    with caplog.at_level(logging.INFO, logger="hf_mig.data.io"):
        assert load_pool(path)["id"][:] == ["a1", "a2", "a3"]
    assert any("reusing the table cached at" in r.getMessage() for r in caplog.records)
    _rewrite_same_size_and_time(path, new)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hf_mig.data.io"):
        assert load_pool(path)["id"][:] == ["b1", "b2", "b3"]
    assert not any("reusing" in r.getMessage() for r in caplog.records)


def test_rewritten_folder_loads_new_rows(tmp_path: Path, private_cache: Path) -> None:
    folder = tmp_path / "pool"
    folder.mkdir()
    data = folder / "train.jsonl"
    data.write_text('{"id": "a1"}\n{"id": "a2"}\n')
    assert load_pool(folder)["id"][:] == ["a1", "a2"]
    _rewrite_same_size_and_time(data, b'{"id": "b1"}\n{"id": "b2"}\n')
    assert load_pool(folder)["id"][:] == ["b1", "b2"]


def test_cache_hit_does_not_parse_again(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hf_mig.data.io as hio

    path = tmp_path / "pool.jsonl"
    path.write_text('{"x": 0.828462899430404}\n')
    first = load_pool(path)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(hio, "_build_json", no_parsing)
    again = load_pool(path)
    assert again["x"][:] == first["x"][:] == [0.828462899430404]
    assert again.cache_files[0]["filename"] == first.cache_files[0]["filename"]
    assert str(private_cache / "hf_mig_pools") in first.cache_files[0]["filename"]
    copy = tmp_path / "copy.jsonl"  # same bytes elsewhere: the same cached table
    copy.write_bytes(path.read_bytes())
    assert load_pool(copy).cache_files == first.cache_files


def test_text_file_kwargs(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text('{"id": 1, "score": 2}\n')
    ds = load_pool(
        path,
        features=datasets.Features(id=datasets.Value("string"), score=datasets.Value("float32")),
    )
    assert ds[0] == {"id": "1", "score": 2.0} and ds.features["score"].dtype == "float32"
    assert load_pool(path, keep_in_memory=True).cache_files == []
    other = tmp_path / "elsewhere"
    assert load_pool(path, cache_dir=str(other))[0] == {"id": 1, "score": 2}
    assert any((other / "hf_mig_pools").iterdir())
    with pytest.raises(TypeError, match="num_proc cannot be used with a local .jsonl file"):
        load_pool(path, num_proc=2)


# --------------------------------------------------------------------------------------
# the demo's outputs


def _demo_inputs() -> tuple[datasets.Dataset, object]:
    import numpy as np
    import scipy.sparse as sp

    from hf_mig.annotate.graph import LabelGraph

    subset = datasets.Dataset.from_dict(
        {"id": ["x", "y"], "mig_gain": [0.828462899430404, 1.234e-12], "labels": [["a"], []]}
    )
    graph = LabelGraph(["a", "b"], sp.csr_matrix(np.eye(2)), threshold=0.8)
    return subset, graph


def test_demo_replaces_only_its_own_outputs(tmp_path: Path) -> None:
    from hf_mig.cli.demo import DEMO_MANIFEST, check_demo_outputs, write_demo_outputs
    from hf_mig.data.io import OutputExistsError

    subset, graph = _demo_inputs()
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert check_demo_outputs(out) == {"mig_subset.jsonl": False, "label_graph.npz": False}
    write_demo_outputs(subset, graph, out)
    assert load_pool(out / "mig_subset.jsonl").to_list() == subset.to_list()  # exact floats
    # a second run into the same folder replaces the demo's own files
    assert check_demo_outputs(out) == {"mig_subset.jsonl": True, "label_graph.npz": True}
    write_demo_outputs(subset.select([1]), graph, out)
    assert load_pool(out / "mig_subset.jsonl")["id"][:] == ["y"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [DEMO_MANIFEST, "label_graph.npz", "mig_subset.jsonl", "notes.txt"]
    )
    assert (out / "notes.txt").read_text() == "mine"
    # a file the user changed since, or wrote themselves, is never replaced
    (out / "mig_subset.jsonl").write_text('{"id": "edited"}\n')
    with pytest.raises(OutputExistsError, match="mig_subset.jsonl: exists and was not written"):
        check_demo_outputs(out)
    with pytest.raises(OutputExistsError):
        write_demo_outputs(subset, graph, out)
    assert (out / "mig_subset.jsonl").read_text() == '{"id": "edited"}\n'
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "label_graph.npz").write_bytes(b"someone else's")
    with pytest.raises(OutputExistsError, match="label_graph.npz: exists"):
        check_demo_outputs(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == ["label_graph.npz"]
