"""Turn a ``datasets.Dataset``'s label and score columns into the arrays the greedy runs on.

Everything is vectorised through Arrow: a pool of a million rows with string labels encodes in
about a second. Validation errors name the row and the column; labels outside the vocabulary
and rows left without labels are counted in :class:`PoolEncoding.report`, never dropped
silently (a row without labels keeps its place and can still be selected, last).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from hf_mig.core._jit import njit

logger = logging.getLogger(__name__)


class PoolValidationError(ValueError):
    """A pool's label or score column does not have the expected shape or values."""


class DegeneratePoolError(PoolValidationError):
    """The pool, with the given options, leaves a selector nothing to decide by.

    Raised instead of returning an arbitrary answer (typically the first ``k`` rows in file
    order): no row has a usable label, every score is zero or equal, the scores overflow the
    objective, or too few rows have a label in the label graph.
    """


@dataclass
class PoolEncoding:
    """Sample -> label ids as CSR (labels sorted and unique within a row) and raw scores.

    ``label_occurrences`` (optional, one int per row): the row's vocabulary labels counted with
    repeats, i.e. the length of its label list after labels outside the vocabulary are dropped
    and before repeats are merged. It is what ``norm`` divides by (see :meth:`weights`); when it
    is ``None`` the distinct counts are used.
    """

    indptr: np.ndarray
    label_ids: np.ndarray
    scores: np.ndarray
    vocabulary: list[str]
    report: dict = field(default_factory=dict)
    label_occurrences: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return int(self.scores.size)

    def label_counts(self) -> np.ndarray:
        """Number of distinct (vocabulary) labels per row."""
        return np.diff(self.indptr)

    def norm_counts(self, *, distinct: bool = False) -> np.ndarray:
        """What ``norm`` divides a row's score by: its vocabulary labels with repeats (the
        reference's ``len(labels)`` after the vocabulary filter), or, with ``distinct=True`` or
        when the encoding has no ``label_occurrences``, its distinct vocabulary labels."""
        if distinct or self.label_occurrences is None:
            return self.label_counts()
        return self.label_occurrences

    def weights(self, norm: bool = False, *, distinct: bool = False) -> np.ndarray:
        """Per-sample weights: the score, or, when ``norm``, the score divided by
        :meth:`norm_counts` (label occurrences with repeats unless ``distinct``); 0 for a row
        without a vocabulary label."""
        if not norm:
            return self.scores.copy()
        counts = self.norm_counts(distinct=distinct)
        out = np.zeros_like(self.scores)
        has = (counts > 0) & (self.label_counts() > 0)
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


def _is_json(kind: pa.DataType) -> bool:
    return getattr(kind, "extension_name", None) == "arrow.json"


def _python_rows(col: pa.ChunkedArray | pa.Array) -> list:
    """The column's values as Python objects, JSON-typed values decoded (mixed-type columns
    read from JSON files are stored as JSON text)."""
    values = col.to_pylist()
    kind = col.type
    if _is_json(kind):
        return [None if v is None else json.loads(v) for v in values]
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_json(kind.value_type):
        return [
            None if row is None else [None if v is None else json.loads(v) for v in row]
            for row in values
        ]
    return values


def _describe_value(value: object) -> str:
    kinds = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
    }
    kind = kinds.get(type(value), f"a {type(value).__name__}")
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def non_numeric_error(col: pa.ChunkedArray | pa.Array, column: str, what: str) -> str:
    """Message for a ``column`` whose type is not numeric: the first row holding something
    other than a number, or, when every value reads as a number, how to convert the column."""
    values = _python_rows(col)
    if all(value is None for value in values):
        return f"column {column!r} must hold numbers ({what}, one per row), but every row is null"
    for row, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, str) and not _is_json(col.type):
            try:
                float(value)
                continue
            except ValueError:
                pass
        elif _is_number(value):
            continue
        return (
            f"column {column!r} must hold numbers ({what}, one per row), got type "
            f"{col.type}: row {row} holds {_describe_value(value)}"
        )
    return (
        f"column {column!r} must hold numbers (one per row), got type {col.type} whose values "
        "all read as numbers: some are written as text (e.g. quoted in the JSON file); store "
        "them as numbers, e.g. dataset.cast_column(name, datasets.Value('float64'))"
    )


def arrow_columns(dataset: Dataset, columns: Sequence[str]) -> pa.Table:
    """The given columns of ``dataset`` as an Arrow table, in row order (views resolved)."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"column {missing[0]!r} not found; the pool has columns {dataset.column_names}"
        )
    return dataset.select_columns(list(columns)).with_format("arrow")[:]


def check_k(k: object, n: int) -> int:
    """``k`` as an ``int`` once it is an integer in ``[1, n]`` (``n``: the pool's rows).

    Raises ``TypeError`` for a non-integer (a bool included) and ``ValueError`` for ``k < 1``
    or ``k > n``, giving the value and the bound.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {type(k).__name__}: {k!r}")
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k = {k} exceeds the pool size ({n} rows); k must be between 1 and {n}")
    return int(k)


def read_scores(
    source: pa.Table | Dataset,
    column: str,
    *,
    nonnegative: bool = False,
    booleans: bool = True,
    what: str = "selection",
    name_rows: Literal["field", "column"] = "field",
) -> np.ndarray:
    """The numeric ``column`` of a table or dataset as float64, validated.

    Null, NaN and infinite values raise :class:`PoolValidationError` (a ``ValueError``) naming
    the first bad row, the field and what was expected; so do negative values when
    ``nonnegative``, and a column that does not hold numbers (naming the first row that holds
    something else). Boolean columns read as 0/1 when ``booleans``, else they count as not
    numeric. A missing column raises naming the pool's columns; ``what`` names the caller.
    ``name_rows`` words a bad row as ``row 3, field 'score': score is null`` (``"field"``) or
    ``row 3: column 'score' is null`` (``"column"``).
    """
    names = source.column_names
    if column not in names:
        raise PoolValidationError(
            f"column {column!r} not found; the pool has columns {names}. This {what} needs a "
            "numeric score column; set score_column=..."
        )
    table = source if isinstance(source, pa.Table) else arrow_columns(source, [column])
    col = table.column(column)
    kind = col.type
    numeric = pa.types.is_floating(kind) or pa.types.is_integer(kind)
    if not (numeric or (booleans and pa.types.is_boolean(kind))):
        raise PoolValidationError(non_numeric_error(col, column, f"scores for {what}"))

    def bad_row(row: int, value: str, expected: str) -> PoolValidationError:
        where = (
            f"row {row}, field {column!r}: score"
            if name_rows == "field"
            else (f"row {row}: column {column!r}")
        )
        return PoolValidationError(f"{where} is {value}; expected {expected}")

    if col.null_count:
        raise bad_row(_first_row(np.asarray(col.is_null())), "null", "a number")
    scores = np.asarray(col.to_numpy(), dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        row = _first_row(bad)
        count = int(bad.sum())
        raise bad_row(row, str(scores[row]), f"a finite number ({count} rows affected)")
    if nonnegative and (scores < 0).any():
        neg = scores < 0
        row = _first_row(neg)
        raise bad_row(
            row,
            str(scores[row]),
            f"a number >= 0 ({int(neg.sum())} negative rows); this {what} needs scores >= 0. "
            "Shift or rescale the scores first.",
        )
    return scores


def _bad_label_row(col: pa.ChunkedArray, column: str) -> str:
    """Where a label column of the wrong type goes wrong: the first row that is not a list of
    strings, or the first label in it that is not a string."""
    for row, value in enumerate(_python_rows(col)):
        if value is None:
            continue
        if not isinstance(value, list):
            return (
                f"column {column!r} must hold a list of label strings per row, got type "
                f"{col.type}: row {row} holds {_describe_value(value)}"
            )
        for pos, label in enumerate(value):
            if label is not None and not isinstance(label, str):
                return (
                    f"column {column!r} must hold lists of strings, got type {col.type}: "
                    f"row {row} holds {_describe_value(label)} at position {pos}"
                )
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return f"column {column!r} must hold lists of strings, got lists of {col.type.value_type}"
    return f"column {column!r} must hold a list of label strings per row, got type {col.type}"


def _list_column(table: pa.Table, column: str) -> pa.Array:
    col = _column(table, column)
    kind = col.type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if is_list and pa.types.is_null(kind.value_type) and col.null_count == 0:
        # every list is empty (Arrow could not infer an item type): no labels anywhere
        if int(pc.sum(pc.list_value_length(col)).as_py() or 0) == 0:
            col = col.cast(pa.list_(pa.string()))
            kind = col.type
    if not is_list or not (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    ):
        raise PoolValidationError(_bad_label_row(col, column))
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count:
        row = _first_row(np.asarray(arr.is_null()))
        raise PoolValidationError(
            f"row {row}: column {column!r} is null; expected a list of strings (use [] for none)"
        )
    return arr


def _check_label_values(arr: pa.Array, column: str) -> tuple[pa.Array, np.ndarray]:
    """Flattened labels of a list column and its per-row lengths; null, empty or
    whitespace-only labels raise naming the row."""
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(arr)

    def row_of(pos: int) -> int:
        return int(np.searchsorted(np.cumsum(lengths), pos, side="right"))

    if flat.null_count:
        row = row_of(_first_row(np.asarray(flat.is_null())))
        raise PoolValidationError(f"row {row}: column {column!r} contains a null label")
    blank = pc.equal(pc.utf8_trim_whitespace(flat), "")
    if pc.any(blank).as_py():
        pos = _first_row(np.asarray(blank))
        count = int(pc.sum(blank).as_py())
        raise PoolValidationError(
            f"row {row_of(pos)}: column {column!r} contains the label {flat[pos].as_py()!r}, "
            f"empty or only whitespace ({count} such labels in the pool); remove such labels "
            "(a row without labels is [])"
        )
    return flat, lengths


def unique_labels(table: pa.Table, column: str) -> list[str]:
    """Sorted distinct labels of a label column (the reference's node order); null, empty or
    whitespace-only labels raise naming the row."""
    flat, _ = _check_label_values(_list_column(table, column), column)
    return sorted(pc.unique(flat).to_pylist())


def encode_pool(
    table: pa.Table,
    vocabulary: Sequence[str],
    *,
    labels_column: str = "labels",
    score_column: str = "score",
) -> PoolEncoding:
    """Encode labels against ``vocabulary`` (node order) and read scores.

    Labels outside the vocabulary are dropped from their row and counted; a label repeated in a
    row counts once in the CSR rows (the indicator ``v_i``), and every occurrence counts in
    ``label_occurrences`` (what ``norm`` divides by, as in the reference). Null, empty or
    whitespace-only labels inside a list raise, naming the row.

    ``report`` holds, besides the counts, ``rows_with_labels`` and ``row_coverage`` (rows with
    at least one vocabulary label, as a count and a share of all rows) and
    ``occurrence_coverage`` (the share of label occurrences that are in the vocabulary; 0 when
    the pool has none).
    """
    scores = read_scores(
        table,
        score_column,
        nonnegative=True,
        booleans=False,
        what="MIG selection",
        name_rows="column",
    )
    arr = _list_column(table, labels_column)
    n = len(arr)
    flat, lengths = _check_label_values(arr, labels_column)
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
    row_occurrences = counts.astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    label_ids = ids_k.astype(np.int32)
    kept = _sort_unique_rows(indptr, label_ids)
    report["repeated_labels"] = int(label_ids.size - kept)
    if kept != label_ids.size:
        counts = np.diff(indptr)
        label_ids = label_ids[:kept].copy()
    report["rows_without_labels"] = int((counts == 0).sum())
    report["rows_with_labels"] = n - report["rows_without_labels"]
    report["row_coverage"] = report["rows_with_labels"] / n if n else 0.0
    occurrences = report["label_occurrences"]
    report["occurrence_coverage"] = (
        (occurrences - report["labels_outside_vocabulary"]) / occurrences if occurrences else 0.0
    )
    return PoolEncoding(indptr, label_ids, scores, list(vocabulary), report, row_occurrences)


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
