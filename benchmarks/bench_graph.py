"""Benchmark building the thresholded label graph from label embeddings.

Run from the repository root::

    python -m benchmarks.bench_graph            # full run (~2 minutes on 2 cores)
    python -m benchmarks.bench_graph --quick    # small sizes
    python -m benchmarks.bench_graph --json bench_out/graph.json

Cases (clustered, L2-normalised 384-d vectors from
:func:`benchmarks.synthetic.clustered_embeddings`, threshold 0.9):

- ``LabelGraph.from_embeddings`` (block-wise thresholding) at 100,000 labels (targets: < 60 s,
  peak < 3 GB), at 20,000 and at 4,531 labels (the Tulu 3 vocabulary size).
- Baseline: one dense K x K similarity matrix ``E @ E.T`` thresholded at once, at 20,000 and
  4,531 labels; its 100,000-label cost is extrapolated (K^2 time and memory: 40 GB for the
  float32 matrix alone) rather than run. At 20,000 and 4,531 labels the dense edge set is
  compared with the block-wise one: any edge present in only one of them must have a cosine
  within 1e-5 of the threshold (float32 GEMMs of different shapes round differently).

Memory is measured as in :mod:`benchmarks.bench_select`: each case runs in its own process,
peak RSS during the call minus RSS before it (embeddings are made before the call).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_select import (  # noqa: E402
    bench_parser,
    measure,
    run_all,
    serve_case,
    write_json,
)
from benchmarks.synthetic import TULU_K_LABELS, clustered_embeddings  # noqa: E402

THRESHOLD = 0.9
DIM = 384
TARGET_100K_S = 60.0
TARGET_100K_GB = 3.0
TOLERANCE = 1e-5


def _names(k: int) -> list[str]:
    return [f"label {i:06d}" for i in range(k)]


def dense_threshold(emb: np.ndarray, threshold: float) -> sp.csr_matrix:
    """Baseline: the whole K x K cosine matrix in float32, thresholded (``>=``) at once.

    Returns the off-diagonal entries that pass as a CSR matrix (float64). Needs
    ``4 * K^2`` bytes for the similarities plus ``K^2`` for the mask.
    """
    sims = emb @ emb.T
    np.fill_diagonal(sims, 0.0)
    rows, cols = np.nonzero(sims >= np.float32(threshold))
    vals = sims[rows, cols].astype(np.float64)
    del sims
    k = emb.shape[0]
    return sp.csr_matrix((vals, (rows, cols)), shape=(k, k))


def _offdiag_entries(w: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys ``row * K + col`` and values of the off-diagonal non-zeros of ``w``."""
    coo = sp.coo_matrix(w)
    keep = (coo.row != coo.col) & (coo.data != 0)
    keys = coo.row[keep].astype(np.int64) * w.shape[0] + coo.col[keep]
    order = np.argsort(keys, kind="stable")
    return keys[order], coo.data[keep][order].astype(np.float64)


def compare_edges(blockwise: sp.spmatrix, dense: sp.spmatrix, threshold: float) -> dict[str, Any]:
    """Compare two thresholded similarity matrices (off-diagonal); raise if they disagree.

    Edges present in one only are allowed when their cosine is within ``TOLERANCE`` of the
    threshold; common edges must have weights within ``TOLERANCE``. Returns edge counts.
    """
    keys_a, vals_a = _offdiag_entries(blockwise)
    keys_b, vals_b = _offdiag_entries(dense)
    _, ia, ib = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    only_a = np.setdiff1d(np.arange(keys_a.size), ia, assume_unique=True)
    only_b = np.setdiff1d(np.arange(keys_b.size), ib, assume_unique=True)
    gap_vals = np.concatenate([vals_a[only_a], vals_b[only_b]])
    weight_gap = float(np.abs(vals_a[ia] - vals_b[ib]).max()) if ia.size else 0.0
    out = {
        "edges_blockwise": int(keys_a.size // 2),
        "edges_dense": int(keys_b.size // 2),
        "edges_in_one_only": int((only_a.size + only_b.size) // 2),
        "max_weight_gap": weight_gap,
    }
    if gap_vals.size and np.abs(gap_vals - threshold).max() > TOLERANCE:
        raise AssertionError(f"edge sets differ beyond rounding near the threshold: {out}")
    if weight_gap > TOLERANCE:
        raise AssertionError(f"edge weights differ by {weight_gap:.3g}: {out}")
    return out


def case_blockwise(k: int, seed: int) -> dict[str, Any]:
    """``LabelGraph.from_embeddings`` on ``k`` clustered embeddings."""
    from hf_mig import LabelGraph

    emb = clustered_embeddings(k, DIM, seed)
    names = _names(k)
    graph, meas = measure(
        lambda: LabelGraph.from_embeddings(names, emb, threshold=THRESHOLD, progress=False)
    )
    stats = graph.stats()
    return {
        **meas,
        "edges": stats["num_edges"],
        "max_degree": stats["max_degree"],
        "isolated": stats["isolated_labels"],
    }


def case_dense(k: int, seed: int) -> dict[str, Any]:
    """Dense ``E @ E.T`` baseline on the same embeddings, compared edge for edge."""
    from hf_mig import LabelGraph

    emb = clustered_embeddings(k, DIM, seed)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    dense, meas = measure(lambda: dense_threshold(emb, THRESHOLD))
    graph = LabelGraph.from_embeddings(_names(k), emb, threshold=THRESHOLD, progress=False)
    return {**meas, "comparison": compare_edges(graph.weights, dense, THRESHOLD)}


def plan(quick: bool) -> list[dict[str, Any]]:
    """Cases: block-wise at each size, then the dense baseline where it fits."""
    sizes = (20_000, 4_531) if quick else (100_000, 20_000, TULU_K_LABELS)
    dense_sizes = (4_531,) if quick else (20_000, TULU_K_LABELS)
    cases = [
        {
            "id": f"blockwise_{k}",
            "kind": "blockwise",
            "label": f"from_embeddings, K={k:,}",
            "args": {"k": k, "seed": 0},
        }
        for k in sizes
    ]
    cases += [
        {
            "id": f"dense_{k}",
            "kind": "dense",
            "label": f"dense E @ E.T baseline, K={k:,}",
            "args": {"k": k, "seed": 0},
        }
        for k in dense_sizes
    ]
    return cases


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this process."""
    fn = case_blockwise if case["kind"] == "blockwise" else case_dense
    return fn(**case["args"])


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (non-zero when a case fails or edges disagree)."""
    args = bench_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if serve_case(args, run_case):
        return 0
    cases = plan(args.quick)
    results = run_all("bench_graph", cases, run_case, "benchmarks.bench_graph", args.in_process)
    if results is None:
        return 1

    head = f"{'case':<40} {'time':>10} {'RSS peak':>10}  notes"
    lines = [head, "-" * len(head)]
    for case in cases:
        r = results[case["id"]]
        if case["kind"] == "blockwise":
            notes = f"{r['edges']:,} edges, max degree {r['max_degree']}"
        else:
            c = r["comparison"]
            notes = (
                f"{c['edges_dense']:,} edges; {c['edges_in_one_only']} differ from block-wise "
                f"(within {TOLERANCE:g} of T)"
            )
        mem = f"{r['rss_peak_mb']:.0f} MB" + ("" if r["rss_method"] == "VmHWM" else "*")
        lines.append(f"{case['label']:<40} {_fmt(r['seconds']):>10} {mem:>10}  {notes}")

    summary: dict[str, Any] = {}
    dense_cases = [c for c in cases if c["kind"] == "dense"]
    big_dense = max(dense_cases, key=lambda c: c["args"]["k"])
    k_big = max(c["args"]["k"] for c in cases)
    ratio = (k_big / big_dense["args"]["k"]) ** 2
    dense_r = results[big_dense["id"]]
    summary["dense_extrapolated"] = {
        "k": k_big,
        "seconds": dense_r["seconds"] * ratio,
        "similarity_matrix_gb": 4.0 * k_big * k_big / 1e9,
        "rss_peak_gb": dense_r["rss_peak_mb"] * ratio / 1024.0,
        "basis": f"measured at K={big_dense['args']['k']:,}, scaled by K^2",
    }
    de = summary["dense_extrapolated"]
    lines.append("")
    lines.append(
        f"Dense baseline extrapolated to K={k_big:,}: {_fmt(de['seconds'])}, similarity matrix "
        f"{de['similarity_matrix_gb']:.0f} GB (peak ~{de['rss_peak_gb']:.0f} GiB; "
        f"{de['basis']}); not run"
    )
    block_big = results[f"blockwise_{k_big}"]
    if not args.quick:
        met_t = block_big["seconds"] < TARGET_100K_S
        met_m = block_big["rss_peak_mb"] / 1024.0 < TARGET_100K_GB
        summary["targets"] = {
            "blockwise_100k_s": {
                "value": block_big["seconds"],
                "target": TARGET_100K_S,
                "met": met_t,
            },
            "blockwise_100k_rss_gb": {
                "value": block_big["rss_peak_mb"] / 1024.0,
                "target": TARGET_100K_GB,
                "met": met_m,
            },
        }
        lines.append("Targets:")
        for name, t in summary["targets"].items():
            status = "met" if t["met"] else "MISSED"
            lines.append(f"  {name:<24} {t['value']:>10.2f}  target < {t['target']:g}  {status}")
    print()
    print("\n".join(lines))
    if args.json:
        write_json(args.json, args.quick, cases, results, summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
