"""Greedy maximisation of E(S) under a cost budget: ``sum_{i in S} c_i <= B``.

E is monotone submodular (SPEC: phi concave and increasing, u_i >= 0), so this is submodular
maximisation under a knapsack constraint. :func:`budget_select` runs two lazy greedies over the
same sparse model as :func:`hf_mig.core.greedy.greedy_select` (same ``gain`` definitions):

* cost-scaled: repeatedly pick the row with the largest ``gain / cost`` among rows that still
  fit in the budget left;
* unit-cost: repeatedly pick the row with the largest ``gain`` among rows that still fit;

and returns the one with the larger final E(S) (the cost-scaled one on a tie). The unit-cost
run starts with the best single row that fits, so the result is within ``(1 - 1/e) / 2`` of the
best selection within the budget (Khuller, Moss and Naor 1999; Leskovec et al. 2007, "CELF").
Each run stops when no unpicked row fits or after ``k`` picks; a row whose cost alone exceeds the
budget is never picked. Ties go to the lowest index, as in ``greedy_select``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hf_mig.core._jit import njit as _njit
from hf_mig.core._jit import njit_inline as _njit_inline
from hf_mig.core._jit import resolve_compiled
from hf_mig.core.encoding import check_k
from hf_mig.core.greedy import (
    _EVALS,
    _REFRESHES,
    _SIZE,
    _STALE,
    _STEP,
    GAIN_KINDS,
    ROOT,
    GreedyResult,
    _gain,
    _heapify,
    _initial_state,
    _record,
    _sift_down,
    chunk_steps,
    stamp_array,
)
from hf_mig.core.inputs import check_inputs
from hf_mig.core.objective import Objective

__all__ = [
    "STRATEGIES",
    "budget_select",
    "check_budget",
    "check_costs",
    "check_some_row_fits",
    "total_cost",
]

#: The two greedies :func:`budget_select` runs, in the order it prefers them on a tie.
STRATEGIES = ("cost_scaled", "unit")


def check_budget(budget: object) -> float:
    """``budget`` as a ``float`` once it is a finite real number ``> 0``; else ``ValueError``."""
    number = isinstance(budget, (int, float, np.integer, np.floating)) and not isinstance(
        budget, bool
    )
    if not (number and math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a finite number > 0, got {budget!r}")
    return float(budget)


def check_costs(costs: object, n: int, column: str = "cost") -> np.ndarray:
    """Per-row costs as float64 once there are ``n`` of them, each finite and ``> 0``.

    Otherwise ``ValueError`` naming the first bad row, the ``column`` and what was expected.
    """
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (n,):
        raise ValueError(f"column {column!r}: expected {n} costs (one per row), got {c.shape}")
    bad = ~(np.isfinite(c) & (c > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"row {row}: column {column!r} is {float(c[row])!r}; expected a finite cost > 0 "
            f"({int(bad.sum())} rows affected)"
        )
    return c


def total_cost(costs: np.ndarray) -> float:
    """The cost of picks given in pick order, added one at a time as the greedy adds them, so
    that ``total_cost(costs[picks]) <= budget`` holds exactly when the greedy kept within it
    (a pairwise ``sum`` can differ in the last bit)."""
    c = np.asarray(costs, dtype=np.float64)
    return float(np.cumsum(c)[-1]) if c.size else 0.0


def check_some_row_fits(
    costs: np.ndarray, budget: float, column: str = "cost", allowed: np.ndarray | None = None
) -> None:
    """``ValueError`` naming the cheapest row when no row (of those ``allowed``, a boolean mask)
    costs at most ``budget``."""
    candidates = np.flatnonzero(allowed) if allowed is not None else np.arange(costs.size)
    if candidates.size:
        cheapest = int(candidates[np.argmin(costs[candidates])])
        if costs[cheapest] <= budget:
            return
        where = f"; the cheapest, row {cheapest}, costs {float(costs[cheapest]):g}"
    else:
        where = ""
    among = " among the rows the quotas allow" if allowed is not None else ""
    raise ValueError(f"no row{among} fits budget={budget:g} (column {column!r}){where}")


# ---------------------------------------------------------------------------- kernels
# The lazy engine of :mod:`hf_mig.core.greedy` under a budget and per-group caps: every row has a
# cost ``costs[i] > 0`` and a group ``group[i]``. The heap key is the gain (``scaled=False``) or
# gain / cost (``scaled=True``); both are non-increasing as S grows, so lazy evaluation stays
# exact. Row i is allowed while it fits the budget left and ``count[group[i]] < cap[group[i]]``;
# a row that is not allowed is dropped from the heap for the rest of the phase (the spent budget
# and the counts only grow). ``fstate = [E, spent]``; ``knap = (costs, budget, scaled, last)``
# with ``last[i]`` row i's latest gain; ``quota = (group, count, cap)``.
@_njit_inline
def _budget_key(gain, cost, scaled):
    if scaled:
        return -(gain / cost)
    return -gain


@_njit_inline
def _allowed(i, fstate, knap, quota):
    costs, budget, _, _ = knap
    group, count, cap = quota
    return fstate[1] + costs[i] <= budget and count[group[i]] < cap[group[i]]


@_njit
def _fill_quota_heap(heap, pool, prop, state, work, exact, phi, picked, stamp, t, fstate, knap,
                     quota):  # fmt: skip
    """Evaluate every unpicked allowed row, in index order, into the heap; -> size."""
    costs, _, scaled, last = knap
    pos = ROOT
    for j in range(picked.size):
        if not picked[j] and _allowed(j, fstate, knap, quota):
            last[j] = _gain(j, pool, prop, state, work, exact, phi)
            heap[pos, 0] = _budget_key(last[j], costs[j], scaled)
            heap[pos, 1] = j
            stamp[j] = t
            pos += 1
    _heapify(heap, pos)
    return pos - ROOT


@_njit
def _pop_root(heap, size):
    size -= 1
    heap[ROOT, 0] = heap[ROOT + size, 0]
    heap[ROOT, 1] = heap[ROOT + size, 1]
    if size > 0:
        _sift_down(heap, ROOT, ROOT + size)
    return size


@_njit
def _quota_lazy_steps(steps, pool, prop, state, work, exact, phi, heap, stamp, picked, istate,
                      fstate, out, refresh_limit, knap, quota):  # fmt: skip
    """Run up to ``steps`` picks of the lazy greedy among allowed rows; stop when none is."""
    costs, _, scaled, last = knap
    group, count, _ = quota
    for _ in range(steps):
        size = istate[_SIZE]
        t = istate[_STEP]
        found = False
        while size > 0:
            i = np.int64(heap[ROOT, 1])
            if not _allowed(i, fstate, knap, quota):  # not again in this phase: drop it
                size = _pop_root(heap, size)
                continue
            if stamp[i] == t:  # evaluated at this step: its key is current, and maximal
                found = True
                break
            last[i] = _gain(i, pool, prop, state, work, exact, phi)
            heap[ROOT, 0] = _budget_key(last[i], costs[i], scaled)
            stamp[i] = t
            _sift_down(heap, ROOT, ROOT + size)
            istate[_EVALS] += 1
            istate[_STALE] += 1
            if istate[_STALE] > refresh_limit * size:
                size = _fill_quota_heap(heap, pool, prop, state, work, exact, phi, picked, stamp,
                                        t, fstate, knap, quota)  # fmt: skip
                istate[_EVALS] += size
                istate[_STALE] = 0
                istate[_REFRESHES] += 1
        if not found:
            istate[_SIZE] = 0
            break
        istate[_SIZE] = _pop_root(heap, size)
        picked[i] = True
        fstate[1] += costs[i]
        count[group[i]] += 1
        _record(i, last[i], pool, prop, state, work, phi, istate, fstate, out)
    return istate[_STEP]


# ---------------------------------------------------------------------------- driver
def _lazy_setup(pool, prop, objective, gain, compiled, progress):
    """``(model, (compiled, show))`` for :func:`_run`; ``compiled=None`` uses numba if installed."""
    compiled = resolve_compiled(compiled)
    phi = objective.kernel_args
    show = progress if progress is not None else pool[2].size > 2_000_000
    return (pool, prop, gain == "exact", phi), (compiled, show)


def _run(scaled, model, limits, bounds, options, label="quotas"):
    """One lazy greedy (``scaled``: key gain / cost, else gain) in two phases -> GreedyResult.

    ``bounds = (group, lower, upper)``: the first phase picks among rows of groups under
    ``lower`` until ``lower.sum()`` picks, the second among rows of groups under ``upper`` until
    ``k`` picks; each stops early when no row is allowed. ``label`` names the progress bar.
    """
    pool, prop, exact, phi = model
    k, costs, budget = limits
    group, lower, upper = bounds
    compiled, show, refresh_fraction, chunk = options
    n = costs.size
    state, work, istate, fstate, out = _initial_state(prop, phi, k, spent=True)
    initial = float(fstate[0])
    picked = np.zeros(n, dtype=np.bool_)
    heap = np.empty((n + ROOT, 2))
    stamp = stamp_array(n, k)
    knap = (costs, budget, scaled, np.zeros(n))
    count = np.zeros(lower.size, dtype=np.int64)
    fill = _fill_quota_heap if compiled else _fill_quota_heap.py_func
    steps = _quota_lazy_steps if compiled else _quota_lazy_steps.py_func
    name = STRATEGIES[0 if scaled else 1]
    with tqdm(total=k, desc=f"MIG {label} ({name})", unit="pick", disable=not show) as bar:
        for cap, stop in ((lower, int(lower.sum())), (upper, k)):
            quota = (group, count, cap)
            t = int(istate[_STEP])
            istate[_SIZE] = fill(heap, pool, prop, state, work, exact, phi, picked, stamp, t,
                                 fstate, knap, quota)  # fmt: skip
            istate[_EVALS] += istate[_SIZE]
            istate[_STALE] = 0
            done = t
            while done < stop and istate[_SIZE] > 0:
                step = min(chunk_steps(chunk, compiled), stop - done)
                done = int(
                    steps(step, pool, prop, state, work, exact, phi, heap, stamp, picked, istate,
                          fstate, out, float(refresh_fraction), knap, quota)
                )  # fmt: skip
                bar.update(done - bar.n)
            if cap is lower:
                met = bool((count >= lower).all())
    stats = {
        "strategy": name,
        "minimums_met": met,
        "evaluations": int(istate[_EVALS]),
        "refreshes": int(istate[_REFRESHES]),
        "cost": float(fstate[1]),
        "objective": float(fstate[0]),
        "group_counts": count.tolist(),
    }
    done = int(istate[_STEP])
    return GreedyResult(out[0][:done], out[1][:done], out[2][:done], initial, stats)


def budget_select(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    budget: float,
    costs: np.ndarray,
    k: int | None = None,
    objective: Objective | None = None,
    *,
    gain: str = "gradient",
    compiled: bool | None = None,
    refresh_fraction: float = 1.0,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    cost_column: str = "cost",
) -> GreedyResult:
    """Pick rows of total cost ``<= budget`` (and at most ``k``) greedily; see the module
    docstring for the two greedies and the ``(1 - 1/e) / 2`` guarantee.

    The pool, P, ``objective`` and ``gain`` are as in :func:`hf_mig.core.greedy.greedy_select`;
    ``costs``: one finite cost ``> 0`` per row (``cost_column`` names them in errors);
    ``k=None``: no limit on the number of picks. phi must be concave (E submodular).
    ``refresh_fraction`` is ``greedy_select``'s; its default here re-evaluates the heap only
    once stale evaluations exceed its size (more frequent refreshes cost time under a
    budget: the greedies run over many more picks than a typical ``k``). Raises
    ``ValueError`` when no row fits the budget. ``stats`` holds the winning ``strategy``, each
    strategy's final E (``objective_cost_scaled``, ``objective_unit``), ``budget`` and ``cost``
    (the picks' total cost).
    """
    objective = objective or Objective()
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    if not objective.is_concave:
        raise ValueError(
            f"phi={objective.phi} with b={objective.b} is not concave: E(S) is not submodular, "
            "so budgeted selection has no guarantee; use a concave phi (e.g. pow with b <= 1)"
        )
    budget = check_budget(budget)
    pool, prop, _ = check_inputs(indptr, label_ids, weights, propagation, objective)
    n = pool[2].size
    costs = check_costs(costs, n, cost_column)
    k = n if k is None else check_k(k, n)
    check_some_row_fits(costs, budget, cost_column)
    model, options = _lazy_setup(pool, prop, objective, gain, compiled, progress)
    options = (*options, refresh_fraction, chunk_size)
    compiled = options[0]
    one_group = np.zeros(n, dtype=np.int64)
    bounds = (one_group, np.zeros(1, dtype=np.int64), np.array([k], dtype=np.int64))
    runs = [
        _run(scaled, model, (k, costs, budget), bounds, options, "budget")
        for scaled in (True, False)
    ]
    scaled_run, unit_run = runs
    best = unit_run if unit_run.stats["objective"] > scaled_run.stats["objective"] else scaled_run
    best.stats = {
        "engine": "lazy",
        "compiled": bool(compiled),
        "gain": gain,
        "strategy": best.stats["strategy"],
        "objective_cost_scaled": scaled_run.stats["objective"],
        "objective_unit": unit_run.stats["objective"],
        "budget": budget,
        "cost": best.stats["cost"],
        "evaluations": sum(r.stats["evaluations"] for r in runs),
        "refreshes": sum(r.stats["refreshes"] for r in runs),
        "pool_size": n,
        "num_labels": prop[0].size - 1,
    }
    return best
