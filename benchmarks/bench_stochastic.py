"""Benchmark stochastic greedy against exact lazy greedy: time, peak memory and E(S).

Run from the repository root::

    python -m benchmarks.bench_stochastic                 # the Tulu 3 pool's size, k = 50,000
    python -m benchmarks.bench_stochastic --n 200000      # a smaller pool

The pool is :func:`benchmarks.synthetic.make_pool_arrays` with its label graph. ``lazy`` is
:func:`hf_mig.greedy_select` (exact lazy greedy); each ``stochastic eps=...`` row is
:func:`hf_mig.core.stochastic.stochastic_select` with that ``epsilon`` (seeded). Each row gives
E(S), its ratio to lazy greedy's (both measured from E of the empty set), gain evaluations, wall
time and peak memory (see :func:`benchmarks.bench_select.measure`), after a warm-up call that
loads numba's code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_select import _warm_up, measure  # noqa: E402
from benchmarks.synthetic import (  # noqa: E402
    TULU_K_LABELS,
    TULU_N_ROWS,
    make_label_graph,
    make_pool_arrays,
)
from hf_mig import greedy_select  # noqa: E402
from hf_mig.core.stochastic import stochastic_select  # noqa: E402


def run(n: int, k: int, seed: int, epsilons: list[float]) -> dict[str, Any]:
    graph = make_label_graph(TULU_K_LABELS, seed)
    warm = _warm_up(graph)
    pool = make_pool_arrays(n, TULU_K_LABELS, seed)
    prop = graph.propagation_matrix(1.0)
    stochastic_select(*make_pool_arrays(2_000, TULU_K_LABELS, 123), prop, 50)  # warm-up
    rows = {}
    exact, meas = measure(lambda: greedy_select(*pool, prop, k, progress=False))
    rows["lazy (exact)"] = {**meas, "E": float(exact.objective_trace[-1]), **exact.stats}
    for eps in epsilons:
        got, meas = measure(
            lambda eps=eps: stochastic_select(
                *pool, prop, k, epsilon=eps, seed=seed, progress=False
            )
        )
        rows[f"stochastic eps={eps:g}"] = {**meas, "E": got.stats["objective"], **got.stats}
    e0 = exact.initial_objective
    for row in rows.values():
        row["ratio"] = (row["E"] - e0) / (rows["lazy (exact)"]["E"] - e0)
    return {"n": n, "k": k, "warmup_s": warm, "initial": e0, "rows": rows}


def report(res: dict[str, Any]) -> str:
    lines = [
        f"pool {res['n']:,} rows, k = {res['k']:,}; E(empty set) {res['initial']:.4g}; numba "
        f"warm-up {res['warmup_s']:.1f}s",
        f"{'method':<24}{'E(S)':>14}{'ratio':>9}{'evaluations':>14}{'time':>9}{'RSS peak':>11}",
    ]
    for name, row in res["rows"].items():
        lines.append(
            f"{name:<24}{row['E']:>14,.2f}{row['ratio']:>9.4f}{row['evaluations']:>14,}"
            f"{row['seconds']:>8.2f}s{row['rss_peak_mb']:>8.0f} MB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=TULU_N_ROWS, help="pool rows (default 939000)")
    parser.add_argument("--k", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilon", type=float, nargs="+", default=[0.1, 0.01])
    args = parser.parse_args(argv)
    print(report(run(args.n, args.k, args.seed, args.epsilon)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
