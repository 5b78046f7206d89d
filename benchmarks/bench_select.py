"""Benchmark MIG selection: hf_mig's lazy greedy against the authors' dense algorithm.

Run from the repository root::

    python -m benchmarks.bench_select            # full run (~5 minutes on 2 cores)
    python -m benchmarks.bench_select --quick    # small sizes, < 1 minute (smoke test)
    python -m benchmarks.bench_select --json bench_out/select.json

Cases (synthetic Tulu-3-shaped pools from :mod:`benchmarks.synthetic`, K = 4,531 labels):

- ``greedy``: :func:`hf_mig.greedy_select` on ready arrays (engine "auto"), k = 5K / 50K /
  100K of 939K rows and 50K of 10M rows.
- ``selector``: ``MIGSelector(k=50K).select_indices`` on a 939K-row ``datasets.Dataset`` whose
  ``labels`` column holds strings; every conversion (Arrow -> ids, P) is inside the timing. Run
  on the in-memory dataset and on the same dataset saved to disk and memory-mapped.
- ``reference``: the authors' dense algorithm (:func:`benchmarks.reference.dense_reference`,
  float32) on a pool small enough to fit (N = 20K), extrapolated to N = 939K and 50K steps
  (both the build ``U = A @ P`` and each step are O(N) at fixed K). Our picks must equal its
  picks on every step run; the benchmark exits non-zero otherwise.
- ``naive``: the same rule with a sparse U and a full ``U @ g`` per step at N = 939K, a few
  hundred steps, extrapolated to 50K steps; its picks are checked against ours too.

Every case runs in its own subprocess (``--in-process`` to disable), after a warm-up call that
loads numba's compiled code. Memory columns:

- ``RSS peak``: the process's peak resident set during the timed call minus its resident set
  just before it (freed heap memory is first returned to the OS with ``malloc_trim`` so that
  reused memory counts, then the kernel's high-water mark ``VmHWM`` is reset through
  ``/proc/self/clear_refs``; where that is unavailable, the process-lifetime
  ``ru_maxrss`` is used instead and the column is marked ``*``). It counts everything: numpy,
  numba, Arrow and the interpreter.
- ``py peak``: ``tracemalloc``'s peak of Python-visible allocations (numpy arrays included,
  numba-internal and Arrow buffers not) in a second, untimed run of the same call.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import (  # noqa: E402
    dense_propagation,
    dense_reference,
    naive_sparse_scan,
    sparse_propagation,
)
from benchmarks.synthetic import (  # noqa: E402
    TULU_K_LABELS,
    TULU_N_ROWS,
    make_label_edges,
    make_label_graph,
    make_pool_arrays,
    make_pool_dataset,
)

PAPER_K = 50_000
# Largest relative gap between two candidates' float64 gains that float32 rounding in the
# reference may reorder (float32 resolution is ~6e-8; U and x accumulate many terms).
NEAR_TIE_RELATIVE_GAP = 1e-5
MB = 1024.0 * 1024.0

TARGETS = {
    "greedy_50k_of_939k_s": 1.0,
    "selector_strings_s": 5.0,
    "selector_strings_rss_mb": 1024.0,
    "speedup_vs_reference": 1000.0,
    "greedy_50k_of_10m_s": 10.0,
}


# ----------------------------------------------------------------------------- measurement
def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


def _release_free_memory() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so that a call reusing it
    shows up in the RSS peak; a no-op where unavailable."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn: Callable[[], Any], *, trace: bool = False) -> tuple[Any, dict[str, Any]]:
    """Call ``fn()`` once, timed; return ``(its result, measurements)``.

    Measurements: ``seconds`` (wall, ``time.perf_counter``), ``rss_peak_mb`` (peak resident set
    during the call minus the resident set before it), ``rss_method`` ("VmHWM" when the peak
    mark could be reset before the call, else "ru_maxrss", a lifetime peak that is an upper
    bound only when the call sets a new process peak) and, with ``trace=True``, ``py_peak_mb``
    from a second, untimed call under ``tracemalloc``.
    """
    _release_free_memory()
    exact = _reset_peak_rss()
    before_kb = _proc_status_kb("VmRSS")
    if before_kb is None:
        before_kb = 0
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    if exact:
        peak_kb = _proc_status_kb("VmHWM") or 0
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res: dict[str, Any] = {
        "seconds": seconds,
        "rss_peak_mb": max(0, peak_kb - before_kb) / 1024.0,
        "rss_method": "VmHWM" if exact else "ru_maxrss",
    }
    if trace:
        del out
        gc.collect()
        tracemalloc.start()
        out = fn()
        res["py_peak_mb"] = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
    return out, res


# ----------------------------------------------------------------------------- cases
def _warm_up(graph: Any) -> float:
    """Load/compile the numba kernels with a tiny selection; returns its seconds."""
    from hf_mig import greedy_select

    indptr, label_ids, scores = make_pool_arrays(2_000, graph.num_labels, seed=123)
    t0 = time.perf_counter()
    greedy_select(indptr, label_ids, scores, graph.propagation_matrix(1.0), 50, progress=False)
    return time.perf_counter() - t0


def case_greedy(n: int, k: int, seed: int, trace: bool = True) -> dict[str, Any]:
    """``greedy_select`` with ready arrays (P built beforehand, outside the timing)."""
    from hf_mig import greedy_select

    graph = make_label_graph(TULU_K_LABELS, seed)
    warm = _warm_up(graph)
    indptr, label_ids, scores = make_pool_arrays(n, TULU_K_LABELS, seed)
    prop = graph.propagation_matrix(1.0)
    result, meas = measure(
        lambda: greedy_select(indptr, label_ids, scores, prop, k, progress=False), trace=trace
    )
    return {
        **meas,
        "warmup_s": warm,
        "stats": result.stats,
        "first_picks": result.indices[:10].tolist(),
    }


def case_selector(n: int, k: int, seed: int, on_disk: bool = False) -> dict[str, Any]:
    """``MIGSelector.select_indices`` on a string-labelled ``Dataset``; conversions included."""
    import datasets

    from hf_mig import MIGSelector, greedy_select

    graph = make_label_graph(TULU_K_LABELS, seed)
    warm = _warm_up(graph)
    ds = make_pool_dataset(n, seed)
    tmp = None
    if on_disk:
        tmp = tempfile.TemporaryDirectory(prefix="hf_mig_bench_")
        ds.save_to_disk(tmp.name)
        del ds
        gc.collect()
        ds = datasets.load_from_disk(tmp.name)
    try:
        selector = MIGSelector(k=k, label_graph=graph, progress=False)
        picks, meas = measure(lambda: selector.select_indices(ds), trace=True)
        # The selector must pick exactly what greedy_select picks on the generating arrays.
        indptr, label_ids, scores = make_pool_arrays(n, TULU_K_LABELS, seed)
        expected = greedy_select(
            indptr, label_ids, scores, graph.propagation_matrix(1.0), k, progress=False
        ).indices
    finally:
        if tmp is not None:
            tmp.cleanup()
    same = bool(np.array_equal(np.asarray(picks), expected))
    if not same:
        first = int(np.argmin(np.asarray(picks) == expected))
        raise AssertionError(
            f"MIGSelector on strings differs from greedy_select on ids at pick {first}"
        )
    return {**meas, "warmup_s": warm, "matches_greedy_on_ids": same}


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int:
    """Index of the first differing pick of two equal-length arrays, or -1."""
    diff = np.flatnonzero(np.asarray(a) != np.asarray(b))
    return int(diff[0]) if diff.size else -1


def _gains_f64(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    scores: np.ndarray,
    prop: Any,
    picked: np.ndarray,
    *candidates: int,
) -> tuple[float, ...]:
    """Float64 gradient gains ``u_c . phi'(x)`` of ``candidates`` after picking ``picked``
    (default objective: pow, a = 1e-6, b = 0.8), computed from scratch with sparse rows."""
    from benchmarks.reference import phi_derivative

    def row(i: int) -> np.ndarray:
        labels = label_ids[indptr[i] : indptr[i + 1]]
        return scores[i] * np.asarray(prop[labels].sum(axis=0)).ravel()

    x = np.zeros(prop.shape[0])
    for i in picked:
        x += row(int(i))
    g = phi_derivative(x)
    return tuple(float(row(int(c)) @ g) for c in candidates)


def case_reference(n: int, steps: int, seed: int) -> dict[str, Any]:
    """Dense reference (float32) on a small pool, plus the parity check against hf_mig.

    Our ``greedy_select`` picks (and ``MIGSelector`` on the string dataset of the same pool)
    must equal the reference's first ``steps`` picks. If float32 rounding swaps candidates
    whose gains agree to float32 precision, the reference is rerun in float64 and our picks
    must equal that; anything else raises ``AssertionError``.
    """
    from hf_mig import MIGSelector, greedy_select

    edges = make_label_edges(TULU_K_LABELS, seed)
    graph = make_label_graph(TULU_K_LABELS, seed)
    indptr, label_ids, scores = make_pool_arrays(n, TULU_K_LABELS, seed)
    p32 = dense_propagation(TULU_K_LABELS, *edges, dtype=np.float32)
    ref, meas = measure(lambda: dense_reference(indptr, label_ids, scores, p32, steps))
    _warm_up(graph)
    ours = greedy_select(
        indptr, label_ids, scores, graph.propagation_matrix(1.0), steps, progress=False
    )
    selector = MIGSelector(k=steps, label_graph=graph, progress=False)
    sel = np.asarray(selector.select_indices(make_pool_dataset(n, seed)))
    parity: dict[str, Any] = {"steps": steps, "n": n}
    mismatch32 = _first_mismatch(ours.indices, ref.indices)
    parity["float32_first_mismatch"] = mismatch32
    parity["reference_dtype"] = "float32"
    if mismatch32 >= 0:
        p64 = dense_propagation(TULU_K_LABELS, *edges, dtype=np.float64)
        ref64 = dense_reference(indptr, label_ids, scores, p64, steps, dtype=np.float64)
        mismatch64 = _first_mismatch(ours.indices, ref64.indices)
        parity["float64_first_mismatch"] = mismatch64
        parity["reference_dtype"] = "float64"
        t = mismatch32
        prop = sparse_propagation(TULU_K_LABELS, *edges)
        g_ours, g_f32 = _gains_f64(
            indptr, label_ids, scores, prop, ours.indices[:t], ours.indices[t], ref.indices[t]
        )
        rel_gap = abs(g_ours - g_f32) / max(abs(g_ours), 1e-300)
        parity["float32_swap_relative_gap"] = rel_gap
        parity["note"] = (
            f"float32 reference diverges at step {t}: it picked {int(ref.indices[t])} where "
            f"float64 picks {int(ours.indices[t])}; their exact (float64) gains "
            f"{g_f32:.17g} and {g_ours:.17g} differ by {rel_gap:.2e} relative, below float32 "
            "resolution, so float32 rounding decides the order."
        )
        if rel_gap > NEAR_TIE_RELATIVE_GAP:
            raise AssertionError(
                f"PARITY FAILED: float32 reference diverges at step {t} with a relative gain gap "
                f"of {rel_gap:.2e}, more than float32 rounding explains"
            )
        if mismatch64 >= 0:
            raise AssertionError(
                f"PARITY FAILED: greedy_select differs from the dense reference at step "
                f"{mismatch64} even in float64 (ours {int(ours.indices[mismatch64])}, "
                f"reference {int(ref64.indices[mismatch64])})"
            )
    sel_mismatch = _first_mismatch(sel, ours.indices)
    parity["selector_first_mismatch"] = sel_mismatch
    if sel_mismatch >= 0:
        raise AssertionError(
            f"PARITY FAILED: MIGSelector on strings differs from greedy_select at pick "
            f"{sel_mismatch}"
        )
    parity["ok"] = True
    return {
        **meas,
        "build_s": ref.build_s,
        "step_s": ref.median_step_s,
        "step_min_s": ref.min_step_s,
        "step_mean_s": ref.mean_step_s,
        "steps": steps,
        "nbytes": ref.nbytes,
        "parity": parity,
    }


def case_naive(n: int, steps: int, seed: int) -> dict[str, Any]:
    """Naive sparse full scan at size ``n`` for ``steps`` steps, checked against hf_mig."""
    from hf_mig import greedy_select

    edges = make_label_edges(TULU_K_LABELS, seed)
    graph = make_label_graph(TULU_K_LABELS, seed)
    indptr, label_ids, scores = make_pool_arrays(n, TULU_K_LABELS, seed)
    prop = sparse_propagation(TULU_K_LABELS, *edges)
    run, meas = measure(lambda: naive_sparse_scan(indptr, label_ids, scores, prop, steps))
    _warm_up(graph)
    ours = greedy_select(
        indptr, label_ids, scores, graph.propagation_matrix(1.0), steps, progress=False
    )
    mismatch = _first_mismatch(ours.indices, run.indices)
    if mismatch >= 0:
        t = mismatch
        rel = abs(run.gains[t] - ours.gains[t]) / max(abs(ours.gains[t]), 1e-300)
        raise AssertionError(
            f"PARITY FAILED: greedy_select differs from the naive sparse scan at step {t} "
            f"(ours {int(ours.indices[t])} gain {ours.gains[t]:.17g}, scan "
            f"{int(run.indices[t])} gain {run.gains[t]:.17g}, relative gap {rel:.2e})"
        )
    return {
        **meas,
        "build_s": run.build_s,
        "step_s": run.median_step_s,
        "step_min_s": run.min_step_s,
        "step_mean_s": run.mean_step_s,
        "steps": steps,
        "nbytes": run.nbytes,
        "nnz_per_row": run.info["nnz"] / n,
        "matches_greedy": True,
    }


CASE_FUNCS: dict[str, Callable[..., dict[str, Any]]] = {
    "greedy": case_greedy,
    "selector": case_selector,
    "reference": case_reference,
    "naive": case_naive,
}


def plan(quick: bool) -> list[dict[str, Any]]:
    """The cases of a full or a ``--quick`` run: ``{"id", "kind", "label", "args"}``."""
    if quick:
        pool, big, k_paper = 100_000, 1_000_000, 5_000
        ks = (500, 5_000, 10_000)
        ref_n, ref_steps, naive_n, naive_steps = 3_000, 300, 100_000, 30
    else:
        pool, big, k_paper = TULU_N_ROWS, 10_000_000, PAPER_K
        ks = (5_000, 50_000, 100_000)
        ref_n, ref_steps, naive_n, naive_steps = 20_000, 500, TULU_N_ROWS, 200
    seed = 0
    cases = [
        {
            "id": f"greedy_{k}_of_{pool}",
            "kind": "greedy",
            "label": f"greedy_select {k:,} of {pool:,}",
            "args": {"n": pool, "k": k, "seed": seed},
        }
        for k in ks
    ]
    cases.append(
        {
            "id": f"greedy_{k_paper}_of_{big}",
            "kind": "greedy",
            "label": f"greedy_select {k_paper:,} of {big:,}",
            "args": {"n": big, "k": k_paper, "seed": seed},
        }
    )
    for on_disk in (False, True):
        where = "memory-mapped" if on_disk else "in memory"
        cases.append(
            {
                "id": f"selector_{k_paper}_of_{pool}" + ("_mmap" if on_disk else ""),
                "kind": "selector",
                "label": f"select_indices strings {k_paper:,} of {pool:,} ({where})",
                "args": {"n": pool, "k": k_paper, "seed": seed, "on_disk": on_disk},
            }
        )
    cases.append(
        {
            "id": "reference",
            "kind": "reference",
            "label": f"dense reference f32, N={ref_n:,}, {ref_steps} steps",
            "args": {"n": ref_n, "steps": ref_steps, "seed": seed},
        }
    )
    cases.append(
        {
            "id": "naive",
            "kind": "naive",
            "label": f"naive sparse scan, N={naive_n:,}, {naive_steps} steps",
            "args": {"n": naive_n, "steps": naive_steps, "seed": seed},
        }
    )
    return cases


def run_case_isolated(
    case: dict[str, Any], module: str = "benchmarks.bench_select"
) -> dict[str, Any]:
    """Run one case through ``python -m module --run-case`` in a fresh interpreter (so its
    peak RSS is its own); return its result dict, raise ``RuntimeError`` on failure."""
    with tempfile.TemporaryDirectory(prefix="hf_mig_bench_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            "-m",
            module,
            "--run-case",
            json.dumps(case),
            "--result-file",
            str(out),
        ]
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        proc = subprocess.run(cmd, cwd=root, env=env)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"case {case['id']} failed with exit code {proc.returncode}")
        return json.loads(out.read_text())


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this process."""
    return CASE_FUNCS[case["kind"]](**case["args"])


# ----------------------------------------------------------------------------- report
def summarise(
    cases: list[dict[str, Any]], results: dict[str, dict[str, Any]], quick: bool
) -> dict[str, Any]:
    """Extrapolations, speed-ups and target checks from the per-case results."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        by_kind.setdefault(case["kind"], []).append(case)
    pool = by_kind["greedy"][0]["args"]["n"]
    k_paper = by_kind["selector"][0]["args"]["k"]
    greedy_paper = next(
        c for c in by_kind["greedy"] if c["args"]["n"] == pool and c["args"]["k"] == k_paper
    )
    greedy_big = by_kind["greedy"][-1]
    selector = by_kind["selector"][0]
    ref_case = by_kind["reference"][0]
    naive_case = by_kind["naive"][0]

    ref = results[ref_case["id"]]
    scale = pool / ref_case["args"]["n"]
    ref_build = ref["build_s"] * scale
    ref_step = ref["step_s"] * scale
    ref_total = ref_build + ref_step * k_paper
    # Best case for the baseline: its fastest measured step at every step.
    ref_total_best = ref_build + ref["step_min_s"] * scale * k_paper
    ref_mem_gb = 2 * pool * TULU_K_LABELS * 4 / 1e9

    naive = results[naive_case["id"]]
    naive_scale = pool / naive_case["args"]["n"]
    naive_step = naive["step_s"] * naive_scale
    naive_total = naive["build_s"] * naive_scale + naive_step * k_paper

    ours_greedy = results[greedy_paper["id"]]["seconds"]
    ours_sel = results[selector["id"]]["seconds"]
    summary: dict[str, Any] = {
        "pool": pool,
        "k": k_paper,
        "reference_extrapolated": {
            "build_s": ref_build,
            "step_s": ref_step,
            "total_s": ref_total,
            "total_best_case_s": ref_total_best,
            "memory_gb_float32_A_and_U": ref_mem_gb,
            "basis": f"measured at N={ref_case['args']['n']:,}, scaled by N (O(N*K) per step)",
        },
        "naive_extrapolated": {
            "build_s": naive["build_s"] * naive_scale,
            "step_s": naive_step,
            "total_s": naive_total,
            "basis": f"measured at N={naive_case['args']['n']:,}, {naive['steps']} steps",
        },
        "speedup_greedy_vs_reference": ref_total / ours_greedy,
        "speedup_selector_vs_reference": ref_total / ours_sel,
        "speedup_greedy_vs_reference_best_case": ref_total_best / ours_greedy,
        "speedup_greedy_vs_naive": naive_total / ours_greedy,
        "speedup_selector_vs_naive": naive_total / ours_sel,
        "parity": ref["parity"],
    }
    if not quick:
        sel = results[selector["id"]]
        checks = {
            "greedy_50k_of_939k_s": ours_greedy,
            "selector_strings_s": ours_sel,
            "selector_strings_rss_mb": sel["rss_peak_mb"],
            "speedup_vs_reference": summary["speedup_greedy_vs_reference_best_case"],
            "greedy_50k_of_10m_s": results[greedy_big["id"]]["seconds"],
        }
        summary["targets"] = {
            name: {
                "value": value,
                "target": TARGETS[name],
                "met": bool(
                    value >= TARGETS[name] if name.startswith("speedup") else value < TARGETS[name]
                ),
            }
            for name, value in checks.items()
        }
    return summary


def _fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3f} s"


def render(
    cases: list[dict[str, Any]], results: dict[str, dict[str, Any]], summary: dict[str, Any]
) -> str:
    """The human-readable report (tables, parity line, targets)."""
    lines = []
    head = f"{'case':<60} {'time':>11} {'RSS peak':>11} {'py peak':>10}  notes"
    lines += [head, "-" * len(head)]
    for case in cases:
        r = results[case["id"]]
        rss = f"{r['rss_peak_mb']:.0f} MB" + ("" if r["rss_method"] == "VmHWM" else "*")
        py = f"{r['py_peak_mb']:.0f} MB" if "py_peak_mb" in r else "-"
        notes = ""
        if case["kind"] == "greedy":
            st = r["stats"]
            notes = f"{st['engine']}, {st['evaluations']:,} gain evals, {st['refreshes']} refreshes"
        elif case["kind"] == "selector":
            notes = "picks == greedy_select on ids"
        elif case["kind"] in ("reference", "naive"):
            notes = (
                f"build {r['build_s']:.2f} s, {r['step_s'] * 1e3:.2f} ms/step median "
                f"(fastest {r['step_min_s'] * 1e3:.2f} ms)"
            )
        lines.append(f"{case['label']:<60} {_fmt_s(r['seconds']):>11} {rss:>11} {py:>10}  {notes}")
    pool, k = summary["pool"], summary["k"]
    re, ne = summary["reference_extrapolated"], summary["naive_extrapolated"]
    lines.append("")
    lines.append(f"Extrapolated to N = {pool:,}, k = {k:,}:")
    lines.append(
        f"  dense reference: build {_fmt_s(re['build_s'])} + {k:,} x "
        f"{re['step_s']:.3f} s/step (median) = {_fmt_s(re['total_s'])} "
        f"(best case, fastest step throughout: {_fmt_s(re['total_best_case_s'])}); "
        f"A and U need {re['memory_gb_float32_A_and_U']:.1f} GB ({re['basis']})"
    )
    lines.append(
        f"  naive sparse scan: build {_fmt_s(ne['build_s'])} + {k:,} x "
        f"{ne['step_s'] * 1e3:.1f} ms/step (median) = {_fmt_s(ne['total_s'])} ({ne['basis']})"
    )
    lines.append(
        f"Speed-up vs dense reference: greedy_select {summary['speedup_greedy_vs_reference']:,.0f}x"
        f", select_indices on strings {summary['speedup_selector_vs_reference']:,.0f}x"
        f" (best case for the reference: greedy_select "
        f"{summary['speedup_greedy_vs_reference_best_case']:,.0f}x)"
    )
    lines.append(
        f"Speed-up vs naive sparse scan: greedy_select {summary['speedup_greedy_vs_naive']:,.0f}x"
        f", select_indices on strings {summary['speedup_selector_vs_naive']:,.0f}x"
    )
    par = summary["parity"]
    msg = (
        f"PARITY OK: greedy_select == dense reference ({par['reference_dtype']}) on all "
        f"{par['steps']} picks of N={par['n']:,}; MIGSelector on strings == greedy_select"
    )
    lines.append("")
    lines.append(msg)
    if "note" in par:
        lines.append(f"  note: {par['note']}")
    if "targets" in summary:
        lines.append("")
        lines.append("Targets:")
        for name, t in summary["targets"].items():
            op = ">=" if name.startswith("speedup") else "<"
            status = "met" if t["met"] else "MISSED"
            lines.append(
                f"  {name:<26} {t['value']:>12,.3f}  target {op} {t['target']:<8g} {status}"
            )
    else:
        lines.append("(quick run: sizes are reduced, targets apply to the full run only)")
    if any(r["rss_method"] != "VmHWM" for r in results.values()):
        lines.append("* peak RSS from ru_maxrss (process lifetime), not reset before the call")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- shared main
def bench_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes (the ``--run-case`` pair is internal)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 minute)")
    parser.add_argument("--json", metavar="OUT", help="write all numbers to this JSON file")
    parser.add_argument("--in-process", action="store_true", help="run every case in this process")
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def serve_case(args: argparse.Namespace, run: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """In a ``--run-case`` child: run that case, write its result file, return True."""
    if not args.run_case:
        return False
    import datasets

    datasets.disable_progress_bars()
    result = run(json.loads(args.run_case))
    Path(args.result_file).write_text(json.dumps(result, default=float))
    return True


def run_all(
    tag: str,
    cases: list[dict[str, Any]],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    module: str,
    in_process: bool,
) -> dict[str, dict[str, Any]] | None:
    """Run every case (each in its own interpreter unless ``in_process``), printing progress;
    return results by case id, or None after printing the first failure."""
    results: dict[str, dict[str, Any]] = {}
    for case in cases:
        print(f"[{tag}] {case['label']} ...", flush=True)
        try:
            results[case["id"]] = run(case) if in_process else run_case_isolated(case, module)
        except (AssertionError, RuntimeError) as exc:
            print(f"[{tag}] FAILED: {exc}", file=sys.stderr, flush=True)
            return None
        r = results[case["id"]]
        print(f"[{tag}]   {_fmt_s(r['seconds'])}, RSS peak {r['rss_peak_mb']:.0f} MB", flush=True)
    return results


def write_json(
    path: str, quick: bool, cases: list[dict[str, Any]], results: dict[str, Any], **extra: Any
) -> None:
    """Write cases, their results, the machine and ``extra`` sections as JSON."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_end": os.getloadavg(),
        },
        "cases": [{**c, "result": results[c["id"]]} for c in cases],
        **extra,
    }
    out.write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (non-zero when a case or parity fails)."""
    args = bench_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if serve_case(args, run_case):
        return 0
    cases = plan(args.quick)
    t0 = time.perf_counter()
    results = run_all("bench_select", cases, run_case, "benchmarks.bench_select", args.in_process)
    if results is None:
        return 1
    summary = summarise(cases, results, args.quick)
    print()
    print(render(cases, results, summary))
    print(f"\n(total benchmark wall time {_fmt_s(time.perf_counter() - t0)})")
    if args.json:
        write_json(args.json, args.quick, cases, results, summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
