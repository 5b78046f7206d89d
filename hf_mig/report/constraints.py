"""What a selection used of its token budget and quotas, for the report.

How a selection was made is read from the facts ``hf-mig select`` writes in its dataset card
(:func:`hf_mig.report.selections.read_selection_facts` reads what
:func:`hf_mig.data.hub.selection_facts` wrote) or from a training run's selection manifest:
``selection.k`` and ``budget`` (``budget``, ``cost_column``; ``quotas``, ``quota_column``;
``None`` when the selection had neither). The use itself is measured on the pool's rows
(:func:`constraint_use`): the picks' total cost and their count per group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from datasets import Dataset

from hf_mig.core.budget import total_cost
from hf_mig.core.encoding import arrow_columns, read_scores
from hf_mig.core.quotas import group_codes, quota_bounds

__all__ = ["constraint_use"]


def _k(facts: Mapping[str, Any], rows: int) -> int:
    k = (facts.get("selection") or {}).get("k")
    return int(k) if isinstance(k, int) and not isinstance(k, bool) and k > 0 else rows


def _budget_use(pool: Dataset, idx: np.ndarray, used: Mapping[str, Any]) -> dict[str, Any]:
    column = str(used.get("cost_column") or "num_tokens")
    budget = float(used["budget"])
    if column in pool.column_names:
        costs = read_scores(pool, column, what="budget report", name_rows="column")
        cost, measured = total_cost(costs[idx]), "the pool's rows"
    else:  # the pool at hand lacks the column: what the selection recorded
        cost, measured = float(used.get("cost_used") or math.nan), "the selection's card"
    return {
        "cost_column": column,
        "budget": budget,
        "cost": cost,
        "share_used": cost / budget,
        "within_budget": bool(cost <= budget),
        "measured_on": measured,
        "greedy": used.get("greedy"),
    }


def _quota_use(
    pool: Dataset, idx: np.ndarray, used: Mapping[str, Any], k: int, name: str
) -> dict[str, Any]:
    column = str(used.get("quota_column") or "source")
    quotas = {str(g): tuple(b) for g, b in (used.get("quotas") or {}).items()}
    if column not in pool.column_names:
        raise ValueError(
            f"selection {name!r} was made with quotas on column {column!r}, which the pool does "
            f"not have (columns: {pool.column_names})"
        )
    values = arrow_columns(pool, [column]).column(0)
    names, codes = group_codes(values, column)
    sizes = np.bincount(codes, minlength=len(names))
    try:
        lower, upper = quota_bounds(quotas, names, sizes, k, column, fill_k=False)
    except ValueError as err:
        raise ValueError(f"selection {name!r}: its quotas do not fit this pool: {err}") from None
    picked = np.bincount(codes[idx], minlength=len(names))
    groups = []
    for g, group in enumerate(names):
        given = quotas.get(group, (None, None))
        groups.append(
            {
                "group": group,
                "picks": int(picked[g]),
                "min": int(lower[g]),
                "max": int(upper[g]),
                "min_given": given[0],
                "max_given": given[1],
                "within": bool(lower[g] <= picked[g] <= upper[g]),
                "share_of_selection": float(picked[g] / len(idx)) if len(idx) else 0.0,
                "pool_rows": int(sizes[g]),
                "share_of_pool": float(sizes[g] / len(pool)),
            }
        )
    return {"column": column, "k": k, "groups": groups}


def constraint_use(
    pool: Dataset, idx: np.ndarray, facts: Mapping[str, Any], *, name: str = "selection"
) -> dict[str, Any] | None:
    """The budget and quotas a selection was made with and what its picks ``idx`` (rows of
    ``pool``) use of them; ``None`` when ``facts`` record neither.

    ``facts``: the selection's facts (``read_selection_facts`` of
    :mod:`hf_mig.report.selections`, or a training run's selection manifest): ``selection.k``
    and ``budget``. Returns ``{"budget": {cost_column, budget, cost, share_used,
    within_budget, measured_on, greedy}, "quotas": {column, k, groups: [{group, picks, min,
    max, min_given, max_given, within, share_of_selection, pool_rows, share_of_pool}]}}`` with
    the parts the selection had: costs and groups are read from ``pool`` (a cost column the
    pool lacks falls back to the cost the facts recorded), the quotas' shares of ``k`` turned
    into counts as the selector did. ``ValueError`` (naming the selection) when its quotas do
    not fit the pool.
    """
    used = facts.get("budget")
    if not isinstance(used, Mapping) or not (used.get("budget") is not None or used.get("quotas")):
        return None
    idx = np.asarray(idx, dtype=np.int64)
    out: dict[str, Any] = {}
    if used.get("budget") is not None:
        out["budget"] = _budget_use(pool, idx, used)
    if used.get("quotas"):
        out["quotas"] = _quota_use(pool, idx, used, _k(facts, len(idx)), name)
    return out
