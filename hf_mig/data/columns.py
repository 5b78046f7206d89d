"""Batches and output columns of batched ``Dataset.map`` callables.

:func:`batch_rows` numbers the rows of a batch (the dataset indices ``with_indices=True``
passes, else positions), so that errors can name the row.

``Dataset.map`` fixes a column's type from the first batch it writes: a first batch whose values
are all ``None`` (or all empty lists) would type the column ``null`` (or ``list<null>``) and make
later batches fail. A :class:`TypedColumn` is a plain ``list`` that tells Arrow its type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = [
    "LABELS_ARROW_TYPE",
    "MESSAGES_ARROW_TYPE",
    "TypedColumn",
    "batch_rows",
    "float_column",
    "float_list_column",
    "int_column",
    "is_sequence",
    "messages_column",
    "row_numbers",
    "short_repr",
    "string_column",
    "string_list_column",
    "type_name",
]

#: Arrow type of an OpenAI-style ``messages`` column.
MESSAGES_ARROW_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
#: Arrow type of a ``labels`` column.
LABELS_ARROW_TYPE = pa.list_(pa.string())


class TypedColumn(list):
    """A ``list`` of one column's values that converts to Arrow with ``arrow_type``."""

    def __init__(self, values: Iterable[Any] = (), arrow_type: pa.DataType | None = None) -> None:
        super().__init__(values)
        self.arrow_type = pa.null() if arrow_type is None else arrow_type

    def __arrow_array__(self, type: pa.DataType | None = None) -> pa.Array:
        return pa.array(list(self), type=type or self.arrow_type)


def float_column(values: Sequence[float | None]) -> TypedColumn:
    """``float64`` values (``None`` for a missing one)."""
    return TypedColumn(values, pa.float64())


def float_list_column(values: Sequence[Sequence[float | None]]) -> TypedColumn:
    """Lists of ``float64`` values."""
    return TypedColumn(values, pa.list_(pa.float64()))


def string_column(values: Sequence[str | None]) -> TypedColumn:
    """Strings (``None`` for a missing one)."""
    return TypedColumn(values, pa.string())


def string_list_column(values: Sequence[Sequence[str | None]]) -> TypedColumn:
    """Lists of strings, e.g. labels."""
    return TypedColumn(values, LABELS_ARROW_TYPE)


def int_column(values: Sequence[int]) -> TypedColumn:
    """``int64`` values."""
    return TypedColumn(values, pa.int64())


def messages_column(values: Sequence[Sequence[dict[str, str]]]) -> TypedColumn:
    """OpenAI-style conversations (:data:`MESSAGES_ARROW_TYPE`)."""
    return TypedColumn(values, MESSAGES_ARROW_TYPE)


# --------------------------------------------------------------------------------------
# batches and values in error messages


def batch_rows(batch: Mapping[str, Sequence[Any]], indices: Sequence[int] | None) -> list[int]:
    """Row numbers of the rows of a batch: ``indices`` if given, else positions ``0..n-1``.

    Raises ``ValueError`` when ``indices`` and the batch differ in length.
    """
    return row_numbers(len(next(iter(batch.values()))) if batch else 0, indices)


def row_numbers(n: int, indices: Sequence[int] | None) -> list[int]:
    """Row numbers of ``n`` rows: ``indices`` if given, else ``0..n-1``; ``ValueError`` when
    ``indices`` has another length."""
    if indices is None:
        return list(range(n))
    ids = list(indices)
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} indices for a batch of {n} rows")
    return ids


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
    """``"None"`` or the name of the value's type, for error messages."""
    return "None" if value is None else type(value).__name__


def is_sequence(value: Any) -> bool:
    """A list-like value that is not a string or bytes."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))
