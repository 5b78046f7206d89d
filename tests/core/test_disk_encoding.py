"""Encoding a pool in batches into memory-mapped files equals encoding it whole."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_mig.core.disk_csr import NpyAppender, encode_batches, open_encoding
from hf_mig.core.encoding import (
    PoolValidationError,
    encode_batch,
    encode_pool,
    unique_labels,
    vocabulary_array,
)
from hf_mig.core.inputs import _label_id_array
from hf_mig.data.streaming import StreamingPool, pool_encoding, pool_labels

LABELS = [f"label {i:02d}" for i in range(60)]
SIZES = (700, 1, 1300, 999)  # rows per Parquet file


def make_table(seed: int = 0, rows: int = sum(SIZES)) -> pa.Table:
    """Rows of 0 to 6 labels: vocabulary labels, labels outside it, repeats, empty rows."""
    rng = np.random.default_rng(seed)
    names = LABELS + [f"outside {i}" for i in range(8)]
    p = 1.0 / np.arange(1, len(names) + 1)
    labels = [
        [names[j] for j in rng.choice(len(names), size=rng.integers(0, 7), p=p / p.sum())]
        for _ in range(rows)
    ]
    scores = np.round(rng.gamma(2.0, 2.0, size=rows), 3)
    scores[rng.random(rows) < 0.05] = 0.0
    return pa.table({"labels": labels, "score": scores, "num_tokens": rng.integers(1, 50, rows)})


def write_shards(table: pa.Table, folder, sizes=SIZES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, size in enumerate(sizes):
        pq.write_table(table.slice(start, size), folder / f"part-{i}.parquet")
        start += size


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    table = make_table()
    folder = tmp_path_factory.mktemp("pool") / "shards"
    write_shards(table, folder)
    return table, folder


def same_encoding(disk, memory) -> None:
    for name in ("indptr", "label_ids", "scores", "label_occurrences"):
        assert np.array_equal(getattr(disk, name), getattr(memory, name)), name
    assert disk.report == memory.report
    assert list(disk.report) == list(memory.report)
    assert disk.vocabulary == memory.vocabulary


def test_batches_on_disk_equal_the_whole_table(shards, tmp_path):
    table, folder = shards
    vocabulary = LABELS[:50]  # labels 50..59 and "outside *" are outside the vocabulary
    disk, costs = pool_encoding(
        StreamingPool(folder), vocabulary, cache=tmp_path, batch_size=97, cost_column="num_tokens"
    )
    memory = encode_pool(table, vocabulary)
    same_encoding(disk, memory)
    assert memory.report["labels_outside_vocabulary"] > 0
    assert memory.report["repeated_labels"] > 0
    assert memory.report["rows_without_labels"] > 0
    assert np.array_equal(costs, table.column("num_tokens").to_numpy().astype(float))
    # norm (occurrences with repeats) gives the same weights
    assert np.array_equal(disk.weights(True), memory.weights(True))
    # memory-mapped, read-only, read in place
    for arr in (disk.indptr, disk.label_ids, disk.scores, disk.label_occurrences):
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
    assert disk.label_ids.dtype == np.int32
    assert disk.weights(False) is disk.scores
    assert np.shares_memory(_label_id_array(disk.label_ids), disk.label_ids)


def test_dictionary_encoded_labels_give_the_same_batch(shards):
    table = shards[0]
    vocab = vocabulary_array(LABELS[:40])
    plain = encode_batch(table, vocab)
    labels = table.column("labels").combine_chunks()
    dictionary = pa.ListArray.from_arrays(labels.offsets, labels.values.dictionary_encode())
    coded = encode_batch(table.set_column(0, "labels", dictionary), vocab)
    for name in ("counts", "label_ids", "occurrences", "scores"):
        assert np.array_equal(getattr(plain, name), getattr(coded, name))
    assert plain.tallies == coded.tallies and plain.outside == coded.outside


def test_pool_labels_are_the_sorted_distinct_labels(shards, tmp_path, monkeypatch):
    table, folder = shards
    assert pool_labels(StreamingPool(folder), cache=tmp_path) == unique_labels(table, "labels")

    def unread(*args, **kwargs):
        raise AssertionError("the files were read again: the cached labels were not used")

    monkeypatch.setattr(StreamingPool, "batches", unread)
    assert pool_labels(StreamingPool(folder), cache=tmp_path) == unique_labels(table, "labels")


def _bad_pool(tmp_path, row: int, **change):
    table = make_table(rows=3000)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for name, value in change.items():
        columns[name][row] = value
    folder = tmp_path / "bad"
    write_shards(pa.table(columns), folder, sizes=(1000, 1000, 1000))
    return StreamingPool(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labels": ["label 01", None]}, "row 2345: column 'labels' contains a null label"),
        ({"labels": ["label 01", "  "]}, "row 2345: column 'labels' contains the label '  '"),
        ({"labels": None}, "row 2345: column 'labels' is null"),
        ({"score": None}, "row 2345: column 'score' is null"),
        ({"score": -1.0}, "row 2345: column 'score' is -1.0"),
        ({"score": float("nan")}, "row 2345: column 'score' is nan"),
    ],
)
def test_errors_name_the_row_in_the_whole_pool(tmp_path, change, message):
    pool = _bad_pool(tmp_path, 2345, **change)
    with pytest.raises(PoolValidationError, match=message):
        pool_encoding(pool, LABELS, cache=False, batch_size=300)
    if "labels" in change and change["labels"] is not None:
        with pytest.raises(PoolValidationError, match=message):
            pool_labels(pool, cache=False, batch_size=300)


def test_cache_is_keyed_by_content_not_path(shards, tmp_path):
    table, folder = shards
    cache = tmp_path / "cache"
    first, _ = pool_encoding(StreamingPool(folder), LABELS, cache=cache)
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)
    again, _ = pool_encoding(StreamingPool(copy), LABELS, cache=cache)
    assert again.indptr.filename == first.indptr.filename  # same entry: a hit
    assert len(list(cache.iterdir())) == 1
    # changed content (one score) -> another entry
    scores = table.column("score").to_numpy().copy()
    scores[5] += 1.0
    write_shards(table.set_column(1, "score", pa.array(scores)), copy)
    changed, _ = pool_encoding(StreamingPool(copy), LABELS, cache=cache)
    assert changed.indptr.filename != first.indptr.filename
    assert changed.scores[5] == scores[5]
    # another vocabulary or another column -> another entry
    pool_encoding(StreamingPool(copy), LABELS[:10], cache=cache)
    assert len(list(cache.iterdir())) == 3
    # no cache: the encoding is made in a temporary folder under $HF_MIG_CACHE, removed after
    scratch = tmp_path / "hf-mig-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_MIG_CACHE", str(scratch))
        uncached, _ = pool_encoding(StreamingPool(folder), LABELS, cache=False)
    np.testing.assert_array_equal(uncached.label_ids, first.label_ids)
    assert [p for p in scratch.rglob("*") if p.is_file()] == []
    assert len(list(cache.iterdir())) == 3


def test_npy_appender_writes_the_final_length(tmp_path):
    path = tmp_path / "a.npy"
    out = NpyAppender(path, np.int32)
    out.append(np.arange(5))
    out.append(np.array([], dtype=np.int64))
    out.append([7, 8])
    out.close()
    assert np.load(path).tolist() == [0, 1, 2, 3, 4, 7, 8]
    assert np.load(path, mmap_mode="r").dtype == np.int32


def test_encode_batches_writes_meta_last_and_opens(tmp_path, shards):
    table = shards[0]
    batches = [table.slice(0, 1000), table.slice(1000)]
    report = encode_batches(batches, LABELS, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["report"] == report == encode_pool(table, LABELS).report
    encoding, costs = open_encoding(tmp_path, LABELS)
    assert costs is None and encoding.num_rows == table.num_rows
    with pytest.raises(ValueError, match="encoded against 60 labels, not 3"):
        open_encoding(tmp_path, LABELS[:3])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("candidates", [1, 7, 60, 900])
def test_candidate_heap_picks_what_the_full_scan_picks(seed, candidates):
    """The lazy engine for large pools keeps only ``candidates`` rows in its heap; with exact
    ties (duplicate rows, integer scores) its picks, gains and trace are the full scan's."""
    from hf_mig import Objective, greedy_select
    from tests.core.test_greedy import random_graph, random_pool

    indptr, ids, scores = random_pool(1500, 40, seed)
    p = random_graph(40, seed).propagation_matrix()
    objective = Objective("pow", 1e-6, 0.8)
    scan = greedy_select(indptr, ids, scores, p, 400, objective, engine="scan")
    lazy = greedy_select(indptr, ids, scores, p, 400, objective, candidates=candidates)
    assert lazy.indices.tolist() == scan.indices.tolist()
    assert np.array_equal(lazy.gains, scan.gains)
    assert np.array_equal(lazy.objective_trace, scan.objective_trace)
    assert lazy.stats["refreshes"] >= 1 and lazy.stats["evaluations"] >= 1500
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        greedy_select(indptr, ids, scores, p, 4, objective, candidates=0)
