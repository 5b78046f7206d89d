"""Benchmark the embedding-based baselines (deita, qdit, kcenter, car) beside MIG.

Run from the repository root::

    python -m benchmarks.bench_baselines_embedding              # 50K of 939K rows (long)
    python -m benchmarks.bench_baselines_embedding --quick      # 5K of 50K rows, ~1 minute
    python -m benchmarks.bench_baselines_embedding --methods deita,car --json out.json
    python -m benchmarks.bench_baselines_embedding --n 200000 --methods kcenter

Input: a synthetic pool of ``n`` L2-normalised 384-d embeddings in small clusters
(:func:`benchmarks.synthetic.clustered_embeddings`: within-cluster cosines straddle 0.9,
unrelated rows are near 0) and DEITA-like scores (:func:`benchmarks.synthetic.make_pool_arrays`).
The arrays are built before the timing; each method runs through its selector's
``select_arrays`` (the work ``select_indices`` does after reading the columns), with default
options. ``read`` times :func:`hf_mig.annotate.embeddings.embedding_matrix` on a ``Dataset``
holding the same vectors (the column-to-array step every method pays once). ``mig`` is
:func:`hf_mig.greedy_select` on the Tulu-3-shaped synthetic label pool of the same size
(``benchmarks.bench_select``'s ``greedy`` case).

Every case runs in its own subprocess (``--in-process`` to disable). Columns: ``seconds`` (wall
clock of the call), ``RSS peak`` (peak resident memory during the call minus the resident memory
just before it, the input arrays already loaded; see ``benchmarks.bench_select.measure``) and
method statistics. The machine's load average is printed: other processes sharing the cores
inflate the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_select import measure  # noqa: E402
from benchmarks.synthetic import (  # noqa: E402
    TULU_K_LABELS,
    TULU_N_ROWS,
    clustered_embeddings,
    make_label_graph,
    make_pool_arrays,
)

PAPER_K = 50_000
DIM = 384
METHODS = ("read", "deita", "qdit", "kcenter", "car", "mig")


def _inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = clustered_embeddings(n, DIM, seed=seed)
    scores = make_pool_arrays(n, TULU_K_LABELS, seed)[2]
    return x, scores


def run_case(method: str, n: int, k: int, seed: int) -> dict[str, Any]:
    """Build the inputs, then time one method; returns measurements and statistics."""
    import hf_mig
    from hf_mig.selectors import CaRSelector, DeitaSelector, KCenterSelector, QDITSelector

    t0 = time.perf_counter()
    if method == "mig":
        graph = make_label_graph(TULU_K_LABELS, seed)
        indptr, label_ids, scores = make_pool_arrays(n, TULU_K_LABELS, seed)
        prop = graph.propagation_matrix(1.0)
        warm = make_pool_arrays(2_000, TULU_K_LABELS, 123)
        hf_mig.greedy_select(*warm, prop, 50, progress=False)  # load numba's compiled code
        build = time.perf_counter() - t0
        result, meas = measure(
            lambda: hf_mig.greedy_select(indptr, label_ids, scores, prop, k, progress=False)
        )
        return {**meas, "build_s": build, "picks": int(len(result.indices)), "stats": {}}

    x, scores = _inputs(n, seed)
    if method == "read":
        import pyarrow as pa
        from datasets import Dataset
        from datasets.table import InMemoryTable

        from hf_mig.annotate.embeddings import embedding_matrix

        column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM)
        ds = Dataset(InMemoryTable(pa.table({"embedding": column})))
        build = time.perf_counter() - t0
        out, meas = measure(lambda: embedding_matrix(ds, normalize=True, progress=False))
        assert np.allclose(out[:100], x[:100], atol=1e-6)
        return {**meas, "build_s": build, "picks": 0, "stats": {}}

    selectors = {
        "deita": lambda: DeitaSelector(k=k, progress=False),
        "qdit": lambda: QDITSelector(k=k, progress=False),
        "kcenter": lambda: KCenterSelector(k=k, progress=False),
        "car": lambda: CaRSelector(k=k, progress=False),
    }
    selector = selectors[method]()
    build = time.perf_counter() - t0
    picks, meas = measure(lambda: selector.select_arrays(x, scores))
    if len(picks) != k or len(np.unique(picks)) != k:
        raise AssertionError(f"{method}: {len(picks)} picks, {len(np.unique(picks))} distinct")
    stats: dict[str, Any] = {}
    if method == "deita":
        stats = {
            "examined": selector.n_examined_,
            "rejected": selector.n_rejected_,
            "filled": selector.n_filled_,
        }
    elif method == "qdit":
        stats = {
            "facilities": int(len(selector.facilities_)),
            "evaluations": int(selector.n_evaluations_),
            "pulls": int(selector.n_pulls_),
        }
    elif method == "kcenter":
        stats = {"flushes": selector.n_flushes_, "radius": round(selector.radius_, 4)}
    elif method == "car":
        stats = {
            "clusters": selector.n_clusters_,
            "pca_dims": selector.n_components_,
            "kmeans_iter": selector.n_iter_,
            "n1": selector.n1_,
            "n2": selector.n2_,
            "filled": selector.n_filled_,
        }
    return {**meas, "build_s": build, "picks": int(len(picks)), "stats": stats}


def _subprocess_case(method: str, n: int, k: int, seed: int, timeout: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_baselines_embedding",
        "--case",
        method,
        "--n",
        str(n),
        "--k",
        str(k),
        "--seed",
        str(seed),
    ]
    root = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.run(
            cmd, cwd=root, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'method':<8} {'N':>9} {'k':>7} {'seconds':>9} {'RSS peak MB':>12}  statistics",
        "-" * 90,
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['method']:<8} {r['n']:>9,} {r['k']:>7,}  {r['error']}")
            continue
        stats = ", ".join(f"{key}={value}" for key, value in r.get("stats", {}).items())
        mark = "" if r.get("rss_method") == "VmHWM" else "*"
        lines.append(
            f"{r['method']:<8} {r['n']:>9,} {r['k']:>7,} {r['seconds']:>9.2f} "
            f"{r['rss_peak_mb']:>11.0f}{mark}  {stats}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="50K rows, k = 5K (smoke test)")
    p.add_argument("--n", type=int, default=None, help=f"pool rows (default {TULU_N_ROWS:,})")
    p.add_argument("--k", type=int, default=None, help=f"rows to select (default {PAPER_K:,})")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--in-process", action="store_true", help="no subprocess per case")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = p.parse_args(argv)
    n = args.n or (50_000 if args.quick else TULU_N_ROWS)
    k = args.k or (5_000 if args.quick else PAPER_K)
    if args.case:
        print(json.dumps(run_case(args.case, n, k, args.seed), default=float))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {METHODS}")
    print(f"pool: {n:,} x {DIM} clustered unit vectors; select k = {k:,}; seed {args.seed}")
    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()}")
    rows = []
    for method in methods:
        if args.in_process:
            res = run_case(method, n, k, args.seed)
        else:
            res = _subprocess_case(method, n, k, args.seed, args.timeout)
        res.update(method=method, n=n, k=(0 if method == "read" else k))
        rows.append(res)
        print(format_table([res]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"n": n, "k": k, "rows": rows}, fh, indent=2, default=float)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
