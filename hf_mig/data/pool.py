"""Bring a pool into the shape selectors read: a ``labels`` and a ``score`` column."""

from __future__ import annotations

import logging
from collections.abc import Collection

from datasets import Dataset

from hf_mig.data.formats import MIGAnnotations

logger = logging.getLogger(__name__)

POOL_FORMATS = ("auto", "labels", "mig-authors")


def detect_pool_format(
    dataset: Dataset, labels_column: str = "labels", score_column: str = "score"
) -> str:
    """``"labels"`` when the label and score columns exist, ``"mig-authors"`` when the
    authors' ``annotation`` struct does; otherwise a ValueError saying what is missing."""
    columns = set(dataset.column_names)
    if {labels_column, score_column} <= columns:
        return "labels"
    if "annotation" in columns:
        return "mig-authors"
    raise ValueError(
        f"cannot tell the pool's format from its columns {sorted(columns)}: expected "
        f"{labels_column!r} and {score_column!r} columns, or the MIG authors' 'annotation' "
        "struct (annotation.instag.content, annotation.deita.*). Tag and score the pool first."
    )


def prepare_pool(
    dataset: Dataset,
    pool_format: str = "auto",
    *,
    vocabulary: Collection[str] | None = None,
    reduce: str = "mean",
    labels_column: str = "labels",
    score_column: str = "score",
    num_proc: int | None = None,
    strict: bool = True,
) -> Dataset:
    """Return ``dataset`` with ``labels_column`` and ``score_column``, all columns kept.

    ``"mig-authors"`` derives them with :class:`hf_mig.data.formats.MIGAnnotations` (labels filtered
    to ``vocabulary`` and a ``labels_dropped`` count per row; score = mean or sum over turns of
    quality x complexity). ``"labels"`` leaves the pool as it is. With ``strict=False`` a pool in
    neither shape is returned unchanged (for methods that read other columns, e.g. text).
    """
    if pool_format not in POOL_FORMATS:
        raise ValueError(f"pool format must be one of {POOL_FORMATS}, got {pool_format!r}")
    if pool_format == "auto":
        try:
            pool_format = detect_pool_format(dataset, labels_column, score_column)
        except ValueError:
            if strict:
                raise
            return dataset
    if pool_format == "labels":
        return dataset
    adapter = MIGAnnotations(vocabulary=vocabulary, reduce=reduce)
    out = dataset.map(
        adapter,
        batched=True,
        with_indices=True,
        num_proc=num_proc,
        desc="Reading MIG annotations",
    )
    if labels_column != "labels":
        out = out.rename_column("labels", labels_column)
    if score_column != "score":
        out = out.rename_column("score", score_column)
    dropped = sum(out["labels_dropped"])
    if dropped:
        logger.warning(
            "%d tags outside the vocabulary were removed (per-row counts in 'labels_dropped')",
            dropped,
        )
    return out
