"""Greedy maximisation of E(S) with per-group quotas: ``min_g <= |S ∩ G_g| <= max_g``.

Every row belongs to one group (e.g. its source). The upper bounds form a partition matroid:
a row whose group is full is skipped. The lower bounds are met first, by a greedy phase that
picks only among rows of groups still under their minimum until every minimum is met; a global
greedy phase then picks among rows of groups under their maximum until ``k`` picks. The
coverage ``x(S)`` carries across the phases. Gains are those of
:func:`hf_mig.core.greedy.greedy_select` (``"gradient"`` or ``"exact"``) and the heap is the same
lazy one (ties go to the lowest index): a row that becomes disallowed within a phase never
becomes allowed again in it (groups only fill, the spent budget only grows), so it is dropped,
and the heap is rebuilt at the start of the global phase.

With a ``budget``, a row must also fit the budget left; :func:`quota_select` then runs the
cost-scaled and the unit-cost greedies of :mod:`hf_mig.core.budget`, each in two phases, and keeps
the one with the larger E(S) among those that met every minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hf_mig.core._jit import HAVE_NUMBA
from hf_mig.core._jit import njit as _njit
from hf_mig.core._jit import njit_inline as _njit_inline
from hf_mig.core.budget import STRATEGIES, _validated, check_budget, check_costs
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
    _budget_key,
    _dphi,
    _gain,
    _heapify,
    _phi,
    _record,
    _sift_down,
)
from hf_mig.core.objective import Objective

__all__ = ["group_codes", "quota_bounds", "quota_select"]

Bound = int | float | None


# ---------------------------------------------------------------------------- validation
def group_codes(values: Sequence[object]) -> tuple[list[str], np.ndarray]:
    """The groups present (as text, sorted) and each row's group index into them."""
    text = np.asarray([str(v) for v in values], dtype=object)
    names, codes = np.unique(text, return_inverse=True)
    return [str(name) for name in names], np.ascontiguousarray(codes, dtype=np.int64)


def _count(value: Bound, k: int, group: str, side: str, default: int) -> int:
    """One bound as a count: ``None`` -> ``default``, an int as is, a float as a share of k
    (``ceil`` for a minimum, ``floor`` for a maximum)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"quotas[{group!r}]: {side} must be a count (int), a share of k (float in [0, 1]) "
            f"or None, got {value!r}"
        )
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"quotas[{group!r}]: {side} must be >= 0, got {value}")
        return int(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"quotas[{group!r}]: {side} {value!r} is a share of k and must lie in [0, 1]"
        )
    share = float(value) * k
    return math.ceil(share - 1e-9) if side == "min" else math.floor(share + 1e-9)


def quota_bounds(
    quotas: Mapping[str, tuple[Bound, Bound]],
    names: Sequence[str],
    sizes: Sequence[int],
    k: int,
    column: str = "group",
    *,
    fill_k: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group ``(lower, upper)`` counts of ``quotas`` over the groups ``names`` (with ``sizes``
    rows each); a group absent from ``quotas`` is unbounded (``0``, its size).

    Each quota is ``(min, max)``: counts (ints), shares of ``k`` (floats in [0, 1]) or ``None``
    (no bound). ``ValueError`` says why when they cannot be met: an unknown group (listing the
    groups present in ``column``), a share outside [0, 1], ``min > max``, a minimum above the
    group's rows, minimums summing above ``k``, or (``fill_k``: ``k`` picks are required)
    maximums allowing fewer than ``k`` rows.
    """
    if not isinstance(quotas, Mapping):
        raise ValueError(f"quotas must map group names to (min, max), got {type(quotas).__name__}")
    index = {name: g for g, name in enumerate(names)}
    lower = np.zeros(len(names), dtype=np.int64)
    upper = np.asarray(sizes, dtype=np.int64).copy()
    for group, bounds in quotas.items():
        key = str(group)
        if key not in index:
            raise ValueError(
                f"quotas name group {key!r}, which column {column!r} does not hold; its groups "
                f"are {list(names)}"
            )
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ValueError(f"quotas[{key!r}] must be (min, max), got {bounds!r}")
        g = index[key]
        lo = _count(bounds[0], k, key, "min", 0)
        hi = _count(bounds[1], k, key, "max", int(upper[g]))
        if lo > upper[g]:
            raise ValueError(
                f"quotas[{key!r}]: min {lo} but column {column!r} has only {upper[g]} rows "
                "of that group"
            )
        if lo > hi:
            raise ValueError(f"quotas[{key!r}]: min {lo} > max {hi}")
        lower[g], upper[g] = lo, min(hi, int(upper[g]))
    if lower.sum() > k:
        raise ValueError(f"quotas: the minimums sum to {int(lower.sum())}, more than k={k}")
    if fill_k and upper.sum() < k:
        raise ValueError(f"quotas: the maximums allow {int(upper.sum())} rows, fewer than k={k}")
    return lower, upper


# ---------------------------------------------------------------------------- kernels
# As the budgeted lazy engine of :mod:`hf_mig.core.greedy`, with ``quota = (group, count, cap)``:
# row i is allowed while ``count[group[i]] < cap[group[i]]`` and it fits the budget left.
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
def _run(scaled, model, limits, bounds, options):
    """One two-phase lazy greedy (``scaled``: key gain / cost, else gain) -> GreedyResult."""
    pool, prop, exact, phi = model
    k, costs, budget = limits
    group, lower, upper = bounds
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
    count = np.zeros(lower.size, dtype=np.int64)
    fill = _fill_quota_heap if compiled else _fill_quota_heap.py_func
    steps = _quota_lazy_steps if compiled else _quota_lazy_steps.py_func
    name = STRATEGIES[0 if scaled else 1]
    with tqdm(total=k, desc=f"MIG quotas ({name})", unit="pick", disable=not show) as bar:
        for cap, stop in ((lower, int(lower.sum())), (upper, k)):
            quota = (group, count, cap)
            t = int(istate[_STEP])
            istate[_SIZE] = fill(heap, pool, prop, state, work, exact, phi, picked, stamp, t,
                                 fstate, knap, quota)  # fmt: skip
            istate[_EVALS] += istate[_SIZE]
            istate[_STALE] = 0
            done = t
            while done < stop and istate[_SIZE] > 0:
                step = min(chunk if compiled else max(1, chunk // 10), stop - done)
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


def quota_select(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    k: int,
    groups: Sequence[object],
    quotas: Mapping[str, tuple[Bound, Bound]],
    objective: Objective | None = None,
    *,
    gain: str = "gradient",
    budget: float | None = None,
    costs: np.ndarray | None = None,
    compiled: bool | None = None,
    refresh_fraction: float = 0.05,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    quota_column: str = "group",
    cost_column: str = "cost",
) -> GreedyResult:
    """Pick up to ``k`` rows greedily within per-group quotas; see the module docstring.

    The pool, P, ``objective`` and ``gain`` are as in :func:`hf_mig.core.greedy.greedy_select`;
    ``groups``: each row's group (compared as text); ``quotas``: ``{group: (min, max)}`` as in
    :func:`quota_bounds` (checked, with ``k``, before any work). Without a budget the result
    has ``k`` picks, or ``ValueError`` when the maximums allow fewer. With ``budget`` and
    ``costs`` (as in :func:`hf_mig.core.budget.budget_select`) the picks also fit the budget;
    ``ValueError`` when neither greedy meets every minimum within it. phi must be concave.
    ``stats["quotas"]`` holds each group's ``{"min", "max", "picked"}``.
    """
    objective = objective or Objective()
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    if not objective.is_concave:
        raise ValueError(
            f"phi={objective.phi} with b={objective.b} is not concave: lazy greedy under quotas "
            "is not exact; use a concave phi (e.g. pow with b <= 1)"
        )
    n = np.asarray(weights).size
    if len(groups) != n:
        raise ValueError(f"column {quota_column!r}: expected {n} groups (one per row), got "
                         f"{len(groups)}")  # fmt: skip
    k = check_k(k, n)
    names, group = group_codes(groups)
    sizes = np.bincount(group, minlength=len(names))
    lower, upper = quota_bounds(quotas, names, sizes, k, quota_column, fill_k=budget is None)
    if budget is None:
        costs, budget, scaleds = np.ones(n), math.inf, (False,)
    else:
        budget = check_budget(budget)
        costs = check_costs(costs, n, cost_column)
        scaleds = (True, False)
    pool, prop = _validated(indptr, label_ids, weights, propagation, objective)
    if compiled is None:
        compiled = HAVE_NUMBA
    if compiled and not HAVE_NUMBA:
        raise ImportError("compiled=True needs numba: pip install numba")
    phi = (objective.code, float(objective.a), float(objective.b), float(objective.alpha))
    show = progress if progress is not None else n > 2_000_000
    model = (pool, prop, gain == "exact", phi)
    options = (compiled, refresh_fraction, chunk_size, show)
    runs = [_run(s, model, (k, costs, budget), (group, lower, upper), options) for s in scaleds]
    valid = [r for r in runs if r.stats["minimums_met"]]
    if not valid:
        raise ValueError(
            f"quotas: no greedy met every minimum within budget={budget:g} (column "
            f"{cost_column!r}); lower the minimums or raise the budget"
        )
    best = max(valid, key=lambda r: r.stats["objective"])  # the first on a tie
    best.stats = {
        "engine": "lazy",
        "compiled": bool(compiled),
        "gain": gain,
        **({"strategy": best.stats["strategy"], "budget": budget, "cost": best.stats["cost"]}
           if len(scaleds) > 1 else {}),  # fmt: skip
        "quotas": {
            name: {"min": int(lo), "max": int(hi), "picked": int(c)}
            for name, lo, hi, c in zip(names, lower, upper, best.stats["group_counts"])
        },
        "minimum_picks": int(lower.sum()),
        "evaluations": sum(r.stats["evaluations"] for r in runs),
        "refreshes": sum(r.stats["refreshes"] for r in runs),
        "pool_size": n,
        "num_labels": prop[0].size - 1,
    }
    return best
