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
import pyarrow as pa
import scipy.sparse as sp

from hf_mig.core.budget import _lazy_setup, _run, check_budget, check_costs, check_some_row_fits
from hf_mig.core.encoding import check_k
from hf_mig.core.greedy import GAIN_KINDS, GreedyResult
from hf_mig.core.inputs import check_inputs
from hf_mig.core.objective import Objective

__all__ = ["group_codes", "quota_bounds", "quota_select"]

Bound = int | float | None


# ---------------------------------------------------------------------------- validation
def group_codes(
    values: Sequence[object] | pa.Array | pa.ChunkedArray, column: str = "group"
) -> tuple[list[str], np.ndarray]:
    """The groups present (as text, sorted) and each row's group index into them.

    ``values``: one group per row, a sequence or an Arrow array (a column of strings is coded
    in Arrow, without a Python object per row). A null group is refused (``ValueError`` naming
    the first such row and the ``column``), so that it is never counted with a group whose text
    is ``"None"``."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        column_values = values
    else:
        try:
            column_values = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: read as text below
            column_values = None
    if column_values is not None and column_values.null_count:
        nulls = np.asarray(column_values.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(
            f"row {int(np.argmax(nulls))}: column {column!r} is null; every row needs a group "
            f"for quotas ({int(nulls.sum())} rows affected)"
        )
    if column_values is not None and (
        pa.types.is_string(column_values.type) or pa.types.is_large_string(column_values.type)
    ):
        if isinstance(column_values, pa.ChunkedArray):
            column_values = column_values.combine_chunks()
        coded = column_values.dictionary_encode()
        found = coded.dictionary.to_pylist()
        order = sorted(range(len(found)), key=found.__getitem__)
        rank = np.empty(len(found), dtype=np.int64)
        rank[order] = np.arange(len(found))
        codes = rank[coded.indices.to_numpy(zero_copy_only=False)]
        return [found[i] for i in order], np.ascontiguousarray(codes, dtype=np.int64)
    if column_values is not None:
        values = column_values.to_pylist()
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


def quota_select(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    k: int,
    groups: Sequence[object] | pa.Array | pa.ChunkedArray,
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
    names, group = group_codes(groups, quota_column)
    sizes = np.bincount(group, minlength=len(names))
    lower, upper = quota_bounds(quotas, names, sizes, k, quota_column, fill_k=budget is None)
    if budget is None:
        costs, budget, scaleds = np.ones(n), math.inf, (False,)
    else:
        budget = check_budget(budget)
        costs = check_costs(costs, n, cost_column)
        check_some_row_fits(costs, budget, cost_column, allowed=upper[group] > 0)
        scaleds = (True, False)
    pool, prop, _ = check_inputs(indptr, label_ids, weights, propagation, objective)
    model, options = _lazy_setup(pool, prop, objective, gain, compiled, progress)
    options = (*options, refresh_fraction, chunk_size)
    compiled = options[0]
    runs = [_run(s, model, (k, costs, budget), (group, lower, upper), options) for s in scaleds]
    valid = [r for r in runs if r.stats["minimums_met"] and r.indices.size]
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
        **(
            {"strategy": best.stats["strategy"], "budget": budget, "cost": best.stats["cost"]}
            if len(scaleds) > 1
            else {}
        ),  # fmt: skip
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
