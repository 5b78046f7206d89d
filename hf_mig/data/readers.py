"""Pass 2 over a text pool file: JSON Lines, a JSON array or CSV parsed into one Arrow file.

Pieces of whole lines are parsed by pyarrow and streamed under one widening schema
(:class:`TableSink`); bad lines are named (or skipped with ``skip_bad_lines``), type conflicts
are named with their field and lines, and a file that changes while it is read is an error.
:func:`build_json` and :func:`build_csv` write ``folder/data.arrow`` and return the row count and
the lines skipped.
"""

from __future__ import annotations

import bisect
import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import xxhash

from hf_mig.data import text_scan
from hf_mig.data.errors import PoolFormatError
from hf_mig.data.exact_json import (
    ARROW_ERRORS,
    DUMPS,
    check_json_line,
    iter_json_array,
    parse_json_piece,
    read_json_bytes,
    starts_array,
    type_conflict,
)
from hf_mig.data.text_scan import (
    EXCERPT,
    BadLine,
    Scan,
    line_chunks,
    read_text,
    split_lines,
    text_problem,
)

__all__ = ["Built", "bad_line_error", "build_csv", "build_json", "no_rows_error", "read_csv_bytes"]


class TableSink:
    """Tables parsed piece by piece, combined under one schema into one Arrow file.

    Each table keeps the types pyarrow inferred for its piece; the schemas are unified as they
    come (a column that is null in one piece and text in another becomes text; integers and
    floats become floats; objects get the union of their keys). A real conflict (text in one
    piece, numbers in another) raises ``pa.ArrowTypeError`` / ``pa.ArrowInvalid`` from
    :meth:`add`. Tables are streamed to a segment file in ``folder``; a new segment starts
    when the schema widens, and only then are the earlier segments rewritten, at the end.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.schema: pa.Schema | None = None
        self.rows = 0
        self._segments: list[Path] = []
        self._file: Any = None
        self._writer: Any = None

    def add(self, table: pa.Table) -> None:
        if self.schema is None:
            schema = table.schema
        else:
            schema = pa.unify_schemas([self.schema, table.schema], promote_options="permissive")
        if self._writer is None or not schema.equals(self.schema):
            self._close()
            segment = self.folder / f"segment-{len(self._segments):05d}.arrow"
            self._segments.append(segment)
            self._file = pa.OSFile(str(segment), "wb")
            self._writer = pa.ipc.new_stream(self._file, schema)
        self.schema = schema
        self._writer.write_table(_conform(table, schema))
        self.rows += table.num_rows

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer = self._file = None

    def __enter__(self) -> TableSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def finish(self, out: Path) -> None:
        self._close()
        assert self.schema is not None and self._segments
        if len(self._segments) == 1:  # the last segment has the final schema
            os.replace(self._segments[0], out)
            return
        with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_stream(sink, self.schema) as writer:
            for segment in self._segments:
                with pa.memory_map(str(segment)) as source:
                    for batch in pa.ipc.open_stream(source):
                        table = pa.Table.from_batches([batch])
                        writer.write_table(_conform(table, self.schema))
                segment.unlink()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` under ``schema`` (a unification of its own): columns added, types widened."""
    if table.schema.equals(schema):
        return table
    table = pa.concat_tables([schema.empty_table(), table], promote_options="permissive")
    return table if table.schema.equals(schema) else table.cast(schema)


@dataclass
class Built:
    rows: int
    skipped: list[BadLine]


def bad_line_error(path: Path, bad: list[BadLine], *, hint: str = "") -> PoolFormatError:
    first = bad[0]
    reason = first.reason
    if len(bad) > 1:
        reason += f" ({len(bad) - 1} more bad line(s); skip_bad_lines=True loads the rest)"
    return PoolFormatError(path, first.lineno, reason + hint, first.excerpt, offset=first.offset)


def no_rows_error(path: Path) -> PoolFormatError:
    what = "it is empty" if path.stat().st_size == 0 else "it holds only blank lines"
    return PoolFormatError(path, None, f"the file holds no rows: {what}")


def _conflict_error(
    path: Path, records: Iterable[tuple[int, dict[str, Any]]], err: Exception
) -> PoolFormatError:
    found = type_conflict(records)
    if found is None:
        return PoolFormatError(path, None, f"the rows cannot be read as one table: {err}")
    lineno, name, kind, value, earlier, earlier_line = found
    shown = repr(value)
    shown = shown if len(shown) <= 2 * EXCERPT else shown[: 2 * EXCERPT] + "..."
    return PoolFormatError(
        path,
        lineno,
        f"field {name!r} is {kind} ({shown}) but {earlier} in line {earlier_line}; a field "
        "must have one type in every row",
        field=name,
    )


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for piece, offset, first_line, _ in line_chunks(path, text_scan.CHUNK_BYTES):
        for lineno, line_offset, raw in split_lines(piece, offset, first_line):
            record, _ = check_json_line(raw, lineno, line_offset)
            if record is not None:
                yield lineno, record


def _changed(path: Path) -> RuntimeError:
    return RuntimeError(f"{path}: the file changed while it was being read; load it again")


def build_json(path: Path, scan: Scan, folder: Path, skip_bad_lines: bool) -> Built:
    """Parse a JSON Lines file or a JSON array into ``folder/data.arrow``."""
    with TableSink(folder) as sink:
        if starts_array(path):
            return _build_json_array(path, scan, sink)
        return _build_json_lines(path, scan, sink, skip_bad_lines)


def _build_json_array(path: Path, scan: Scan, sink: TableSink) -> Built:
    if scan.bad:
        raise bad_line_error(
            path, scan.bad, hint=" (skip_bad_lines applies to JSON Lines, one record a line)"
        )
    data = path.read_bytes()
    if xxhash.xxh3_128(data).hexdigest() != scan.digest:
        raise _changed(path)
    text = read_text(data)
    del data
    lines: list[bytes] = []
    size = 0
    try:
        for _, record in iter_json_array(path, text):
            try:
                lines.append(DUMPS(record).encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate escape, which json.loads accepts
                raise _first_text_problem(path) from None
            size += len(lines[-1]) + 1
            if size >= text_scan.CHUNK_BYTES:
                sink.add(read_json_bytes(b"\n".join(lines) + b"\n"))
                lines, size = [], 0
        if lines:
            sink.add(read_json_bytes(b"\n".join(lines) + b"\n"))
    except ARROW_ERRORS as err:
        raise _conflict_error(path, iter_json_array(path, text), err) from None
    if sink.rows == 0:
        raise PoolFormatError(path, None, "the file holds no rows: the array is empty")
    sink.finish(sink.folder / "data.arrow")
    return Built(sink.rows, [])


def _first_text_problem(path: Path) -> PoolFormatError:
    """The error for the first line of ``path`` with invalid UTF-8 or a lone surrogate."""
    for piece, offset, first_line, _ in line_chunks(path, text_scan.CHUNK_BYTES):
        for lineno, line_offset, raw in split_lines(piece, offset, first_line):
            problem = text_problem(raw, lineno, line_offset, json_escapes=True)
            if problem is not None:
                return bad_line_error(path, [problem])
    return PoolFormatError(path, None, "holds text that cannot be stored as UTF-8")


def _build_json_lines(path: Path, scan: Scan, sink: TableSink, skip_bad_lines: bool) -> Built:
    digest = xxhash.xxh3_128()
    conflict: Exception | None = None
    bad: dict[int, BadLine] = {b.lineno: b for b in scan.bad}
    known = sorted(bad)
    for piece, offset, first_line, newlines in line_chunks(path, text_scan.CHUNK_BYTES):
        digest.update(piece)
        last_line = first_line + newlines
        at = bisect.bisect_left(known, first_line)
        suspicious = at < len(known) and known[at] <= last_line
        table, piece_bad, err = parse_json_piece(
            piece, offset, first_line, newlines, suspicious=suspicious
        )
        for problem in piece_bad:
            bad.setdefault(problem.lineno, problem)
        if conflict is not None or (bad and not skip_bad_lines):
            continue  # only looking for more bad lines now
        if err is not None:
            conflict = err
        elif table is not None:
            try:
                sink.add(table)
            except ARROW_ERRORS as add_err:
                conflict = add_err
    if digest.hexdigest() != scan.digest:
        raise _changed(path)
    skipped = [bad[n] for n in sorted(bad)]
    if skipped and not skip_bad_lines:
        hint = ""
        if path.suffix.lower() == ".json" and skipped[0].lineno == 1:
            hint = " (a .json pool is JSON Lines, or one JSON array of objects)"
        raise bad_line_error(path, skipped, hint=hint)
    if conflict is not None:
        raise _conflict_error(path, _jsonl_records(path), conflict)
    if sink.rows == 0:
        if skipped:
            first = skipped[0]
            raise PoolFormatError(path, first.lineno, "no valid line in the file", first.excerpt)
        raise no_rows_error(path)
    sink.finish(sink.folder / "data.arrow")
    return Built(sink.rows, skipped)


_CSV_CONVERT: dict[str, Any] = {
    "null_values": [""],
    "strings_can_be_null": True,
    "quoted_strings_can_be_null": False,
}


def read_csv_bytes(data: bytes) -> pa.Table:
    """Parse CSV bytes with pyarrow.

    An unquoted empty field is null and a quoted one (``""``) is the empty string; no other
    text means null. Column types are inferred (integers, floats, booleans), except that
    date- and time-like columns stay text.
    """
    block = 16 << 20
    types: dict[str, pa.DataType] = {}
    while True:
        try:
            table = pa_csv.read_csv(
                pa.BufferReader(data),
                read_options=pa_csv.ReadOptions(block_size=block),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(column_types=types, **_CSV_CONVERT),
            )
        except ARROW_ERRORS as err:
            if "straddl" in str(err) and block <= len(data):
                block = min(block * 8, len(data) + 1)
                continue
            raise
        temporal = {f.name: pa.string() for f in table.schema if pa.types.is_temporal(f.type)}
        if temporal and not types:
            types = temporal
            continue
        return table


def _csv_problem(text: str) -> tuple[int, str] | None:
    """The first record whose number of fields differs from the header's: ``(line, reason)``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return None
        start = reader.line_num + 1
        for record in reader:
            if record and len(record) != len(header):
                return start, (
                    f"expected {len(header)} fields (as in the header), found {len(record)}"
                )
            start = reader.line_num + 1
    except csv.Error as err:
        return reader.line_num, f"invalid CSV ({err})"
    return None


def build_csv(path: Path, scan: Scan, folder: Path, skip_bad_lines: bool) -> Built:
    data = path.read_bytes()
    if xxhash.xxh3_128(data).hexdigest() != scan.digest:
        raise _changed(path)
    skipped = list(scan.bad)
    if skipped:
        if skipped[0].lineno == 1:
            raise bad_line_error(path, skipped, hint=" (the header line cannot be skipped)")
        drop = {b.lineno for b in skipped}
        data = b"\n".join(
            line for lineno, line in enumerate(data.split(b"\n"), start=1) if lineno not in drop
        )
    try:
        table = read_csv_bytes(data)
    except ARROW_ERRORS as err:
        if "Empty CSV file" in str(err):
            raise no_rows_error(path) from None
        found = _csv_problem(read_text(data))
        if found is None or skipped:
            raise PoolFormatError(path, None, f"cannot be read as CSV: {err}") from None
        lineno, reason = found
        raise PoolFormatError(path, lineno, reason) from None
    if table.num_rows == 0:
        raise PoolFormatError(path, None, "the file holds no rows: only a header line")
    with TableSink(folder) as sink:
        sink.add(table)
        sink.finish(folder / "data.arrow")
    return Built(table.num_rows, skipped)
