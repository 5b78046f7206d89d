"""Smoke tests of the benchmark suite: the synthetic pool's shape and ``bench_select --quick``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic() -> ModuleType:
    """``benchmarks.synthetic``, importable whatever directory pytest runs from."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.synthetic")


def test_pool_arrays_shape_and_determinism(synthetic: ModuleType) -> None:
    n, k_labels = 20_000, 4_531
    indptr, label_ids, scores = synthetic.make_pool_arrays(n, k_labels, 7)
    again = synthetic.make_pool_arrays(n, k_labels, 7)
    for a, b in zip((indptr, label_ids, scores), again, strict=True):
        assert np.array_equal(a, b)
    other = synthetic.make_pool_arrays(n, k_labels, 8)
    assert not np.array_equal(label_ids[:1000], other[1][:1000])

    assert indptr.dtype == np.int64 and indptr.shape == (n + 1,) and indptr[0] == 0
    assert indptr[-1] == label_ids.size
    counts = np.diff(indptr)
    assert counts.min() >= 1 and counts.max() <= 10
    assert 3.5 < counts.mean() < 4.5
    assert label_ids.min() >= 0 and label_ids.max() < k_labels
    # distinct (strictly increasing) labels within every row
    rows = np.repeat(np.arange(n), counts)
    same_row = rows[1:] == rows[:-1]
    assert (np.diff(label_ids.astype(np.int64))[same_row] > 0).all()
    assert scores.shape == (n,) and scores.dtype == np.float64
    assert (scores > 0).all() and np.isfinite(scores).all()
    assert 8.0 < scores.mean() < 16.0
    # Zipf-like: the most frequent label is in many rows, most labels are rare
    freq = np.bincount(label_ids, minlength=k_labels)
    assert freq.max() > 0.05 * n and np.median(freq) < 0.005 * n


def test_label_graph_edges_shape(synthetic: ModuleType) -> None:
    rows, cols, weights = synthetic.make_label_edges(4_531, 0)
    k_labels = 4_531
    diag = rows == cols
    assert diag.sum() == k_labels and np.all(weights[diag] == 1.0)
    off = ~diag
    assert 1_000 <= off.sum() // 2 <= 2_000
    assert (weights[off] >= 0.7).all() and (weights[off] < 1.0).all()
    pairs = dict(zip(zip(rows.tolist(), cols.tolist(), strict=True), weights.tolist(), strict=True))
    assert len(pairs) == rows.size
    assert all(pairs[(c, r)] == w for (r, c), w in pairs.items())
    indptr, label_ids, _ = synthetic.make_pool_arrays(50_000, k_labels, 0)
    stats = synthetic.pool_stats(indptr, label_ids, (rows, cols, weights))
    assert 12 < stats["propagated_nnz_per_row"] < 28


def test_label_names_sorted_unique(synthetic: ModuleType) -> None:
    names = synthetic.label_names(4_531)
    assert len(names) == len(set(names)) == 4_531
    assert names == sorted(names)
    assert names == synthetic.label_names(4_531)


@pytest.mark.slow
def test_bench_select_quick_runs_and_checks_parity(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = tmp_path / "select.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_select", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "PARITY OK: greedy_select == dense reference" in proc.stdout
    assert out.exists()
