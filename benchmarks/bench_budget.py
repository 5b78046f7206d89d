"""Benchmark MIG under a token budget: budgeted selection against MIG by rows cut to the budget.

Run from the repository root::

    python -m benchmarks.bench_budget                # 100K rows
    python -m benchmarks.bench_budget --n 939000     # the Tulu 3 pool's size

The pool is :func:`benchmarks.synthetic.make_pool_arrays` with its label graph; each row's cost
is a token count drawn from a log-normal (median ``--median-tokens``, log-sd ``--sigma``,
seeded, rounded up to an integer) and the budget is ``--share`` (5%) of the pool's total cost.

- ``budget``: :func:`hf_mig.core.budget.budget_select` (best of the cost-scaled and unit-cost
  lazy greedies) with that budget and no limit on rows.
- ``rows``: :func:`hf_mig.greedy_select` by rows, its picks taken in order while they fit in
  the budget (k grows until the cut falls inside the picks).

Both report E(S), rows, tokens used, wall time and peak memory (see
:func:`benchmarks.bench_select.measure`), after a warm-up call that loads numba's code.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_select import _warm_up, measure  # noqa: E402
from benchmarks.synthetic import TULU_K_LABELS, make_label_graph, make_pool_arrays  # noqa: E402
from hf_mig import greedy_select  # noqa: E402
from hf_mig.core.budget import budget_select  # noqa: E402


def token_costs(n: int, seed: int, median: float, sigma: float) -> np.ndarray:
    """Log-normal token counts (integers >= 1), seeded."""
    rng = np.random.default_rng(seed)
    return np.ceil(rng.lognormal(math.log(median), sigma, size=n))


def rows_cut_to_budget(pool, prop, costs: np.ndarray, budget: float) -> dict[str, Any]:
    """Unit greedy by rows, its picks in order while their running cost fits the budget."""
    n = costs.size
    k = min(n, max(1, int(2 * n * budget / costs.sum())))
    while True:
        result = greedy_select(*pool, prop, k, progress=False)
        spent = np.cumsum(costs[result.indices])
        m = int(np.searchsorted(spent, budget, side="right"))
        if m < k or k == n:
            break
        k = min(n, 2 * k)
    objective = float(result.objective_trace[m - 1]) if m else result.initial_objective
    return {"k_run": k, "rows": m, "cost": float(spent[m - 1]) if m else 0.0, "E": objective}


def run(n: int, seed: int, share: float, median: float, sigma: float) -> dict[str, Any]:
    graph = make_label_graph(TULU_K_LABELS, seed)
    warm = _warm_up(graph)
    pool = make_pool_arrays(n, TULU_K_LABELS, seed)
    prop = graph.propagation_matrix(1.0)
    costs = token_costs(n, seed + 1, median, sigma)
    budget = share * float(costs.sum())
    budget_select(
        *make_pool_arrays(2_000, TULU_K_LABELS, 123), prop, 1e4, token_costs(2_000, 1, 400, 1)
    )
    got, budget_meas = measure(
        lambda: budget_select(*pool, prop, budget, costs, progress=False), trace=True
    )
    rows, rows_meas = measure(lambda: rows_cut_to_budget(pool, prop, costs, budget), trace=True)
    return {
        "n": n,
        "total_cost": float(costs.sum()),
        "budget": budget,
        "warmup_s": warm,
        "budget_run": {
            **budget_meas,
            "rows": int(got.indices.size),
            "cost": got.stats["cost"],
            "E": float(got.objective_trace[-1]),
            "strategy": got.stats["strategy"],
            "E_cost_scaled": got.stats["objective_cost_scaled"],
            "E_unit": got.stats["objective_unit"],
            "evaluations": got.stats["evaluations"],
        },
        "rows_run": {**rows_meas, **rows},
    }


def report(res: dict[str, Any]) -> str:
    b, r = res["budget_run"], res["rows_run"]
    lines = [
        f"pool {res['n']:,} rows, {res['total_cost']:,.0f} tokens; budget {res['budget']:,.0f} "
        f"tokens; numba warm-up {res['warmup_s']:.1f}s",
        f"{'method':<24}{'E(S)':>14}{'rows':>10}{'tokens':>14}{'time':>9}{'RSS peak':>11}"
        f"{'py peak':>10}",
    ]
    for name, row in (("budgeted MIG", b), ("MIG by rows, cut", r)):
        lines.append(
            f"{name:<24}{row['E']:>14,.2f}{row['rows']:>10,}{row['cost']:>14,.0f}"
            f"{row['seconds']:>8.2f}s{row['rss_peak_mb']:>8.0f} MB{row['py_peak_mb']:>7.0f} MB"
        )
    lines.append(
        f"budgeted: winner {b['strategy']} (E cost-scaled {b['E_cost_scaled']:,.2f}, unit "
        f"{b['E_unit']:,.2f}), {b['evaluations']:,} gain evaluations; by rows ran k="
        f"{r['k_run']:,}; E gain of budgeted over cut: {b['E'] / r['E'] - 1:+.1%}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="pool rows (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", type=float, default=0.05, help="budget / total cost")
    parser.add_argument("--median-tokens", type=float, default=400.0)
    parser.add_argument("--sigma", type=float, default=1.0, help="log-sd of the token counts")
    args = parser.parse_args(argv)
    print(report(run(args.n, args.seed, args.share, args.median_tokens, args.sigma)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
