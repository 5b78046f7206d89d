"""Tests for hf_mig.io on the real pools in shared/data."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import datasets
import pytest

from hf_mig.io import PoolFormatError, load_pool, save_dataset

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
    with caplog.at_level(logging.WARNING, logger="hf_mig.io"):
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
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_pool(parity_dir / "pool.jsonl", skip_bad_lines=True)
    assert ds.num_rows == 2000
    assert ds.column_names == ["id", "dialogs", "labels", "score"]


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
