"""Datasets written as JSON Lines, a JSON array or CSV, exactly or not at all.

Values are encoded column-wise in batches (the table is never held whole); a value a format
cannot hold raises :class:`~hf_mig.data.errors.OutputFormatError` naming the column (and the
row). :func:`json_plan` and :func:`check_csv_schema` check a schema before anything is written;
a CSV file is read back once (:func:`read_csv_bytes`) and compared with what was written.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from hf_mig.data.errors import OutputFormatError
from hf_mig.data.readers import read_csv_bytes

__all__ = ["WRITE_BATCH_ROWS", "check_csv_schema", "json_plan", "write_csv", "write_json"]

#: Rows of output encoded at once at most; fewer for wide rows (see ``_batch_rows``).
WRITE_BATCH_ROWS = 10_000
_WRITE_BATCH_BYTES = 64 << 20


def _batch_rows(dataset: datasets.Dataset) -> int:
    """Rows per output batch: up to ``WRITE_BATCH_ROWS``, about 64 MB of Arrow data at most."""
    table = dataset.data
    per_row = table.nbytes / max(1, table.num_rows)
    return max(1, min(WRITE_BATCH_ROWS, int(_WRITE_BATCH_BYTES / max(per_row, 1.0))))


def _batches(dataset: datasets.Dataset) -> Iterator[tuple[int, pa.Table]]:
    """``(first row, Arrow table)`` for consecutive batches of ``dataset`` (indices applied)."""
    start = 0
    for table in dataset.with_format("arrow").iter(batch_size=_batch_rows(dataset)):
        yield start, table
        start += table.num_rows


def _type_name(dtype: pa.DataType) -> str:
    return str(dtype).replace("\n", " ")


def _columns_message(columns: list[tuple[str, pa.DataType]]) -> str:
    return ", ".join(f"{name!r} ({_type_name(dtype)})" for name, dtype in columns)


def _is_any_list(dtype: pa.DataType) -> bool:
    """A list column of any layout (list, large list, fixed-size list)."""
    types = pa.types
    return types.is_list(dtype) or types.is_large_list(dtype) or types.is_fixed_size_list(dtype)


def _json_type(dtype: pa.DataType) -> pa.DataType | None:
    """The type a column is cast to before it is written as JSON; ``None``: cannot be."""
    types = pa.types
    if (
        types.is_null(dtype)
        or types.is_boolean(dtype)
        or types.is_integer(dtype)
        or types.is_float32(dtype)
        or types.is_float64(dtype)
        or types.is_string(dtype)
        or types.is_large_string(dtype)
    ):
        return dtype
    if types.is_float16(dtype):
        return pa.float32()
    if types.is_timestamp(dtype) or types.is_date(dtype) or types.is_time(dtype):
        return pa.string()
    if types.is_dictionary(dtype):
        return _json_type(dtype.value_type)
    if _is_any_list(dtype):
        inner = _json_type(dtype.value_type)
        if inner is None:
            return None
        return pa.large_list(inner) if types.is_large_list(dtype) else pa.list_(inner)
    if types.is_struct(dtype):
        children = [dtype.field(i) for i in range(dtype.num_fields)]
        mapped = [_json_type(child.type) for child in children]
        if any(m is None for m in mapped):
            return None
        return pa.struct([c.with_type(m) for c, m in zip(children, mapped)])
    return None


def _is_json_extension(dtype: pa.DataType) -> bool:
    json_type = getattr(pa, "JsonType", None)
    return json_type is not None and isinstance(dtype, json_type)


@dataclass
class _JsonPlan:
    target: pa.Schema | None  # cast to this first (None: no cast needed)
    json_columns: frozenset[int]  # columns holding JSON text (datasets' Json feature)


def json_plan(schema: pa.Schema, out: Path) -> _JsonPlan:
    fields: list[pa.Field] = []
    json_columns: set[int] = set()
    refused: list[tuple[str, pa.DataType]] = []
    for i, f in enumerate(schema):
        if _is_json_extension(f.type):
            json_columns.add(i)
            fields.append(f.with_type(pa.string()))
            continue
        mapped = _json_type(f.type)
        if mapped is None:
            refused.append((f.name, f.type))
        else:
            fields.append(f.with_type(mapped))
    if refused:
        raise OutputFormatError(
            f"{out}: JSON cannot hold the values of column(s) {_columns_message(refused)} "
            "exactly (no bytes, decimals, durations, maps or other extension types); write "
            ".parquet or a dataset folder instead"
        )
    target = pa.schema(fields)
    same = all(a.type == b.type for a, b in zip(schema, target))
    return _JsonPlan(None if same else target, frozenset(json_columns))


def _to_pylist(column: pa.ChunkedArray, out: Path, name: str, start: int) -> list[Any]:
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        for row in range(len(column)):
            try:
                column[row].as_py()
            except UnicodeDecodeError as err:
                raise OutputFormatError(
                    f"{out}: row {start + row}, column {name!r}: the text is not valid UTF-8 "
                    f"({err.reason} at byte {err.start}); fix the source data"
                ) from None
        raise


def _prepare(table: pa.Table, plan: _JsonPlan) -> pa.Table:
    if plan.json_columns:
        columns = [
            pa.chunked_array([c.storage for c in col.chunks], type=pa.string())
            if i in plan.json_columns
            else col
            for i, col in enumerate(table.columns)
        ]
        table = pa.Table.from_arrays(columns, names=table.column_names)
    if plan.target is not None:
        table = table.cast(plan.target)
    return table


_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_encode_string = json.encoder.encode_basestring  # what _JSON_ENCODE does to a str


class _Unencodable(Exception):
    """The column-wise encoder met a value it does not write (NaN, infinity, invalid UTF-8);
    the row-wise path finds the row and says why."""


def _object_template(names: list[str]) -> str:
    keys = (_encode_string(name).replace("%", "%%") + ":%s" for name in names)
    return "{" + ",".join(keys) + "}"


def _encode_array(arr: pa.Array) -> list[str]:
    """The JSON text of each value of ``arr``, column-wise (types as made by ``_json_type``).

    Floats are written with ``float.__repr__`` (shortest exact form) and text with the
    :mod:`json` string encoder, as :func:`json.dumps` would; NaN, infinity and invalid UTF-8
    raise :class:`_Unencodable`.
    """
    types = pa.types
    dtype = arr.type
    size = len(arr)
    if types.is_null(dtype):
        return ["null"] * size
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    if types.is_floating(dtype):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        finite = np.isfinite(values)
        if valid is not None:
            finite |= ~valid
        if not finite.all():
            raise _Unencodable
        out = list(map(float.__repr__, values.tolist()))
    elif types.is_integer(dtype):
        filled = arr.fill_null(0) if valid is not None else arr
        out = list(map(int.__repr__, filled.to_numpy(zero_copy_only=False).tolist()))
    elif types.is_boolean(dtype):
        filled = arr.fill_null(False) if valid is not None else arr
        out = ["true" if v else "false" for v in filled.to_numpy(zero_copy_only=False).tolist()]
    elif types.is_string(dtype) or types.is_large_string(dtype):
        try:
            texts = (arr.fill_null("") if valid is not None else arr).to_pylist()
        except UnicodeDecodeError:
            raise _Unencodable from None
        out = list(map(_encode_string, texts))
    elif types.is_list(dtype) or types.is_large_list(dtype):
        offsets = arr.offsets.to_numpy(zero_copy_only=False)
        first, last = int(offsets[0]), int(offsets[-1])
        items = _encode_array(arr.values.slice(first, last - first))
        bounds = (offsets - first).tolist()
        out = ["[" + ",".join(items[a:b]) + "]" for a, b in zip(bounds[:-1], bounds[1:])]
    elif types.is_struct(dtype):
        names = [dtype.field(i).name for i in range(dtype.num_fields)]
        if not names:
            out = ["{}"] * size
        else:
            template = _object_template(names)
            fields = [_encode_array(arr.field(i)) for i in range(len(names))]
            out = [template % values for values in zip(*fields)]
    else:
        raise _Unencodable
    if valid is not None:
        for row in np.flatnonzero(~valid).tolist():
            out[row] = "null"
    return out


def _encode_column(column: pa.ChunkedArray, is_json: bool) -> list[str]:
    if is_json:  # datasets' Json feature: JSON text, written as the value it encodes
        try:
            values = [None if v is None else json.loads(v) for v in column.to_pylist()]
            return list(map(_JSON_ENCODE, values))
        except (ValueError, UnicodeDecodeError):
            raise _Unencodable from None
    out: list[str] = []
    for chunk in column.chunks:
        out.extend(_encode_array(chunk))
    return out


def _json_lines(table: pa.Table, start: int, out: Path, plan: _JsonPlan) -> list[str]:
    """One JSON object (a line of text, no newline) per row of ``table``."""
    names = table.column_names
    if not names:
        return ["{}"] * table.num_rows
    try:
        encoded = [
            _encode_column(table.column(i), i in plan.json_columns) for i in range(len(names))
        ]
    except _Unencodable:
        encoded = [_encode_values(table, i, start, out, plan) for i in range(len(names))]
    template = _object_template(names)
    return [template % row for row in zip(*encoded)]


def _encode_values(table: pa.Table, i: int, start: int, out: Path, plan: _JsonPlan) -> list[str]:
    """Column ``i`` encoded value by value, raising :class:`OutputFormatError` on the first
    value JSON cannot hold, with its row and column."""
    name = table.column_names[i]
    values = _to_pylist(table.column(i), out, name, start)
    if i in plan.json_columns:
        values = [None if v is None else json.loads(v) for v in values]
    encoded = []
    for row, value in enumerate(values):
        try:
            encoded.append(_JSON_ENCODE(value))
        except ValueError:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:80] + "..."
            raise OutputFormatError(
                f"{out}: row {start + row}, column {name!r}: {shown} holds NaN or infinity, "
                "which JSON cannot hold; replace it with null, or write .parquet or a dataset "
                "folder instead"
            ) from None
    return encoded


#: Characters that ``str.splitlines`` (and some JSON Lines readers) take for line ends, and
#: their JSON escapes; JSON allows them raw in strings, but escaped they cannot split a line.
_LINE_BREAKS = (("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\x85", "\\u0085"))


def write_json(
    dataset: datasets.Dataset, path: Path, out: Path, plan: _JsonPlan, *, array: bool
) -> None:
    """Stream ``dataset`` to ``path`` as JSON Lines, or as one array with a record per line."""
    with open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as fh:
        first = True
        if array:
            fh.write("[")
        for start, table in _batches(dataset):
            lines = _json_lines(_prepare(table, plan), start, out, plan)
            if not lines:
                continue
            text = (",\n" if array else "\n").join(lines)
            for char, escape in _LINE_BREAKS:
                if char in text:  # only ever inside strings, where the escape means the same
                    text = text.replace(char, escape)
            if array:
                fh.write(("\n" if first else ",\n") + text)
            else:
                fh.write(text + "\n")
            first = False
        if array:
            fh.write("]\n" if first else "\n]\n")


def _csv_kind(dtype: pa.DataType) -> str | None:
    types = pa.types
    if types.is_dictionary(dtype):
        return _csv_kind(dtype.value_type)
    if types.is_null(dtype):
        return "null"
    if types.is_boolean(dtype):
        return "bool"
    if types.is_integer(dtype):
        return "int"
    if types.is_floating(dtype):
        return "float"
    if types.is_string(dtype) or types.is_large_string(dtype):
        return "text"
    return None


def _is_nested(dtype: pa.DataType) -> bool:
    types = pa.types
    return (
        _is_any_list(dtype)
        or types.is_struct(dtype)
        or types.is_map(dtype)
        or _is_json_extension(dtype)
    )


def check_csv_schema(schema: pa.Schema, out: Path) -> None:
    nested = [(f.name, f.type) for f in schema if _is_nested(f.type)]
    if nested:
        raise OutputFormatError(
            f"{out}: CSV holds flat values only, and column(s) {_columns_message(nested)} are "
            "nested; write .jsonl or .parquet instead"
        )
    other = [(f.name, f.type) for f in schema if _csv_kind(f.type) is None]
    if other:
        raise OutputFormatError(
            f"{out}: CSV cannot hold the values of column(s) {_columns_message(other)} "
            "exactly (only null, booleans, integers, floats and text); write .parquet or a "
            "dataset folder instead"
        )


def _csv_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


_CSV_FORMAT = {
    "null": lambda v: "",
    "bool": lambda v: "" if v is None else ("true" if v else "false"),
    "int": lambda v: "" if v is None else str(v),
    "float": lambda v: "" if v is None else repr(float(v)),
    "text": lambda v: "" if v is None else _csv_text(v),
}


def write_csv(dataset: datasets.Dataset, path: Path, out: Path) -> None:
    schema = dataset.data.schema
    kinds = [_csv_kind(f.type) for f in schema]
    with open(path, "w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
        fh.write(",".join(_csv_text(name) for name in schema.names) + "\n")
        for start, table in _batches(dataset):
            columns = [
                list(map(_CSV_FORMAT[kind], _to_pylist(table.column(i), out, name, start)))
                for i, (kind, name) in enumerate(zip(kinds, table.column_names))
            ]
            if columns and table.num_rows:
                fh.write("\n".join(map(",".join, zip(*columns))) + "\n")
    _verify_csv(dataset, path, out)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _verify_csv(dataset: datasets.Dataset, path: Path, out: Path) -> None:
    """Read the written CSV back as :func:`load_pool` would; raise if any value differs."""
    back = read_csv_bytes(path.read_bytes()) if len(dataset) else None
    if back is None:
        return
    if back.column_names == dataset.column_names and back.num_rows < len(dataset):
        raise OutputFormatError(
            f"{out}: {len(dataset) - back.num_rows} row(s) do not survive CSV (a row whose "
            "fields are all null is an empty line, which is skipped on reading); write .jsonl "
            "or .parquet instead"
        )
    if back.column_names != dataset.column_names or back.num_rows != len(dataset):
        raise OutputFormatError(
            f"{out}: the CSV reads back as {back.num_rows} rows of {back.column_names}, not "
            f"{len(dataset)} rows of {dataset.column_names}; write .jsonl or .parquet instead"
        )
    for start, table in _batches(dataset):
        for i, name in enumerate(table.column_names):
            written = table.column(i).to_pylist()
            read = back.column(i).slice(start, table.num_rows).to_pylist()
            for row, (a, b) in enumerate(zip(written, read)):
                if not _same_value(a, b):
                    raise OutputFormatError(
                        f"{out}: column {name!r} does not survive CSV: row {start + row} holds "
                        f"{a!r} and reads back as {b!r} (CSV carries no types); write .jsonl "
                        "or .parquet instead"
                    )
