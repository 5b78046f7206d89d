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

from hf_mig.core._jit import HAVE_NUMBA
from hf_mig.core.encoding import check_k
from hf_mig.core.greedy import (
    _EVALS,
    _REFRESHES,
    _SIZE,
    GAIN_KINDS,
    ROOT,
    GreedyResult,
    _as_csr_parts,
    _budget_lazy_steps,
    _dphi,
    _fill_budget_heap,
    _phi,
    information_bounds,
)
from hf_mig.core.objective import Objective

__all__ = ["STRATEGIES", "budget_select", "check_budget", "check_costs"]

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
            f"row {row}: column {column!r} is {c[row]!r}; expected a finite cost > 0 "
            f"({int(bad.sum())} rows affected)"
        )
    return c


def _validated(indptr, label_ids, weights, propagation, objective):
    """The pool and P as the kernels take them, checked as ``greedy_select`` checks them."""
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    lab = np.ascontiguousarray(label_ids, dtype=np.int64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if indptr.shape != (w.size + 1,) or indptr[0] != 0 or indptr[-1] != lab.size:
        raise ValueError(
            "indptr must have len(weights) + 1 entries, start at 0, end at len(label_ids)"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    prop = _as_csr_parts(propagation)
    num_labels = prop[0].size - 1
    if lab.size and (lab.min() < 0 or lab.max() >= num_labels):
        raise ValueError(f"label ids must lie in [0, {num_labels})")
    bounds = information_bounds(indptr, lab, w, propagation, objective)
    if not all(math.isfinite(v) for v in bounds.values()):
        raise ValueError(
            f"weights up to {w.max():.6g} (total {bounds['weight_total']:.6g}) overflow float64 "
            "in the objective; rescale the weights, e.g. divide them by their maximum"
        )
    return (indptr, lab, w), prop


def _run(scaled, model, limits, options):
    """One budgeted lazy greedy (``scaled``: key gain / cost, else gain) -> GreedyResult."""
    pool, prop, exact, phi = model
    k, costs, budget = limits
    compiled, refresh_fraction, chunk, show = options
    n = costs.size
    num_labels = prop[0].size - 1
    p_indptr, p_indices, p_data = prop
    g = np.full(num_labels, _dphi.py_func(0.0, phi))
    h = sp.csr_matrix((p_data, p_indices, p_indptr), shape=(num_labels, num_labels)) @ g
    state = (np.zeros(num_labels), g, h)
    work = (np.zeros(num_labels), np.zeros(num_labels, np.int64), np.zeros(num_labels, np.int8))
    istate = np.zeros(5, dtype=np.int64)
    initial = float(num_labels * _phi.py_func(0.0, phi))
    fstate = np.array([initial, 0.0])
    out = (np.empty(k, dtype=np.int64), np.empty(k), np.empty(k))
    picked = np.zeros(n, dtype=np.bool_)
    heap = np.empty((n + ROOT, 2))
    stamp = np.zeros(n, dtype=np.int64)
    knap = (costs, budget, scaled, np.zeros(n))
    fill = _fill_budget_heap if compiled else _fill_budget_heap.py_func
    steps = _budget_lazy_steps if compiled else _budget_lazy_steps.py_func
    istate[_SIZE] = fill(heap, pool, prop, state, work, exact, phi, picked, stamp, 0, fstate, knap)
    istate[_EVALS] = istate[_SIZE]
    name = STRATEGIES[0 if scaled else 1]
    done = 0
    with tqdm(total=budget, desc=f"MIG budget ({name})", unit="cost", disable=not show) as bar:
        while done < k and istate[_SIZE] > 0:
            step = min(chunk if compiled else max(1, chunk // 10), k - done)
            done = int(
                steps(step, pool, prop, state, work, exact, phi, heap, stamp, picked, istate,
                      fstate, out, float(refresh_fraction), knap)
            )  # fmt: skip
            bar.update(fstate[1] - bar.n)
    stats = {
        "strategy": name,
        "evaluations": int(istate[_EVALS]),
        "refreshes": int(istate[_REFRESHES]),
        "cost": float(fstate[1]),
        "objective": float(fstate[0]),
    }
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
    pool, prop = _validated(indptr, label_ids, weights, propagation, objective)
    n = pool[2].size
    costs = check_costs(costs, n, cost_column)
    k = n if k is None else check_k(k, n)
    cheapest = int(np.argmin(costs)) if n else -1
    if n == 0 or costs[cheapest] > budget:
        where = f"; the cheapest, row {cheapest}, costs {costs[cheapest]:g}" if n else ""
        raise ValueError(f"no row fits budget={budget:g} (column {cost_column!r}){where}")
    if compiled is None:
        compiled = HAVE_NUMBA
    if compiled and not HAVE_NUMBA:
        raise ImportError("compiled=True needs numba: pip install numba")
    phi = (objective.code, float(objective.a), float(objective.b), float(objective.alpha))
    show = progress if progress is not None else n > 2_000_000
    model = (pool, prop, gain == "exact", phi)
    options = (compiled, refresh_fraction, chunk_size, show)
    runs = [_run(scaled, model, (k, costs, budget), options) for scaled in (True, False)]
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
