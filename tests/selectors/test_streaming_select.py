"""MIG from a pool on disk (Parquet shards, an IterableDataset) picks what it picks in memory."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from hf_mig import LabelGraph, MIGSelector
from hf_mig.core.encoding import DegeneratePoolError
from tests.core.test_disk_encoding import LABELS, SIZES, make_table, write_shards


def random_graph(labels, seed=1, edges=120) -> LabelGraph:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(labels), edges)
    b = rng.integers(0, len(labels), edges)
    keep = a != b
    weights = rng.uniform(0.5, 1.0, int(keep.sum()))
    return LabelGraph.from_edges(labels, a[keep], b[keep], weights, symmetrize=True)


def embed(texts):
    """A deterministic embedder: one random unit vector per label string."""
    out = np.array(
        [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(8) for t in texts]
    )
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    table = make_table(seed=3)
    folder = tmp_path_factory.mktemp("pool") / "shards"
    write_shards(table, folder)
    return Dataset.from_dict(table.to_pydict()), folder


GRAPH = random_graph(LABELS[:50])


@pytest.mark.parametrize(
    "options",
    [
        {"label_graph": GRAPH},
        {"label_graph": GRAPH, "norm": True, "gain": "exact"},
        {"embedder": embed, "threshold": 0.5},  # graph built over the pool's labels
        {"label_graph": GRAPH, "budget": 3000.0, "cost_column": "num_tokens"},
        {"label_graph": GRAPH, "engine": "stochastic"},
    ],
)
def test_disk_picks_equal_memory_picks(pool, options):
    dataset, folder = pool
    memory = MIGSelector(k=300, **options)
    disk = MIGSelector(k=300, **options)
    expected = memory.select_indices(dataset)
    assert np.array_equal(disk.select_indices(str(folder)), expected)
    assert disk.encoding_report_ == memory.encoding_report_
    assert np.array_equal(disk.result_.gains, memory.result_.gains)
    assert disk.label_graph_.labels == memory.label_graph_.labels


def test_iterable_dataset_source(pool):
    dataset, _ = pool
    expected = MIGSelector(k=200, label_graph=GRAPH).select_indices(dataset)
    picks = MIGSelector(k=200, label_graph=GRAPH).select_streaming(dataset.to_iterable_dataset())
    assert np.array_equal(picks, expected)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_select_to_file_writes_the_picks_in_pick_order(pool, tmp_path, suffix):
    dataset, folder = pool
    selector = MIGSelector(k=150, label_graph=GRAPH, record_gains=True)
    out = tmp_path / f"picks{suffix}"
    picks = selector.select_to_file(folder, out)
    expected = dataset.select(picks)
    rows = Dataset.from_parquet(str(out)) if suffix == ".parquet" else Dataset.from_json(str(out))
    assert rows["labels"] == expected["labels"] and rows["score"] == expected["score"]
    assert rows["mig_rank"] == list(range(150))
    assert rows["mig_gain"] == selector.result_.gains.tolist()
    with pytest.raises(FileExistsError):
        selector.select_to_file(folder, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_degenerate_pools_are_refused_as_in_memory(tmp_path):
    table = pa.table({"labels": [["outside"]] * 20 + [[]] * 5, "score": [1.0] * 25})
    folder = tmp_path / "none"
    write_shards(table, folder, sizes=(10, 15))
    with pytest.raises(DegeneratePoolError) as in_memory:
        MIGSelector(k=3, label_graph=GRAPH).select_indices(
            Dataset(pa.Table.from_batches(table.to_batches()))
        )
    with pytest.raises(DegeneratePoolError) as on_disk:
        MIGSelector(k=3, label_graph=GRAPH).select_indices(str(folder))
    assert str(on_disk.value) == str(in_memory.value)


def test_checks_before_the_work(pool, tmp_path):
    _, folder = pool
    with pytest.raises(ValueError, match="exceeds the pool size"):
        MIGSelector(k=10**6, label_graph=GRAPH).select_indices(str(folder))
    with pytest.raises(ValueError, match="quotas read every row's group in memory"):
        MIGSelector(k=5, label_graph=GRAPH, quotas={"a": (1, 2)}).select_indices(str(folder))
    with pytest.raises(ValueError, match="cost_column 'tokens' not found"):
        MIGSelector(k=5, label_graph=GRAPH, budget=10.0, cost_column="tokens").select_indices(
            str(folder)
        )
    (tmp_path / "x.jsonl").write_text('{"labels": [], "score": 1}\n')
    with pytest.raises(ValueError, match=r"Parquet files \(\.parquet\)"):
        MIGSelector(k=5, label_graph=GRAPH).select_indices(str(tmp_path / "x.jsonl"))
    with pytest.raises(FileNotFoundError, match="no such Parquet file or folder"):
        MIGSelector(k=5, label_graph=GRAPH).select_indices(str(tmp_path / "missing"))


def test_cli_streaming_end_to_end(pool, tmp_path, run_main):
    dataset, folder = pool
    graph = tmp_path / "graph.npz"
    GRAPH.save(graph)
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = ["select", folder, "--streaming", "-k", 50, "--graph", graph, "-o", out]
    code, stdout, stderr = run_main(
        [*args, "--summary-json", summary, "--indices-out", tmp_path / "idx.json"]
    )
    assert code == 0, stderr
    assert "selected 50 of 3,000 rows (streaming" in stdout
    expected = MIGSelector(k=50, label_graph=GRAPH).select_indices(dataset)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["labels"] for r in rows] == dataset.select(expected)["labels"]
    assert json.loads((tmp_path / "idx.json").read_text())["positions"] == expected.tolist()
    assert json.loads(summary.read_text())["encoding"]["rows"] == 3000
    code, _, stderr = run_main(args)  # the output exists: refused
    assert code != 0 and "--overwrite" in stderr
    code, _, stderr = run_main([*args, "--overwrite", "--method", "random"])
    assert code != 0 and "--streaming" in stderr and "--method" in stderr
    files = sorted(folder.glob("*.parquet"))  # the pool is left as it was
    assert [pq.read_metadata(f).num_rows for f in files] == list(SIZES)
