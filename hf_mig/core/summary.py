"""Numbers that describe a selection: label coverage, unlabelled rows and scores, subset vs pool.

Everything is computed with Arrow compute on the columns involved, so a summary of a
multi-million-row pool costs a fraction of the selection itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset


def _columns(dataset: Dataset, names: Sequence[str]) -> pa.Table:
    present = [name for name in names if name in dataset.column_names]
    return dataset.select_columns(present).with_format("arrow")[:]


def _is_label_list(col: pa.ChunkedArray) -> bool:
    kind = col.type
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    )


def _label_stats(col: pa.ChunkedArray) -> tuple[set[str], int]:
    """Distinct labels and the number of rows with no label (empty list or null)."""
    flat = pc.list_flatten(col)
    distinct = set(pc.unique(flat).drop_null().to_pylist())
    lengths = pc.fill_null(pc.list_value_length(col), 0)
    unlabelled = int(pc.sum(pc.equal(lengths, 0)).as_py() or 0) if len(col) else 0
    return distinct, unlabelled


def _mean(col: pa.ChunkedArray) -> float:
    value = pc.mean(col).as_py() if len(col) else None
    return 0.0 if value is None else float(value)


#: Share of the rows at the lowest or highest score from which the scores count as collapsed.
COLLAPSE_BOUND_SHARE = 0.9
#: Relative tolerance of "the same score": spread (or distance to a bound) up to this fraction
#: of the largest absolute score. 1e-3 of a DEITA score (1 to 36) is 0.036 at most: less than any
#: difference a ranking by that score should rest on.
COLLAPSE_RTOL = 1e-3


def _score_values(scores) -> np.ndarray:
    if isinstance(scores, (pa.ChunkedArray, pa.Array)):
        floats = pc.cast(scores, pa.float64()).fill_null(float("nan"))
        scores = floats.to_numpy(zero_copy_only=False)
    elif not isinstance(scores, np.ndarray):
        scores = [np.nan if value is None else value for value in scores]
    values = np.asarray(scores, dtype=np.float64).ravel()
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


def score_collapse(
    scores,
    *,
    bound_share: float = COLLAPSE_BOUND_SHARE,
    rtol: float = COLLAPSE_RTOL,
) -> dict | None:
    """Whether a score column says (almost) nothing about its rows; ``None`` when it is fine.

    ``scores``: numbers, as a sequence, NumPy array or Arrow (chunked) array; nulls, NaN and
    infinities are left out. Two values count as the same when they differ by at most
    ``rtol`` times the largest absolute score. The scores have collapsed when

    * ``"single_value"``: every score is the same (spread <= tolerance), or
    * ``"at_minimum"`` / ``"at_maximum"``: at least ``bound_share`` (default 0.9) of the rows
      sit at the lowest / highest score (within the tolerance).

    Fewer than two scores are never called collapsed. The returned dict (JSON-ready) has
    ``reason`` (one of the three above), ``message`` (one human sentence), ``rows``, ``min``,
    ``max``, ``distinct_values`` (exact), ``rows_at_min``, ``rows_at_max``, ``share_at_min``,
    ``share_at_max``, ``bound_share`` and ``rtol``. DEITA scorers that rate every row the same
    give ``"single_value"``; a scorer stuck at its floor gives ``"at_minimum"``.
    """
    if not 0.0 < float(bound_share) <= 1.0:
        raise ValueError(f"bound_share must be in (0, 1], got {bound_share!r}")
    if not float(rtol) >= 0.0:
        raise ValueError(f"rtol must be >= 0, got {rtol!r}")
    values = _score_values(scores)
    n = int(values.size)
    if n < 2:
        return None
    low, high = float(values.min()), float(values.max())
    tol = float(rtol) * max(abs(low), abs(high))
    at_min = int(np.count_nonzero(values <= low + tol))
    at_max = int(np.count_nonzero(values >= high - tol))
    single = high - low <= tol
    if not single and max(at_min, at_max) / n < bound_share:
        return None  # fine: the distinct values (a sort of every score) are not needed
    info = {
        "rows": n,
        "min": low,
        "max": high,
        "distinct_values": int(np.unique(values).size),
        "rows_at_min": at_min,
        "rows_at_max": at_max,
        "share_at_min": at_min / n,
        "share_at_max": at_max / n,
        "bound_share": float(bound_share),
        "rtol": float(rtol),
    }
    if single:
        info["reason"] = "single_value"
        info["message"] = (
            f"all {n:,} scores are {low:.6g}"
            + (f" (to within {tol:.3g})" if high > low else "")
            + ": the scores cannot rank the rows; check the scorer"
        )
        return info
    side = "minimum" if at_min >= at_max else "maximum"
    count, value = (at_min, low) if side == "minimum" else (at_max, high)
    info["reason"] = f"at_{side}"
    info["message"] = (
        f"{count:,} of {n:,} scores ({count / n:.1%}) sit at the {side}, {value:.6g}: the "
        "scores barely rank the rows; check the scorer"
    )
    return info


def selection_summary(
    pool: Dataset,
    subset: Dataset | Sequence[int] | np.ndarray,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
) -> dict:
    """Sizes, distinct labels covered, rows without a label and mean scores, subset vs pool.

    ``subset`` is the selection as a dataset (e.g. ``pool.select(indices)``) or as the
    selected rows' positions in ``pool``. Keys: ``pool_rows``, ``selected_rows``; with a label
    column of string lists, ``pool_labels`` / ``selected_labels`` (distinct labels),
    ``label_coverage`` and ``pool_unlabelled_rows`` / ``selected_unlabelled_rows``; with a
    numeric score column, ``pool_mean_score`` / ``selected_mean_score`` (nulls skipped) and
    ``score_collapse``: :func:`score_collapse` of the pool's scores (``None`` when they are
    fine). A label or score column of another type is named in ``not_summarised`` instead.
    """
    names = [labels_column, score_column]
    pool_table = _columns(pool, names)
    if isinstance(subset, Dataset):
        sub_table = _columns(subset, names)
    else:
        positions = np.asarray(subset, dtype=np.int64)
        sub_table = pool_table.take(pa.array(positions))
    out: dict = {"pool_rows": len(pool), "selected_rows": sub_table.num_rows}
    skipped: dict[str, str] = {}
    if labels_column in pool_table.column_names:
        col = pool_table.column(labels_column)
        if _is_label_list(col):
            pool_labels, pool_unlabelled = _label_stats(col)
            sub_labels, sub_unlabelled = _label_stats(sub_table.column(labels_column))
            out["pool_labels"] = len(pool_labels)
            out["selected_labels"] = len(sub_labels & pool_labels)
            out["label_coverage"] = len(sub_labels) / len(pool_labels) if pool_labels else 0.0
            out["pool_unlabelled_rows"] = pool_unlabelled
            out["selected_unlabelled_rows"] = sub_unlabelled
        else:
            skipped[labels_column] = f"not a list of strings ({col.type})"
    if score_column in pool_table.column_names:
        col = pool_table.column(score_column)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            out["pool_mean_score"] = _mean(col)
            out["selected_mean_score"] = _mean(sub_table.column(score_column))
            out["score_collapse"] = score_collapse(col)
        else:
            skipped[score_column] = f"not numeric ({col.type})"
    if skipped:
        out["not_summarised"] = skipped
    return out


def format_summary(summary: dict) -> str:
    """A few readable lines for the terminal."""
    lines = [f"selected {summary['selected_rows']:,} of {summary['pool_rows']:,} rows"]
    if "pool_labels" in summary:
        lines.append(
            f"distinct labels covered: {summary['selected_labels']:,} of "
            f"{summary['pool_labels']:,} ({100 * summary['label_coverage']:.1f}%)"
        )
        lines.append(
            f"rows without a label: {summary['selected_unlabelled_rows']:,} selected, "
            f"{summary['pool_unlabelled_rows']:,} in the pool"
        )
    if "pool_mean_score" in summary:
        lines.append(
            f"mean score: {summary['selected_mean_score']:.3f} selected vs "
            f"{summary['pool_mean_score']:.3f} in the pool"
        )
    collapse = summary.get("score_collapse")
    if collapse:
        lines.append(f"warning: score collapse ({collapse['reason']}): {collapse['message']}")
    for column, why in summary.get("not_summarised", {}).items():
        lines.append(f"column {column!r} not summarised: {why}")
    return "\n".join(lines)
