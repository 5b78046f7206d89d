"""Numbers that describe a selection: label coverage and scores of subset vs pool."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset


def _distinct_labels(dataset: Dataset, labels_column: str) -> set[str]:
    col = dataset.select_columns([labels_column]).with_format("arrow")[:][labels_column]
    return set(pc.unique(pc.list_flatten(col)).drop_null().to_pylist())


def selection_summary(
    pool: Dataset,
    subset: Dataset,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
) -> dict:
    """Sizes, distinct labels covered (subset vs pool) and mean scores."""
    out: dict = {"pool_rows": len(pool), "selected_rows": len(subset)}
    if labels_column in pool.column_names:
        pool_labels = _distinct_labels(pool, labels_column)
        sub_labels = _distinct_labels(subset, labels_column)
        out["pool_labels"] = len(pool_labels)
        out["selected_labels"] = len(sub_labels & pool_labels)
        out["label_coverage"] = len(sub_labels) / len(pool_labels) if pool_labels else 0.0
    if score_column in pool.column_names:
        out["pool_mean_score"] = float(np.mean(pool[score_column])) if len(pool) else 0.0
        out["selected_mean_score"] = float(np.mean(subset[score_column])) if len(subset) else 0.0
    return out


def format_summary(summary: dict) -> str:
    """A few readable lines for the terminal."""
    lines = [f"selected {summary['selected_rows']:,} of {summary['pool_rows']:,} rows"]
    if "pool_labels" in summary:
        lines.append(
            f"labels covered: {summary['selected_labels']:,} of {summary['pool_labels']:,} "
            f"({100 * summary['label_coverage']:.1f}%)"
        )
    if "pool_mean_score" in summary:
        lines.append(
            f"mean score: {summary['selected_mean_score']:.3f} selected vs "
            f"{summary['pool_mean_score']:.3f} in the pool"
        )
    return "\n".join(lines)
