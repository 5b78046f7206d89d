"""JSON read exactly: one type per field, no duplicate keys, no number too large for a float.

Records are checked line by line with :mod:`json` (:func:`check_json_line`, which names the
problem of a bad line) and parsed in bulk with pyarrow (:func:`parse_json_piece`, which falls back
to the line-by-line check only when pyarrow fails or its row count disagrees). A file holding one
JSON array is walked record by record (:func:`iter_json_array`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from hf_mig.data.errors import PoolFormatError
from hf_mig.data.text_scan import BOM, BadLine, excerpt, split_lines, text_problem

__all__ = [
    "ARROW_ERRORS",
    "check_json_line",
    "iter_json_array",
    "parse_json_piece",
    "read_json_bytes",
    "starts_array",
    "type_conflict",
]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in one object")
            seen.add(key)
    return record


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is too large for a 64-bit float")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_finite_float)


def check_json_line(raw: bytes, lineno: int = 2, offset: int = 0) -> tuple[Any, BadLine | None]:
    """Parse one JSON Lines line: ``(record, None)`` or ``(None, problem)``.

    Blank lines give ``(None, None)`` and are ignored. A BOM is allowed on line 1.
    """
    problem = text_problem(raw, lineno, offset, json_escapes=True)
    if problem is not None:
        return None, problem
    line = raw.decode("utf-8")
    if lineno == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return None, None
    try:
        record = _DECODER.decode(line)
    except json.JSONDecodeError as err:
        reason = f"invalid JSON ({err.msg} at column {err.colno})"
        return None, BadLine(lineno, reason, excerpt(line, err.colno))
    except ValueError as err:  # from the hooks: duplicate key, number too large
        return None, BadLine(lineno, f"invalid JSON record: {err}", excerpt(line))
    if not isinstance(record, dict):
        kind = _KIND_NAMES.get(type(record), type(record).__name__)
        return None, BadLine(lineno, f"expected a JSON object, got {kind}", excerpt(line))
    return record, None


_KIND_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def type_conflict(
    records: Iterable[tuple[int, dict[str, Any]]],
) -> tuple[int, str, str, Any, str, int] | None:
    """The first field whose JSON type differs from the type it had in an earlier row.

    Returns ``(lineno, field, kind, value, earlier kind, earlier lineno)``; ``None`` when every
    field keeps one type (nulls fit any type; integers and floats are both numbers). Nested
    fields are named ``a.b`` and list items ``a[]``.
    """
    seen: dict[str, tuple[str, int]] = {}

    def walk(path: str, value: Any, lineno: int) -> tuple[int, str, str, Any, str, int] | None:
        if value is None:
            return None
        kind = _KIND_NAMES[type(value)]
        earlier = seen.get(path)
        if earlier is None:
            seen[path] = (kind, lineno)
        elif earlier[0] != kind:
            return lineno, path, kind, value, earlier[0], earlier[1]
        if kind == "an object":
            for key, item in value.items():
                found = walk(f"{path}.{key}", item, lineno)
                if found:
                    return found
        elif kind == "an array":
            for item in value:
                found = walk(f"{path}[]", item, lineno)
                if found:
                    return found
        return None

    for lineno, record in records:
        for key, value in record.items():
            found = walk(key, value, lineno)
            if found:
                return found
    return None


def _strings_for_timestamps(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with every timestamp (inferred by pyarrow from date-like text) made a string."""
    if pa.types.is_timestamp(dtype):
        return pa.string()
    if pa.types.is_list(dtype):
        return pa.list_(_strings_for_timestamps(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct(
            [
                dtype.field(i).with_type(_strings_for_timestamps(dtype.field(i).type))
                for i in range(dtype.num_fields)
            ]
        )
    return dtype


ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def read_json_bytes(data: bytes) -> pa.Table:
    """Parse JSON Lines bytes with pyarrow, exactly: text stays text (no timestamp inference)."""
    block = 1 << 20
    parse = pa_json.ParseOptions()
    while True:
        options = pa_json.ReadOptions(block_size=block)
        try:
            table = pa_json.read_json(
                pa.BufferReader(data), read_options=options, parse_options=parse
            )
        except ARROW_ERRORS as err:
            # an object longer than a block, or a type that pyarrow infers differently in two
            # blocks: a larger block (at most the whole piece, read in one go) settles both
            retry = "straddl" in str(err) or "JSON conversion to" in str(err)
            if retry and block <= len(data):
                block = min(block * 8, len(data) + 1)
                continue
            raise
        if parse.explicit_schema is not None:
            return table
        text_only = pa.schema([f.with_type(_strings_for_timestamps(f.type)) for f in table.schema])
        if text_only.equals(table.schema):
            return table
        parse = pa_json.ParseOptions(explicit_schema=text_only)


def _blank_lines_estimate(piece: bytes) -> int:
    return (
        piece.count(b"\n\n")
        + piece.count(b"\n\r\n")
        + piece.startswith(b"\n")
        + piece.startswith(b"\r\n")
    )


def parse_json_piece(
    piece: bytes, offset: int, first_line: int, newlines: int, *, suspicious: bool
) -> tuple[pa.Table | None, list[BadLine], Exception | None]:
    """Parse whole JSON Lines: ``(table of the good lines, bad lines, error combining them)``.

    pyarrow parses the piece first; only when it fails, or gives another number of rows than
    there are lines (it also accepts several objects on one line, or one over several lines),
    is every line checked with :mod:`json` to name the bad ones.
    """
    if not suspicious:
        try:
            table = read_json_bytes(piece)
        except ARROW_ERRORS:
            pass
        else:
            lines = newlines + (not piece.endswith(b"\n"))
            if table.num_rows == lines or table.num_rows == lines - _blank_lines_estimate(piece):
                return table, [], None
    good: list[bytes] = []
    bad: list[BadLine] = []
    for lineno, line_offset, raw in split_lines(piece, offset, first_line):
        record, problem = check_json_line(raw, lineno, line_offset)
        if problem is not None:
            bad.append(problem)
        elif record is not None:
            good.append(raw)
    if not good:
        return None, bad, None
    try:
        return read_json_bytes(b"\n".join(good) + b"\n"), bad, None
    except ARROW_ERRORS as err:
        return None, bad, err


_WHITESPACE = re.compile(r"[ \t\n\r]*")
DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def iter_json_array(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(1-based line, record)`` for each element of a JSON array of objects, in order."""
    pos = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
    line, seen = 1, 0

    def line_at(where: int) -> int:
        nonlocal line, seen
        line += text.count("\n", seen, where)
        seen = where
        return line

    def fail(where: int, reason: str) -> PoolFormatError:
        lineno = text.count("\n", 0, where) + 1
        start = text.rfind("\n", 0, where) + 1
        end = text.find("\n", where)
        source = text[start : end if end >= 0 else len(text)]
        return PoolFormatError(path, lineno, reason, excerpt(source, where - start + 1))

    pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]  # past "["
    if text.startswith("]", pos):
        pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
        if pos != len(text):
            raise fail(pos, "invalid JSON (extra data after the array)")
        return
    while True:
        lineno = line_at(pos)
        try:
            record, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise fail(err.pos, f"invalid JSON ({err.msg} at column {err.colno})") from None
        except ValueError as err:  # from the hooks: duplicate key, number too large
            raise fail(pos, f"invalid JSON record: {err}") from None
        if not isinstance(record, dict):
            kind = _KIND_NAMES.get(type(record), type(record).__name__)
            raise fail(pos, f"expected a JSON object in the array, got {kind}")
        yield lineno, record
        pos = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", pos):
            pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
        elif text.startswith("]", pos):
            pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
            if pos != len(text):
                raise fail(pos, "invalid JSON (extra data after the array)")
            return
        elif pos == len(text):
            raise fail(pos, "invalid JSON (the array is not closed: the file ends)")
        else:
            col = pos - text.rfind("\n", 0, pos)
            raise fail(pos, f"invalid JSON (Expecting ',' delimiter at column {col})")


def starts_array(path: Path) -> bool:
    """Whether a JSON file holds one array (its first non-blank character is ``[``)."""
    with open(path, "rb") as fh:
        head = fh.read(len(BOM))
        if head != BOM:
            fh.seek(0)
        while chunk := fh.read(1 << 16):
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith(b"[")
    return False
