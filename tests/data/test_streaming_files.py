"""A Parquet folder read in batches holds the rows ``load_pool`` loads: same split, same file
order, same column types; what cannot be read so is refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, IterableDataset

from hf_mig import MIGSelector
from hf_mig.core.encoding import DegeneratePoolError
from hf_mig.data.io import load_pool
from hf_mig.data.streaming import StreamingPool
from tests.core.test_disk_encoding import make_table
from tests.selectors.test_streaming_select import GRAPH


def all_rows(pool: StreamingPool) -> list[dict]:
    return [row for table in pool.batches(batch_size=7) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A local copy of a Hub dataset: ``data/train-*`` (20 rows) and ``data/test-*`` (10)."""
    folder = tmp_path_factory.mktemp("copy") / "hub"
    (folder / "data").mkdir(parents=True)
    table = make_table(seed=5, rows=30)
    pq.write_table(table.slice(0, 20), folder / "data" / "train-00000-of-00001.parquet")
    pq.write_table(table.slice(20), folder / "data" / "test-00000-of-00001.parquet")
    return folder


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_of_a_hub_layout_is_the_split_loaded_in_memory(hub, split):
    memory = load_pool(hub, split=split)
    pool = StreamingPool(hub, split=split)
    assert pool.num_rows == memory.num_rows == (20 if split == "train" else 10)
    assert all_rows(pool) == memory.to_list()
    k = 6
    expected = MIGSelector(k=k, label_graph=GRAPH).select_indices(memory)
    assert np.array_equal(MIGSelector(k=k, label_graph=GRAPH).select_indices(pool), expected)
    if split == "train":  # a path means the train split, as load_pool(path)
        picks = MIGSelector(k=k, label_graph=GRAPH).select_indices(str(hub))
        assert np.array_equal(picks, expected)


def test_a_missing_split_names_the_splits_found(hub):
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        StreamingPool(hub, split="validation")


def test_files_are_read_in_the_order_datasets_reads_them(tmp_path):
    folder = tmp_path / "pool"
    (folder / "a").mkdir(parents=True)
    table = make_table(seed=7, rows=9)
    for i, name in enumerate(["a/x.parquet", "a-b.parquet", "b.parquet"]):
        pq.write_table(table.slice(3 * i, 3), folder / name)
    pq.write_table(table, folder / ".b.parquet.hf-mig-tmp-host-1-2.parquet")  # a temporary
    memory = load_pool(folder)
    pool = StreamingPool(folder)
    assert [p.relative_to(folder).as_posix() for p in pool.files] == [
        "a-b.parquet",
        "a/x.parquet",
        "b.parquet",
    ]
    assert all_rows(pool) == memory.to_list()


def test_cli_streaming_reads_the_split_asked(hub, tmp_path, run_main):
    graph = tmp_path / "g.npz"
    GRAPH.save(graph)
    select = ["select", hub, "--streaming", "-k", 5, "--graph", graph]
    for split, rows in (("train", 20), ("test", 10)):
        out = tmp_path / f"{split}.jsonl"
        code, stdout, stderr = run_main([*select, "-o", out, "--split", split])
        assert code == 0, stderr
        assert f"selected 5 of {rows} rows (streaming" in stdout
        memory = load_pool(hub, split=split)
        picks = MIGSelector(k=5, label_graph=GRAPH).select_indices(memory)
        written = [json.loads(line)["labels"] for line in out.read_text().splitlines()]
        assert written == memory.select(picks)["labels"]
    code, _, stderr = run_main([*select, "-o", tmp_path / "x.jsonl", "--split", "dev"])
    assert code != 0 and "no split 'dev'" in stderr and not (tmp_path / "x.jsonl").exists()


def _two_files(folder, first: pa.Table, second: pa.Table):
    folder.mkdir(parents=True)
    pq.write_table(first, folder / "a.parquet")
    pq.write_table(second, folder / "b.parquet")
    return folder


def test_a_type_that_does_not_cast_exactly_is_refused_before_any_work(tmp_path, monkeypatch):
    table = make_table(seed=9, rows=40)
    scores = table.column("score").to_numpy()
    first = table.slice(0, 20).set_column(1, "score", pa.array(np.ceil(scores[:20]), pa.int64()))
    folder = _two_files(tmp_path / "pool", first, table.slice(20))  # b: score is double
    with pytest.raises(ValueError) as info:
        StreamingPool(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'b.parquet'}: column 'score' is double")
    assert "int64" in message and str(folder / "a.parquet") in message
    cache = tmp_path / "cache"
    monkeypatch.setenv("HF_MIG_CACHE", str(cache))
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match="column 'score' is double"):
        MIGSelector(k=5, label_graph=GRAPH).select_to_file(folder, out)
    assert not out.exists() and not cache.exists()  # nothing encoded, nothing written
    other = _two_files(tmp_path / "names", table.slice(0, 20), table.slice(20).drop(["score"]))
    with pytest.raises(ValueError, match=r"b\.parquet: columns .* differ"):
        StreamingPool(other)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_types_that_cast_exactly_are_cast_as_in_memory(tmp_path, suffix):
    table = make_table(seed=11, rows=60)
    second = table.slice(30)
    second = pa.table(  # integer scores, 32-bit token counts, other column order
        {
            "num_tokens": second.column("num_tokens").cast(pa.int32()),
            "score": pa.array(np.ceil(second.column("score").to_numpy()), pa.int64()),
            "labels": second.column("labels").cast(pa.large_list(pa.large_string())),
        }
    )
    folder = _two_files(tmp_path / "pool", table.slice(0, 30), second)
    memory = load_pool(folder)
    pool = StreamingPool(folder)
    assert all_rows(pool) == memory.to_list()
    assert pool.schema.field("score").type == pa.float64()
    disk_out, memory_out = tmp_path / f"disk{suffix}", tmp_path / f"memory{suffix}"
    options = {"k": 12, "label_graph": GRAPH, "record_gains": True}
    picks = MIGSelector(**options).select_to_file(folder, disk_out)
    assert np.array_equal(MIGSelector(**options).select_to_file(memory, memory_out), picks)
    assert disk_out.read_bytes() == memory_out.read_bytes()


def _no_rows():
    yield from ()


def test_a_pool_without_rows_is_refused(tmp_path):
    empty = make_table(rows=0)
    pq.write_table(empty, tmp_path / "empty.parquet")
    (tmp_path / "folder").mkdir()
    pq.write_table(empty, tmp_path / "folder" / "part-0.parquet")
    pq.write_table(empty, tmp_path / "folder" / "part-1.parquet")
    known = Dataset.from_dict({"labels": [["a"]], "score": [1.0]}).to_iterable_dataset().take(0)
    unknown = IterableDataset.from_generator(_no_rows)  # column names unknown
    for source in (tmp_path / "empty.parquet", tmp_path / "folder", known, unknown):
        with pytest.raises(DegeneratePoolError, match="the pool has no rows"):
            StreamingPool(source)
        with pytest.raises(DegeneratePoolError, match="the pool has no rows"):
            MIGSelector(k=1, label_graph=GRAPH).select_streaming(source)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="the folder holds no .parquet file"):
        StreamingPool(tmp_path / "none")


def test_a_folder_datasets_reads_from_other_files_is_refused(tmp_path):
    folder = tmp_path / "json"
    folder.mkdir()
    for i in range(2):
        (folder / f"part-{i}.jsonl").write_text('{"labels": ["a"], "score": 1.0}\n')
    pq.write_table(make_table(rows=3), folder / "odd.parquet")  # outnumbered: datasets skips it
    with pytest.raises(ValueError, match=r"part-0\.jsonl, not from Parquet files"):
        StreamingPool(folder)


def test_a_single_file_is_its_own_pool_whatever_the_split(tmp_path):
    table = make_table(seed=2, rows=15)
    pq.write_table(table, tmp_path / "test-pool.parquet")
    pool = StreamingPool(tmp_path / "test-pool.parquet", split="anything")
    assert all_rows(pool) == load_pool(tmp_path / "test-pool.parquet").to_list()


def test_the_features_of_the_dataset_card_set_the_types(tmp_path):
    folder = _two_files(
        tmp_path / "card",
        pa.table({"labels": [["label 01"]], "score": pa.array([1], pa.int32())}),
        pa.table({"labels": [["label 02"]], "score": [2.5]}),
    )
    (folder / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: labels\n    sequence: string\n"
        "  - name: score\n    dtype: float64\n---\n"
    )
    pool = StreamingPool(folder)
    assert pool.schema.field("score").type == pa.float64()
    expected = [{"labels": ["label 01"], "score": 1.0}, {"labels": ["label 02"], "score": 2.5}]
    assert all_rows(pool) == load_pool(folder).to_list() == expected


def test_dictionary_encoded_columns_are_read_as_their_values(tmp_path):
    table = make_table(seed=12, rows=40)
    source = pa.array([("web", "books")[i % 2] for i in range(40)]).dictionary_encode()
    table = table.append_column("source", source)  # a pandas categorical, as Parquet keeps it
    folder = tmp_path / "pool"
    folder.mkdir()
    pq.write_table(table, folder / "part-0.parquet")
    memory = load_pool(folder)
    pool = StreamingPool(folder)
    assert all_rows(pool) == memory.to_list()
    disk_out, memory_out = tmp_path / "disk.jsonl", tmp_path / "memory.jsonl"
    picks = MIGSelector(10, label_graph=GRAPH).select_to_file(folder, disk_out)
    in_memory = MIGSelector(10, label_graph=GRAPH).select_to_file(memory, memory_out)
    assert np.array_equal(in_memory, picks)
    assert disk_out.read_bytes() == memory_out.read_bytes()
