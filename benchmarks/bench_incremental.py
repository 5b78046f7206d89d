"""Benchmark extending a MIG selection over a grown pool against a fresh greedy on it.

Run from the repository root::

    python -m benchmarks.bench_incremental               # 200K rows, k=10,000, +10%, +1,000
    python -m benchmarks.bench_incremental --n 939000 --k 50000

The pool is :func:`benchmarks.synthetic.make_pool_arrays` (``--n`` rows plus ``--grow`` of that
appended, drawn with the same seed so the first ``--n`` rows are the old pool) with its label
graph. The old selection is :func:`hf_mig.greedy_select` with ``--k`` on the old rows; then

- ``extend``: :func:`hf_mig.core.incremental.greedy_extend` by ``--more`` from those picks
  over the grown pool, with the frontier the old selection left (their ``x(S)`` replayed, the
  old rows' gain bounds reused, only the appended rows evaluated, then the lazy greedy goes on),
  as ``MIGSelector.extend`` runs it;
- ``extend_replay``: the same without the frontier (every row evaluated again);
- ``full``: :func:`hf_mig.greedy_select` with ``k + more`` on the grown pool.

and, through the selector on the same pool as a ``datasets.Dataset``, ``selector_extend_*``:
``MIGSelector.extend`` by ``--more`` after ``select`` with ``--k`` (encoding only the appended
rows), against ``selector_full_*``: ``MIGSelector(k + more).select`` on the grown pool, best of
3 each, for the grown pool built with ``concatenate_datasets`` (``*_concatenated``: its first
rows are views of the old pool's memory) and as a separate copy (``*_copy``: they are compared
as data).

All report wall time and peak memory (see :func:`benchmarks.bench_select.measure`), after a
warm-up call that loads numba's code; the summary gives extend's time as a share of the full
run's and the relative gap between their final E(S).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_select import _warm_up, measure  # noqa: E402
from benchmarks.synthetic import TULU_K_LABELS, make_label_graph, make_pool_arrays  # noqa: E402
from hf_mig import greedy_select  # noqa: E402
from hf_mig.core.incremental import greedy_extend  # noqa: E402


def run(n: int, grow: float, k: int, more: int, seed: int) -> dict[str, Any]:
    """Old selection on ``n`` rows, then extend by ``more`` vs a fresh ``k + more`` on the union."""
    graph = make_label_graph(TULU_K_LABELS, seed)
    warm = _warm_up(graph)
    n_all = n + int(round(grow * n))
    indptr, ids, scores = make_pool_arrays(n_all, TULU_K_LABELS, seed)
    prop = graph.propagation_matrix(1.0)
    union = (indptr, ids, scores, prop)
    old = (indptr[: n + 1], ids[: indptr[n]], scores[:n], prop)
    first, first_m = measure(lambda: greedy_select(*old, k, progress=False))
    greedy_extend(*union, 1, first.indices[:10], progress=False)  # load extend's kernels
    greedy_extend(*union, 1, first.indices, progress=False, frontier=first.frontier)

    (added, state), extend_m = measure(
        lambda: greedy_extend(
            *union, more, first.indices, progress=False, frontier=first.frontier
        )
    )
    (replayed, _), replay_m = measure(
        lambda: greedy_extend(*union, more, first.indices, progress=False)
    )
    assert replayed.indices.tolist() == added.indices.tolist()
    full, full_m = measure(lambda: greedy_select(*union, k + more, progress=False))
    e_extend, e_full = state.objective, float(full.objective_trace[-1])
    return {
        "rows_old": n,
        "rows_union": n_all,
        "k": k,
        "more": more,
        "warmup_s": warm,
        "old_select": first_m,
        "extend": {**extend_m, "evaluations": added.stats["evaluations"]},
        "extend_replay": {**replay_m, "evaluations": replayed.stats["evaluations"]},
        "full": {**full_m, "evaluations": full.stats["evaluations"]},
        "time_ratio": extend_m["seconds"] / full_m["seconds"],
        "E_old": float(first.objective_trace[-1]),
        "E_extend": e_extend,
        "E_full": e_full,
        "objective_gap": (e_full - e_extend) / e_full,
        "new_picks_among_appended_rows": int((added.indices >= n).sum()),
    }


def _best_of(runs: int, fn: Any) -> dict[str, Any]:
    """The fastest of ``runs`` measured calls of ``fn()`` (see ``measure``)."""
    return min((measure(fn)[1] for _ in range(runs)), key=lambda m: m["seconds"])


def run_selector(n: int, grow: float, k: int, more: int, seed: int) -> dict[str, Any]:
    """``MIGSelector.extend`` against a fresh ``MIGSelector.select`` on the grown pool (both
    return the whole selection as a ``Dataset``), best of 3 each, for a grown pool made two
    ways: ``concatenate_datasets`` of the old pool and the new rows (the first rows are views
    of the same memory) and a separate copy (the first rows are compared as data)."""
    from datasets import concatenate_datasets

    from benchmarks.synthetic import make_pool_dataset
    from hf_mig import MIGSelector

    graph = make_label_graph(TULU_K_LABELS, seed)
    copy = make_pool_dataset(n + int(round(grow * n)), seed=seed)
    old = copy.select(range(n)).flatten_indices()
    new_rows = copy.select(range(n, len(copy))).flatten_indices()
    grown = {"concatenated": concatenate_datasets([old, new_rows]), "copy": copy}

    def extend(pool: Any) -> Any:
        sel = MIGSelector(k, label_graph=graph, progress=False)
        sel.select_indices(old)
        return lambda: sel.extend(pool, more)

    fresh = MIGSelector(k + more, label_graph=graph, progress=False)
    extend(copy)()  # loads the kernels the continuation runs
    out: dict[str, Any] = {}
    for name, pool in grown.items():
        ext = min((measure(extend(pool))[1] for _ in range(3)), key=lambda m: m["seconds"])
        full = _best_of(3, lambda pool=pool: fresh.select(pool))
        out[f"selector_extend_{name}"] = ext
        out[f"selector_full_{name}"] = full
        out[f"selector_time_ratio_{name}"] = ext["seconds"] / full["seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows of the old pool")
    parser.add_argument("--grow", type=float, default=0.1, help="share of rows appended")
    parser.add_argument("--k", type=int, default=10_000, help="picks of the old selection")
    parser.add_argument("--more", type=int, default=1_000, help="picks added by extend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    res = run(args.n, args.grow, args.k, args.more, args.seed)
    res.update(run_selector(args.n, args.grow, args.k, args.more, args.seed))
    print(
        f"pool {res['rows_old']:,} -> {res['rows_union']:,} rows; k={res['k']:,} + {res['more']:,}"
    )
    names = ["old_select", "extend", "extend_replay", "full"]
    hows, kinds = ("concatenated", "copy"), ("extend", "full")
    names += [f"selector_{kind}_{how}" for how in hows for kind in kinds]
    for name in names:
        m = res[name]
        evals = f"  {m['evaluations']:>10,} gain evaluations" if "evaluations" in m else ""
        print(f"  {name:<27} {m['seconds']:8.3f} s  peak +{m['rss_peak_mb']:8.1f} MB{evals}")
    print(f"  greedy extend / full time: {res['time_ratio']:.1%} (target <= 10%)")
    for how in ("concatenated", "copy"):
        ratio = res[f"selector_time_ratio_{how}"]
        print(f"  MIGSelector extend / select time, grown pool {how}: {ratio:.1%}")
    print(
        f"  E: old {res['E_old']:.6g}, extend {res['E_extend']:.6g}, full {res['E_full']:.6g}; "
        f"gap {res['objective_gap']:.4%}; new picks from appended rows: "
        f"{res['new_picks_among_appended_rows']}"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
