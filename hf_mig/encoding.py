"""Turn a ``datasets.Dataset``'s label and score columns into the arrays the greedy runs on.

Everything is vectorised through Arrow: a pool of a million rows with string labels encodes in
about a second. Validation errors name the row and the column; labels outside the vocabulary
and rows left without labels are counted in :class:`PoolEncoding.report`, never dropped
silently (a row without labels keeps its place and can still be selected, last).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._jit import njit

logger = logging.getLogger(__name__)


class PoolValidationError(ValueError):
    """A pool's label or score column does not have the expected shape or values."""


@dataclass
class PoolEncoding:
    """Sample -> label ids as CSR (labels sorted and unique within a row) and raw scores."""

    indptr: np.ndarray
    label_ids: np.ndarray
    scores: np.ndarray
    vocabulary: list[str]
    report: dict = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return int(self.scores.size)

    def label_counts(self) -> np.ndarray:
        """Number of (vocabulary) labels per row."""
        return np.diff(self.indptr)

    def weights(self, norm: bool = False) -> np.ndarray:
        """Per-sample weights: the score, or score / #labels when ``norm`` (0 for no labels)."""
        if not norm:
            return self.scores.copy()
        counts = self.label_counts()
        out = np.zeros_like(self.scores)
        has = counts > 0
        out[has] = self.scores[has] / counts[has]
        return out


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise PoolValidationError(
            f"column {name!r} not found; the pool has columns {table.column_names}"
        )
    return table.column(name)


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def read_scores(table: pa.Table, column: str) -> np.ndarray:
    """Scores as float64; null, NaN, inf or negative values raise with the first bad row."""
    col = _column(table, column)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise PoolValidationError(
            f"column {column!r} must hold numbers (one score per row), got type {col.type}"
        )
    if col.null_count:
        row = _first_row(np.asarray(col.is_null()))
        raise PoolValidationError(f"row {row}: column {column!r} is null; expected a number")
    scores = col.to_numpy().astype(np.float64, copy=False)
    bad = ~np.isfinite(scores)
    if bad.any():
        row = _first_row(bad)
        raise PoolValidationError(
            f"row {row}: column {column!r} is {scores[row]}; expected a finite number "
            f"({int(bad.sum())} rows affected)"
        )
    neg = scores < 0
    if neg.any():
        row = _first_row(neg)
        raise PoolValidationError(
            f"row {row}: column {column!r} is {scores[row]}; MIG needs scores >= 0 "
            f"({int(neg.sum())} negative rows). Shift or rescale the scores first."
        )
    return scores


def _list_column(table: pa.Table, column: str) -> pa.Array:
    col = _column(table, column)
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise PoolValidationError(
            f"column {column!r} must hold a list of label strings per row, got type {col.type}"
        )
    if not (
        pa.types.is_string(col.type.value_type) or pa.types.is_large_string(col.type.value_type)
    ):
        raise PoolValidationError(
            f"column {column!r} must hold lists of strings, got lists of {col.type.value_type}"
        )
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count:
        row = _first_row(np.asarray(arr.is_null()))
        raise PoolValidationError(
            f"row {row}: column {column!r} is null; expected a list of strings (use [] for none)"
        )
    return arr


def unique_labels(table: pa.Table, column: str) -> list[str]:
    """Sorted distinct labels of a label column (the reference's node order)."""
    flat = pc.list_flatten(_list_column(table, column))
    return sorted(pc.unique(flat.drop_null()).to_pylist())


def encode_pool(
    table: pa.Table,
    vocabulary: Sequence[str],
    *,
    labels_column: str = "labels",
    score_column: str = "score",
) -> PoolEncoding:
    """Encode labels against ``vocabulary`` (node order) and read scores.

    Labels outside the vocabulary are dropped from their row and counted; a label repeated in a
    row counts once. Empty-string or null labels inside a list raise.
    """
    scores = read_scores(table, score_column)
    arr = _list_column(table, labels_column)
    n = len(arr)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(arr)
    if flat.null_count:
        pos = _first_row(np.asarray(flat.is_null()))
        row = int(np.searchsorted(np.cumsum(lengths), pos, side="right"))
        raise PoolValidationError(f"row {row}: column {labels_column!r} contains a null label")
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    vocab = pa.array(list(vocabulary), type=pa.string())
    ids = pc.index_in(flat.cast(pa.string()), value_set=vocab)
    known = np.asarray(ids.is_valid())
    report: dict = {
        "rows": n,
        "label_occurrences": int(flat.length() if hasattr(flat, "length") else len(flat)),
        "vocabulary_size": len(vocab),
    }
    unknown = ~known
    report["labels_outside_vocabulary"] = int(unknown.sum())
    if unknown.any():
        unknown_values = pc.filter(flat, pa.array(unknown))
        distinct = pc.unique(unknown_values)
        report["distinct_labels_outside_vocabulary"] = len(distinct)
        report["examples_outside_vocabulary"] = distinct.slice(0, 5).to_pylist()
        report["rows_with_labels_outside_vocabulary"] = int(np.unique(rows[unknown]).size)
    id_values = ids.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    rows_k = rows[known]
    ids_k = id_values[known]
    counts = np.bincount(rows_k, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    label_ids = ids_k.astype(np.int32)
    kept = _sort_unique_rows(indptr, label_ids)
    report["repeated_labels"] = int(label_ids.size - kept)
    if kept != label_ids.size:
        counts = np.diff(indptr)
        label_ids = label_ids[:kept].copy()
    report["rows_without_labels"] = int((counts == 0).sum())
    return PoolEncoding(indptr, label_ids, scores, list(vocabulary), report)


@njit
def _sort_unique_rows(indptr, ids):
    """Sort each row's ids and drop repeats, compacting in place; -> number of ids kept.

    ``indptr`` is rewritten to the compacted rows. Rows are short, so insertion sort is used.
    """
    out = 0
    start = indptr[0]
    for r in range(indptr.size - 1):
        stop = indptr[r + 1]
        row_start = out
        for q in range(start, stop):
            v = ids[q]
            pos = out
            while pos > row_start and ids[pos - 1] > v:
                pos -= 1
            if pos > row_start and ids[pos - 1] == v:
                continue
            for m in range(out, pos, -1):
                ids[m] = ids[m - 1]
            ids[pos] = v
            out += 1
        indptr[r] = row_start
        start = stop
    indptr[indptr.size - 1] = out
    return out


def describe_report(report: dict) -> str:
    """One human sentence about what encoding dropped or kept."""
    parts = [f"{report['rows']:,} rows, {report['vocabulary_size']:,} labels in the vocabulary"]
    if report.get("labels_outside_vocabulary"):
        parts.append(
            f"{report['labels_outside_vocabulary']:,} label occurrences outside the vocabulary "
            f"were ignored ({report['distinct_labels_outside_vocabulary']:,} distinct, e.g. "
            f"{report['examples_outside_vocabulary'][:3]}) in "
            f"{report['rows_with_labels_outside_vocabulary']:,} rows"
        )
    if report.get("repeated_labels"):
        parts.append(f"{report['repeated_labels']:,} repeated labels within rows counted once")
    if report.get("rows_without_labels"):
        parts.append(
            f"{report['rows_without_labels']:,} rows have no vocabulary label "
            "(kept; they carry no information and are selected last)"
        )
    return "; ".join(parts)
