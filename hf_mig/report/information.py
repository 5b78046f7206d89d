"""MIG's information per label in a selection report (see :mod:`hf_mig.core.information`).

``x(S) = sum_{i in S} u_i`` with ``u_i = w_i * v_i @ P`` (``w_i`` the score, or score / #labels
with ``norm``; ``P`` the label graph's propagation matrix, or the identity when no graph is
given), for the pool and for each selection, and ``E(S) = sum_k phi(x_k)``. With the options the
selector ran with (``prop_weight``, ``norm``, ``objective``), ``E`` of the MIG selection is the
last value of its greedy trace. :func:`why_section` splits the first picks' gains by label
(:func:`hf_mig.core.information.explain_picks`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from hf_mig.core.encoding import PoolValidationError, arrow_columns, encode_pool, unique_labels
from hf_mig.core.information import LabelInformation, dataset_information, explain_picks
from hf_mig.core.objective import Objective

__all__ = [
    "INFORMATION_BANDS",
    "effective_labels",
    "gini",
    "information_section",
    "information_vectors",
    "label_information",
    "why_section",
]

# its warnings are part of computing the report's numbers
logger = logging.getLogger("hf_mig.report.data")

#: labels ranked by the pool's information, cut into these shares (head first, tail last)
INFORMATION_BANDS = ("top 25%", "25-50%", "50-75%", "bottom 25% (tail)")
#: picks per MIG selection whose gain the report splits by label, and labels shown per pick
WHY_PICKS = 10
WHY_LABELS = 3


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient of non-negative values: 0 = all equal, near 1 = all in one place.

    ``None`` when there are no values or they sum to zero.
    """
    a = np.sort(np.asarray(values, dtype=np.float64))
    total = float(a.sum())
    if not a.size or total <= 0:
        return None
    n = a.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * (ranks * a).sum() / (n * total) - (n + 1) / n)


def effective_labels(values: Sequence[float]) -> float:
    """``exp`` of the Shannon entropy of ``values / sum(values)``: how many labels the
    information is effectively spread over (0 when there is none)."""
    a = np.asarray(values, dtype=np.float64)
    total = float(a.sum())
    if total <= 0:
        return 0.0
    p = a[a > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def information_vectors(
    pool: Dataset,
    indices: Mapping[str, Sequence[int]],
    *,
    label_graph: Any = None,
    labels_column: str = "labels",
    score_column: str = "score",
    prop_weight: float = 1.0,
    norm: bool = False,
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], dict]:
    """MIG's information per label of the pool and of each selection.

    Encodes the pool as :class:`hf_mig.MIGSelector` does (:func:`hf_mig.core.encoding.encode_pool`
    against the graph's labels, weights ``PoolEncoding.weights(norm)``) and returns
    ``(labels, x_pool, {name: x_S}, encoding report)`` with ``x(S) = sum_{i in S} w_i v_i @ P``
    and ``P = label_graph.propagation_matrix(prop_weight)``. Without a graph ``P`` is the
    identity over the pool's distinct labels (sorted), i.e. no propagation.
    """
    vocabulary, info = label_information(
        pool,
        label_graph=label_graph,
        labels_column=labels_column,
        score_column=score_column,
        prop_weight=prop_weight,
        norm=norm,
    )
    x_pool = info.x()
    by_selection = {name: info.x(idx) for name, idx in indices.items()}
    return vocabulary, x_pool, by_selection, info.encoding.report


def label_information(
    pool: Dataset,
    *,
    label_graph: Any = None,
    labels_column: str = "labels",
    score_column: str = "score",
    prop_weight: float = 1.0,
    norm: bool = False,
) -> tuple[list[str], LabelInformation]:
    """The vocabulary and :class:`LabelInformation` of the pool encoded as
    :func:`information_vectors` describes."""
    table = arrow_columns(pool, [labels_column, score_column])
    if label_graph is None:
        vocabulary = unique_labels(table, labels_column)
        propagation = None
    else:
        vocabulary = list(label_graph.labels)
        propagation = label_graph.propagation_matrix(prop_weight)
    encoding = encode_pool(
        table, vocabulary, labels_column=labels_column, score_column=score_column
    )
    return vocabulary, LabelInformation.build(encoding, propagation, norm=norm)


def why_section(
    pool: Dataset,
    picks: Mapping[str, Sequence[int]],
    *,
    objective: Objective,
    gain: str,
    first: int = WHY_PICKS,
    **encoding: Any,
) -> dict[str, dict]:
    """Why the first ``first`` picks of each MIG selection in ``picks`` were picked: ``{name:
    {"gain_kind", "picks": [{"rank" (1-based), "row", "gain", "labels"}]}}``, each pick's
    ``WHY_LABELS`` top labels by contribution to its gain (``{"label", "contribution",
    "share", "own"}``, ``own`` false for a neighbour in the label graph), replayed from the
    empty selection with ``gain`` (``"gradient"`` or ``"exact"``) as the selector's. ``{}``
    with a warning when the pool cannot be encoded; ``encoding`` as for
    :func:`information_vectors`."""
    try:
        _, info = label_information(pool, **encoding)
    except (PoolValidationError, ValueError) as err:
        logger.warning("why these rows left out of the report: %s", err)
        return {}
    out = {}
    for name, idx in picks.items():
        explained = explain_picks(
            info, np.asarray(idx)[:first], objective, gain=gain, top=WHY_LABELS
        )
        out[name] = {
            "gain_kind": gain,
            "picks": [
                {"rank": e.rank + 1, "row": e.row, "gain": e.gain, "labels": e.labels}
                for e in explained
            ],
        }
    return out


def _information_stats(x: np.ndarray, informed: np.ndarray, objective: Objective) -> dict:
    """E, labels with x > 0 and evenness of one information vector."""
    positive = int((x > 0).sum())
    return {
        "objective": dataset_information(x, objective),
        "total_information": float(x.sum()),
        "labels_with_information": positive,
        "share_of_labels": positive / x.size if x.size else 0.0,
        "share_of_pool_labels": int((x[informed] > 0).sum()) / int(informed.sum())
        if informed.any()
        else 0.0,
        "gini": gini(x[informed]),
        "effective_labels": effective_labels(x),
    }


def _propagation_text(label_graph: Any, prop_weight: float) -> str:
    """How the information spreads over the labels, in words."""
    if label_graph is None:
        return (
            "identity: no label graph was given, so there is no propagation "
            "(each row's weight goes to its own labels only)"
        )
    threshold = label_graph.threshold
    return (
        f"label graph ({label_graph.num_labels:,} labels"
        + ("" if threshold is None else f", threshold {threshold:g}")
        + f"), prop_weight {prop_weight:g}"
    )


def information_section(
    pool: Dataset,
    indices: dict[str, np.ndarray],
    *,
    objective: Objective,
    mig_result: Any,
    **encoding: Any,
) -> tuple[dict, dict]:
    """``report.json``'s ``information`` section and the arrays behind its figure; ``encoding``
    holds the keyword arguments of :func:`information_vectors`."""
    label_graph, prop_weight = encoding["label_graph"], encoding["prop_weight"]
    section: dict[str, Any] = {
        "propagation": _propagation_text(label_graph, prop_weight),
        "label_graph": label_graph is not None,
        "prop_weight": float(prop_weight) if label_graph is not None else 0.0,
        "norm": bool(encoding["norm"]),
        **objective.to_dict(),
    }
    try:
        vocabulary, x_pool, x_sel, report = information_vectors(pool, indices, **encoding)
    except (PoolValidationError, ValueError) as err:
        logger.warning("information per label left out of the report: %s", err)
        section["skipped"] = str(err)
        return section, {}
    informed = x_pool > 0
    order = np.argsort(-x_pool, kind="stable")
    order = order[informed[order]]
    bands = np.array_split(order, len(INFORMATION_BANDS))
    section.update(
        {
            "num_labels": len(vocabulary),
            "initial_objective": dataset_information(np.zeros(len(vocabulary)), objective),
            "encoding": json.loads(json.dumps(report, default=str)),
            "bands": [
                {"band": name, "labels": int(b.size)} for name, b in zip(INFORMATION_BANDS, bands)
            ],
            "pool": _information_stats(x_pool, informed, objective),
            "by_selection": {
                name: _selection_information(x, x_pool, informed, bands, objective)
                for name, x in x_sel.items()
            },
        }
    )
    if mig_result is not None:
        check = _mig_trace_check(section["by_selection"], indices, mig_result)
        if check is not None:
            section["mig_trace_check"] = check
    # the figure's numbers: labels the pool informs, ranked by the pool's information
    section["ranked_labels"] = [vocabulary[j] for j in order]
    section["x"] = {
        "pool": x_pool[order].tolist(),
        **{name: x[order].tolist() for name, x in x_sel.items()},
    }
    raw = {"x_pool": x_pool[order], "x_sel": {name: x[order] for name, x in x_sel.items()}}
    return section, raw


def _selection_information(
    x: np.ndarray,
    x_pool: np.ndarray,
    informed: np.ndarray,
    bands: list[np.ndarray],
    objective: Objective,
) -> dict:
    """:func:`_information_stats` of one selection, with the share of the pool's information it
    keeps, overall and per band of labels."""
    stats = _information_stats(x, informed, objective)
    pool_total = float(x_pool.sum())
    stats["information_kept"] = float(x.sum()) / pool_total if pool_total > 0 else 0.0
    stats["kept_by_band"] = {
        band: (float(x[b].sum() / x_pool[b].sum()) if b.size else 0.0)
        for band, b in zip(INFORMATION_BANDS, bands)
    }
    stats["labels_by_band"] = {
        band: int((x[b] > 0).sum()) for band, b in zip(INFORMATION_BANDS, bands)
    }
    return stats


def _mig_trace_check(
    by_selection: dict[str, dict], indices: dict[str, np.ndarray], mig_result: Any
) -> dict | None:
    """E of the selection whose picks are ``mig_result``'s against the end of its greedy trace
    (a warning when they differ); ``None`` when no selection is the MIG run's."""
    picks = np.asarray(mig_result.indices)
    trace = np.asarray(mig_result.objective_trace, dtype=np.float64)
    match = next((n for n, idx in indices.items() if np.array_equal(np.asarray(idx), picks)), None)
    if match is None or not trace.size:
        return None
    got = by_selection[match]["objective"]
    check = {
        "selection": match,
        "trace_final_objective": float(trace[-1]),
        "objective": got,
        "relative_difference": abs(got - float(trace[-1])) / max(abs(trace[-1]), 1e-300),
    }
    if check["relative_difference"] > 1e-6:
        logger.warning(
            "E(S) of %r (%.6g) differs from the end of the MIG trace (%.6g): the report's "
            "label graph, prop_weight, norm or phi differ from the selector's",
            match,
            got,
            trace[-1],
        )
    return check
