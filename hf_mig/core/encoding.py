"""Turn a ``datasets.Dataset``'s label and score columns into the arrays the greedy runs on.

Everything is vectorised through Arrow: a pool of a million rows with string labels encodes in
about a second. Validation errors name the row and the column; labels outside the vocabulary
and rows left without labels are counted in :class:`PoolEncoding.report`, never dropped
silently (a row without labels keeps its place and can still be selected, last).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
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
    #: the columns encoded and the report's running totals (set by :func:`encode_pool`), which
    #: let :func:`encode_appended` encode only rows appended to them
    source: pa.Table | None = field(default=None, repr=False, compare=False)
    tally: EncodingTally | None = field(default=None, repr=False, compare=False)

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
        without a vocabulary label. Read-only scores (e.g. memory-mapped) are returned as they
        are when not ``norm``, writable ones copied."""
        if not norm:
            return self.scores if not self.scores.flags.writeable else self.scores.copy()
        counts = self.norm_counts(distinct=distinct)
        out = np.zeros(self.scores.shape, dtype=np.float64)
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


def non_numeric_error(
    col: pa.ChunkedArray | pa.Array, column: str, what: str, *, first_row: int = 0
) -> str:
    """Message for a ``column`` whose type is not numeric: the first row holding something
    other than a number (numbered from ``first_row``), or, when every value reads as a number,
    how to convert the column."""
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
            f"{col.type}: row {first_row + row} holds {_describe_value(value)}"
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
    first_row: int = 0,
) -> np.ndarray:
    """The numeric ``column`` of a table or dataset as float64, validated.

    Null, NaN and infinite values raise :class:`PoolValidationError` (a ``ValueError``) naming
    the first bad row, the field and what was expected; so do negative values when
    ``nonnegative``, and a column that does not hold numbers (naming the first row that holds
    something else). Boolean columns read as 0/1 when ``booleans``, else they count as not
    numeric. A missing column raises naming the pool's columns; ``what`` names the caller.
    ``name_rows`` words a bad row as ``row 3, field 'score': score is null`` (``"field"``) or
    ``row 3: column 'score' is null`` (``"column"``). Rows are numbered from ``first_row`` (the
    position of the table's first row in the pool, when the pool is read in batches; counts of
    bad rows are then those of the batch).
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
        raise PoolValidationError(
            non_numeric_error(col, column, f"scores for {what}", first_row=first_row)
        )

    def bad_row(row: int, value: str, expected: str) -> PoolValidationError:
        row += first_row
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


def _bad_label_row(col: pa.ChunkedArray, column: str, first_row: int = 0) -> str:
    """Where a label column of the wrong type goes wrong: the first row that is not a list of
    strings, or the first label in it that is not a string (rows numbered from ``first_row``)."""
    for row, value in enumerate(_python_rows(col), start=first_row):
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


def _is_text(kind: pa.DataType) -> bool:
    """Strings, or dictionary-encoded strings (how Parquet readers can return labels)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _list_column(table: pa.Table, column: str, first_row: int = 0) -> pa.Array:
    col = _column(table, column)
    kind = col.type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if is_list and pa.types.is_null(kind.value_type) and col.null_count == 0:
        # every list is empty (Arrow could not infer an item type): no labels anywhere
        if int(pc.sum(pc.list_value_length(col)).as_py() or 0) == 0:
            col = col.cast(pa.list_(pa.string()))
            kind = col.type
    if not is_list or not _is_text(kind.value_type):
        raise PoolValidationError(_bad_label_row(col, column, first_row))
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count:
        row = first_row + _first_row(np.asarray(arr.is_null()))
        raise PoolValidationError(
            f"row {row}: column {column!r} is null; expected a list of strings (use [] for none)"
        )
    return arr


@dataclass
class _Labels:
    """A label column's occurrences: ``values`` (strings) and, when the column is dictionary
    encoded, ``codes`` (each occurrence's position in ``values``; ``None``: occurrence ``j``
    is ``values[j]``); ``lengths``: occurrences per row."""

    values: pa.Array
    codes: np.ndarray | None
    lengths: np.ndarray

    def per_occurrence(self, per_value: np.ndarray) -> np.ndarray:
        return per_value if self.codes is None else per_value[self.codes]


def _check_label_values(arr: pa.Array, column: str, first_row: int = 0) -> _Labels:
    """The occurrences of a list column (see :class:`_Labels`); null, empty or
    whitespace-only labels raise naming the row (numbered from ``first_row``)."""
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(arr)
    codes = None
    if pa.types.is_dictionary(flat.type):
        codes = flat.indices
        values = flat.dictionary
        nulls = np.asarray(codes.is_null()) if codes.null_count else None
        codes = codes.fill_null(0).to_numpy(zero_copy_only=False)
        if values.null_count:
            value_nulls = np.asarray(values.is_null())[codes]
            nulls = value_nulls if nulls is None else nulls | value_nulls
    else:
        values = flat
        nulls = np.asarray(flat.is_null()) if flat.null_count else None

    def row_of(pos: int) -> int:
        return first_row + int(np.searchsorted(np.cumsum(lengths), pos, side="right"))

    if nulls is not None and nulls.any():
        raise PoolValidationError(
            f"row {row_of(_first_row(nulls))}: column {column!r} contains a null label"
        )
    labels = _Labels(values, codes, lengths)
    blank = pc.equal(pc.utf8_trim_whitespace(values), "").fill_null(False)
    if pc.any(blank).as_py():
        blank = labels.per_occurrence(np.asarray(blank))
        if blank.any():
            pos = _first_row(blank)
            label = values[pos if codes is None else int(codes[pos])].as_py()
            raise PoolValidationError(
                f"row {row_of(pos)}: column {column!r} contains the label {label!r}, empty or "
                f"only whitespace ({int(blank.sum())} such labels in the "
                f"{'pool' if first_row == 0 and codes is None else 'batch'}); remove such "
                "labels (a row without labels is [])"
            )
    return labels


def distinct_labels(table: pa.Table, column: str, *, first_row: int = 0) -> list[str]:
    """Distinct labels of a label column, in no particular order; null, empty or
    whitespace-only labels raise naming the row (numbered from ``first_row``)."""
    labels = _check_label_values(_list_column(table, column, first_row), column, first_row)
    if labels.codes is None:
        return pc.unique(labels.values).to_pylist()
    used = np.unique(labels.codes)
    return pc.unique(labels.values.take(pa.array(used))).to_pylist()


def unique_labels(table: pa.Table, column: str) -> list[str]:
    """Sorted distinct labels of a label column (the reference's node order); null, empty or
    whitespace-only labels raise naming the row."""
    return sorted(distinct_labels(table, column))


@dataclass
class BatchEncoding:
    """Consecutive rows of a pool encoded against a vocabulary (see :func:`encode_batch`).

    ``counts``: distinct vocabulary labels per row; ``label_ids``: each row's ids, sorted and
    unique (int32), rows one after the other; ``occurrences``: vocabulary labels per row with
    repeats; ``scores``: float64; ``tallies``: what :class:`EncodingTally` adds up;
    ``outside``: the distinct labels outside the vocabulary, in order of first occurrence.
    """

    counts: np.ndarray
    label_ids: np.ndarray
    occurrences: np.ndarray
    scores: np.ndarray
    tallies: dict
    outside: list[str]


def vocabulary_array(vocabulary: Sequence[str]) -> pa.Array:
    """The vocabulary as the Arrow string array :func:`encode_batch` looks labels up in."""
    return pa.array(list(vocabulary), type=pa.string())


def encode_batch(
    table: pa.Table,
    vocabulary: pa.Array,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
    first_row: int = 0,
) -> BatchEncoding:
    """Encode the rows of ``table`` against ``vocabulary`` (:func:`vocabulary_array`), as
    :func:`encode_pool` does; errors name rows counted from ``first_row``. Plain and
    dictionary-encoded label strings give the same result."""
    scores = read_scores(
        table,
        score_column,
        nonnegative=True,
        booleans=False,
        what="MIG selection",
        name_rows="column",
        first_row=first_row,
    )
    arr = _list_column(table, labels_column, first_row)
    n = len(arr)
    labels = _check_label_values(arr, labels_column, first_row)
    rows = np.repeat(np.arange(n, dtype=np.int64), labels.lengths)
    value_ids = pc.index_in(labels.values.cast(pa.string()), value_set=vocabulary)
    ids = labels.per_occurrence(value_ids.fill_null(-1).to_numpy(zero_copy_only=False))
    unknown = ids < 0
    tallies = {
        "label_occurrences": int(ids.size),
        "labels_outside_vocabulary": int(unknown.sum()),
        "rows_with_labels_outside_vocabulary": 0,
    }
    outside: list[str] = []
    if unknown.any():
        if labels.codes is None:
            outside = pc.unique(pc.filter(labels.values, pa.array(unknown))).to_pylist()
        else:
            codes = labels.codes[unknown]
            _, first = np.unique(codes, return_index=True)
            outside = labels.values.take(pa.array(codes[np.sort(first)])).to_pylist()
        tallies["rows_with_labels_outside_vocabulary"] = int(np.unique(rows[unknown]).size)
    known = ~unknown
    counts = np.bincount(rows[known], minlength=n)
    occurrences = counts.astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    label_ids = ids[known].astype(np.int32)
    kept = _sort_unique_rows(indptr, label_ids)
    tallies["repeated_labels"] = int(label_ids.size - kept)
    if kept != label_ids.size:
        label_ids = label_ids[:kept].copy()
    counts = np.diff(indptr)
    tallies["rows_without_labels"] = int((counts == 0).sum())
    return BatchEncoding(counts, label_ids, occurrences, scores, tallies, outside)


class EncodingTally:
    """Adds up the :class:`BatchEncoding` s of a pool into :attr:`PoolEncoding.report`."""

    def __init__(self, vocabulary_size: int) -> None:
        self.vocabulary_size = vocabulary_size
        self.rows = 0
        self.totals: dict[str, int] = {}
        self.outside: dict[str, None] = {}  # distinct labels, in order of first occurrence

    def copy(self) -> EncodingTally:
        """A tally that adds up independently of this one."""
        other = EncodingTally(self.vocabulary_size)
        other.rows, other.totals, other.outside = self.rows, dict(self.totals), dict(self.outside)
        return other

    def add(self, batch: BatchEncoding) -> None:
        self.rows += int(batch.scores.size)
        for name, value in batch.tallies.items():
            self.totals[name] = self.totals.get(name, 0) + value
        self.outside.update(dict.fromkeys(batch.outside))

    def report(self) -> dict:
        """The report :func:`encode_pool` describes."""
        n, totals = self.rows, self.totals
        occurrences = totals.get("label_occurrences", 0)
        report: dict = {
            "rows": n,
            "label_occurrences": occurrences,
            "vocabulary_size": self.vocabulary_size,
            "labels_outside_vocabulary": totals.get("labels_outside_vocabulary", 0),
        }
        if report["labels_outside_vocabulary"]:
            report["distinct_labels_outside_vocabulary"] = len(self.outside)
            report["examples_outside_vocabulary"] = list(self.outside)[:5]
            report["rows_with_labels_outside_vocabulary"] = totals[
                "rows_with_labels_outside_vocabulary"
            ]
        report["repeated_labels"] = totals.get("repeated_labels", 0)
        report["rows_without_labels"] = totals.get("rows_without_labels", 0)
        report["rows_with_labels"] = n - report["rows_without_labels"]
        report["row_coverage"] = report["rows_with_labels"] / n if n else 0.0
        report["occurrence_coverage"] = (
            (occurrences - report["labels_outside_vocabulary"]) / occurrences
            if occurrences
            else 0.0
        )
        return report


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
    vocab = vocabulary_array(vocabulary)
    batch = encode_batch(table, vocab, labels_column=labels_column, score_column=score_column)
    tally = EncodingTally(len(vocab))
    tally.add(batch)
    indptr = np.zeros(batch.counts.size + 1, dtype=np.int64)
    np.cumsum(batch.counts, out=indptr[1:])
    return PoolEncoding(
        indptr,
        batch.label_ids,
        batch.scores,
        list(vocabulary),
        tally.report(),
        batch.occurrences,
        source=table.select([labels_column, score_column]),
        tally=tally,
    )


def _nested_offsets(kind: pa.DataType) -> Callable[[pa.Array], list[int]] | None:
    """For arrays of type ``kind``, a function giving the offsets of their nested child arrays
    (lists' values, structs' fields), which say where in the shared buffers each level starts;
    ``None`` for a type without children."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        inner = _nested_offsets(kind.value_type)
        return lambda a: [a.values.offset, *(inner(a.values) if inner else ())]
    if pa.types.is_struct(kind):
        fields = [(i, _nested_offsets(kind.field(i).type)) for i in range(kind.num_fields)]
        return lambda a: [
            o
            for i, inner in fields
            for o in (a.field(i).offset, *(inner(a.field(i)) if inner else ()))
        ]
    return None


def _same_memory(a: pa.Table, b: pa.Table) -> bool:
    """Whether two tables are views of the same Arrow memory (same types, chunks, offsets and
    buffers), which makes them equal without reading them (``concatenate_datasets`` keeps the
    first dataset's chunks)."""
    if a.schema != b.schema:
        return False
    for x_col, y_col in zip(a.columns, b.columns, strict=True):
        if x_col.num_chunks != y_col.num_chunks:
            return False
        nested = _nested_offsets(x_col.type)
        for x, y in zip(x_col.chunks, y_col.chunks, strict=True):
            if x.offset != y.offset or len(x) != len(y):
                return False
            bx, by = x.buffers(), y.buffers()
            if len(bx) != len(by):
                return False
            for p, q in zip(bx, by, strict=True):
                if (p is None) != (q is None) or (p is not None and p.address != q.address):
                    return False
            if nested is not None and nested(x) != nested(y):
                return False
    return True


def encode_appended(
    old: PoolEncoding,
    table: pa.Table,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
) -> PoolEncoding | None:
    """The encoding of ``table`` when its first ``old.num_rows`` rows are the columns ``old``
    was encoded from (``old.source``, compared as Arrow data): ``old``'s rows reused and only
    the rows after them encoded (errors name rows of ``table``), the report over all rows, as
    :func:`encode_pool` of ``table`` gives. ``None`` when ``old`` has no source or the first
    rows differ: encode ``table`` whole."""
    n_old = old.num_rows
    if old.source is None or old.tally is None or table.num_rows < n_old:
        return None
    columns = [labels_column, score_column]
    prefix = table.select(columns).slice(0, n_old)
    if old.source.column_names != columns or not (
        _same_memory(prefix, old.source) or prefix.equals(old.source)
    ):
        return None
    vocab = vocabulary_array(old.vocabulary)
    batch = encode_batch(
        table.slice(n_old),
        vocab,
        labels_column=labels_column,
        score_column=score_column,
        first_row=n_old,
    )
    tally = old.tally.copy()
    tally.add(batch)
    indptr = np.empty(n_old + batch.counts.size + 1, dtype=np.int64)
    indptr[: n_old + 1] = old.indptr
    np.cumsum(batch.counts, out=indptr[n_old + 1 :])
    indptr[n_old + 1 :] += old.indptr[-1]
    occurrences = None
    if old.label_occurrences is not None:
        occurrences = np.concatenate([old.label_occurrences, batch.occurrences])
    return PoolEncoding(
        indptr,
        np.concatenate([old.label_ids, batch.label_ids]),
        np.concatenate([old.scores, batch.scores]),
        list(old.vocabulary),
        tally.report(),
        occurrences,
        source=table.select(columns),
        tally=tally,
    )


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
