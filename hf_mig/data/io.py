"""Reading candidate pools and writing selected subsets.

:func:`load_pool` reads a local data file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``), a
folder written by ``save_to_disk`` (or any local folder ``datasets.load_dataset`` understands),
or a Hub dataset id. Text files are checked before they are parsed (UTF-8, JSON syntax, one
type per field) and every problem is reported as :class:`PoolFormatError` naming the file, the
1-based line and, where it applies, the byte offset and the field. Parsed local files are
cached as Arrow files keyed by a hash of their bytes, never by path or modification time.

:func:`save_dataset` writes by extension; every format reads back through :func:`load_pool`
to the same values (see its docstring for what each format can hold), and the output is
written beside the target and renamed when complete.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import struct
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import xxhash
from datasets.exceptions import DatasetNotFoundError

__all__ = [
    "DATA_FILE_BUILDERS",
    "OutputExistsError",
    "OutputFormatError",
    "PoolFormatError",
    "atomic_output",
    "check_output",
    "file_fingerprint",
    "load_pool",
    "save_dataset",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

#: File extensions read and written as data files, and the kind of reader for each.
DATA_FILE_BUILDERS: dict[str, str] = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}

_SAVED_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
_EXCERPT = 40  # characters of context on each side of a JSON error
_MAX_LISTED = 10  # bad line numbers quoted in a skip warning

#: Version of the text readers below; part of every cache key, so a change to how files are
#: parsed never reuses tables parsed the old way.
READER_VERSION = 1
#: Bytes of text parsed at once (whole lines; a longer line is read whole).
CHUNK_BYTES = 16 << 20
#: Rows of output encoded at once at most; fewer for wide rows (see ``_batch_rows``).
WRITE_BATCH_ROWS = 10_000
_WRITE_BATCH_BYTES = 64 << 20


class PoolFormatError(ValueError):
    """A pool file cannot be read as a table.

    Attributes: ``path`` (the file), ``lineno`` (1-based line of the first bad record, or
    ``None`` when the problem is the whole file, such as an empty one), ``reason`` (what is
    wrong), ``offset`` (0-based byte offset in the file, for encoding errors) and ``field``
    (the field, for type conflicts).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        lineno: int | None,
        reason: str,
        excerpt: str = "",
        *,
        offset: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.lineno = lineno
        self.reason = reason
        self.offset = offset
        self.field = field
        where = f"{self.path}: line {lineno}" if lineno is not None else self.path
        super().__init__(f"{where}: {reason}" + (f"; near: {excerpt}" if excerpt else ""))


class OutputFormatError(ValueError):
    """A dataset holds values that the chosen output format cannot store exactly.

    The message names the output, the column (and the row where one value is at fault) and a
    format that can hold it. Raised before anything is left at the output path.
    """


class OutputExistsError(FileExistsError):
    """An output path already exists and may not be replaced.

    Raised when ``overwrite`` is off, or when the path is a folder holding files this tool did
    not write (those are never replaced, whatever ``overwrite`` says).
    """


# --------------------------------------------------------------------------------------
# outputs: checked before the work, written beside the target, then renamed

_TMP_MARK = ".hf-mig-tmp-"
_DATASET_FOLDER_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")


def _is_dataset_folder(path: Path) -> bool:
    """Whether ``path`` holds only what ``save_to_disk`` writes (a Dataset or DatasetDict)."""
    entries = list(path.iterdir())
    if not entries:
        return True
    for entry in entries:
        name = entry.name
        if entry.is_dir():
            if not (path / "dataset_dict.json").is_file() or not _is_dataset_folder(entry):
                return False
        elif name not in _DATASET_FOLDER_FILES and not (
            name.startswith("data-") and name.endswith(".arrow")
        ):
            return False
    return True


def check_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` may be written; return it as a :class:`Path`.

    A path that does not exist is always writable. An existing file is replaced only with
    ``overwrite=True``. An existing folder is replaced only with ``overwrite=True`` and only when
    it holds nothing but a dataset saved by ``save_to_disk`` (never a folder with other files,
    such as the current directory). Raises :class:`OutputExistsError` otherwise, naming the path
    and the way round it.
    """
    final = Path(path).expanduser()
    if not final.exists() and not final.is_symlink():
        return final
    if final.is_dir() and not final.is_symlink():
        if not _is_dataset_folder(final):
            raise OutputExistsError(
                f"{final}: the output exists and is a folder holding other files; it is never "
                "replaced. Choose a new output path."
            )
        kind = "dataset folder"
    elif final.is_file():
        kind = "file"
    else:
        raise OutputExistsError(f"{final}: the output exists and is not a regular file")
    if not overwrite:
        raise OutputExistsError(
            f"{final}: the output {kind} exists; pass --overwrite (overwrite=True) to replace it, "
            "or choose a new path"
        )
    return final


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it onto ``path`` on success.

    ``path`` is checked with :func:`check_output` first. The temporary name lives in the same
    folder (so the rename is atomic on one filesystem) and keeps the target's suffix. On an
    exception the temporary file or folder is removed and ``path`` is left as it was; a reader
    never sees a partial output. A replaced dataset folder is moved aside, the new one renamed
    in, then the old one removed.
    """
    final = check_output(path, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{time.time_ns()}"
    tmp = final.parent / f".{final.name}{_TMP_MARK}{stamp}{final.suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {final}")
        if tmp.is_dir() and final.is_dir():
            old = final.parent / f".{final.name}{_TMP_MARK}old-{stamp}"
            os.rename(final, old)
            os.rename(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------
# pass 1 over a text file: content hash, UTF-8, JSON escapes


@dataclass
class _BadLine:
    lineno: int
    reason: str
    excerpt: str
    offset: int | None = None


@dataclass
class _Scan:
    digest: str
    has_content: bool
    bad: list[_BadLine] = field(default_factory=list)


# A run of backslashes, then "u" and a UTF-16 surrogate (D800-DFFF), then maybe the escape of a
# low surrogate completing a pair. An even run of backslashes is escaped backslashes, not "\u".
_SURROGATE_ESCAPE = re.compile(
    rb"(\\+)u[dD]([0-9a-fA-F])[0-9a-fA-F]{2}(\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
)
_BOM = codecs.BOM_UTF8


def _line_chunks(path: Path, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """``path`` in pieces of whole lines: ``(bytes, byte offset, 1-based first line, newlines)``.

    Pieces hold about ``size`` bytes; a line longer than that is yielded whole.
    """
    offset, line = 0, 1
    pending: list[bytes] = []
    with open(path, "rb") as fh:
        while block := fh.read(size):
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                pending.append(block)
                continue
            piece = b"".join([*pending, block[:cut]]) if pending else block[:cut]
            pending = [block[cut:]] if cut < len(block) else []
            newlines = piece.count(b"\n")
            yield piece, offset, line, newlines
            offset += len(piece)
            line += newlines
    if pending:
        piece = b"".join(pending)
        yield piece, offset, line, piece.count(b"\n")


def _newlines_before(path: Path, start: int, stop: int) -> int:
    """How many newlines ``path`` holds in bytes ``start:stop``."""
    count = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while start < stop:
            block = fh.read(min(CHUNK_BYTES, stop - start))
            if not block:
                break
            count += block.count(b"\n")
            start += len(block)
    return count


def _split_lines(piece: bytes, offset: int, first_line: int) -> Iterator[tuple[int, int, bytes]]:
    """``(lineno, byte offset, raw line without its newline)`` for each line of a piece."""
    start = 0
    lineno = first_line
    end = len(piece)
    while start < end:
        stop = piece.find(b"\n", start)
        if stop < 0:
            stop = end
        yield lineno, offset + start, piece[start:stop]
        start = stop + 1
        lineno += 1


def _lone_surrogate(raw: bytes) -> int | None:
    """Byte position of the first ``\\uD800``-``\\uDFFF`` escape that is not half of a pair."""
    for match in _SURROGATE_ESCAPE.finditer(raw):
        if len(match.group(1)) % 2 == 0:
            continue  # "\\\\u..." is an escaped backslash followed by the letter u
        high = match.group(2) in b"89abAB"
        if not high or match.group(3) is None:
            return match.start() + len(match.group(1)) - 1
    return None


def _text_problem(raw: bytes, lineno: int, offset: int, json_escapes: bool) -> _BadLine | None:
    """An encoding problem in one line: invalid UTF-8, or (JSON) a lone surrogate escape."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.end]
        return _BadLine(
            lineno,
            f"invalid UTF-8: byte(s) {bad!r} at byte offset {offset + err.start} "
            f"(byte {err.start + 1} of the line) ({err.reason})",
            _excerpt(raw.decode("utf-8", "replace"), err.start + 1),
            offset + err.start,
        )
    if json_escapes and (b"\\ud" in raw or b"\\uD" in raw):
        pos = _lone_surrogate(raw)
        if pos is not None:
            escape = raw[pos : pos + 6].decode("ascii")
            return _BadLine(
                lineno,
                f"lone surrogate escape {escape} at byte offset {offset + pos} (byte {pos + 1} "
                "of the line): not a Unicode character, so the text cannot be stored as UTF-8",
                _excerpt(raw.decode("utf-8"), pos + 1),
                offset + pos,
            )
    return None


def _valid_utf8(data: bytes, start: int, stop: int) -> bool:
    """Whether ``data[start:stop]`` is UTF-8, checked by Arrow without a copy (about 1 GB/s)."""
    offsets = pa.py_buffer(np.array([0, stop - start], dtype=np.int64))
    text = pa.Array.from_buffers(
        pa.large_string(), 1, [None, offsets, pa.py_buffer(data)[start:stop]]
    )
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _line_spans(path: Path, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """``path`` as spans of whole lines without copying: ``(block, start, stop, offset)``.

    ``block[start:stop]`` is the span and ``offset`` its byte offset in the file. A block read
    is split into its first line (joined to what the last block left over) and the rest.
    """
    offset = 0
    pending: list[bytes] = []
    with open(path, "rb") as fh:
        while block := fh.read(size):
            first = block.find(b"\n")
            if first < 0:
                pending.append(block)
                continue
            last = block.rfind(b"\n")
            head = b"".join([*pending, block[: first + 1]]) if pending else block[: first + 1]
            yield head, 0, len(head), offset
            offset += len(head)
            if last > first:
                yield block, first + 1, last + 1, offset
                offset += last - first
            pending = [block[last + 1 :]] if last + 1 < len(block) else []
    if pending:
        tail = b"".join(pending)
        yield tail, 0, len(tail), offset


def _scan_text(path: Path, *, json_escapes: bool) -> _Scan:
    """Hash ``path`` and find every line with invalid UTF-8.

    A streaming pass that copies nothing: each span of lines is checked as a whole, and only a
    span that fails is looked at line by line (lines are counted then; a failing line of JSON
    is also checked for lone surrogate escapes). Lone surrogates elsewhere are found when the
    JSON is parsed. ``has_content`` is whether anything but whitespace and a BOM is there.
    """
    digest = xxhash.xxh3_128()
    has_content = False
    bad: list[_BadLine] = []
    known_offset, known_line = 0, 1  # line numbers are counted only up to a failing span
    for data, start, stop, offset in _line_spans(path, CHUNK_BYTES):
        view = memoryview(data)[start:stop]
        digest.update(view)
        if not has_content:
            skip = len(_BOM) if offset == 0 and data.startswith(_BOM) else 0
            has_content = bool(bytes(view[skip:]).strip())
        if _valid_utf8(data, start, stop):
            continue
        known_line += _newlines_before(path, known_offset, offset)
        known_offset = offset
        for lineno, line_offset, raw in _split_lines(bytes(view), offset, known_line):
            problem = _text_problem(raw, lineno, line_offset, json_escapes)
            if problem is not None:
                bad.append(problem)
    return _Scan(digest.hexdigest(), has_content, bad)


def _hasher(algorithm: str) -> Any:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "xxh3_128":
        return xxhash.xxh3_128()
    raise ValueError(f"unknown fingerprint algorithm {algorithm!r}; known: sha256, xxh3_128")


def _file_digest(path: Path, algorithm: str) -> str:
    digest = _hasher(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of a file's bytes, or of a folder's files (relative names + bytes).

    The digest depends on the content only: never on the path, size or modification time, so a
    file rewritten in place gets a new fingerprint and a copy elsewhere keeps it. In a folder,
    the temporary siblings an unfinished :func:`atomic_output` leaves are not counted.
    ``algorithm``: ``sha256`` (what ``sha256sum`` prints) or ``xxh3_128`` (several times faster;
    for change detection). Raises ``FileNotFoundError`` for a missing path.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        digest = _hasher(algorithm)
        for child in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = child.relative_to(p)
            if any(_TMP_MARK in part for part in rel.parts):
                continue
            digest.update(rel.as_posix().encode("utf-8", "surrogateescape") + b"\0")
            digest.update(_file_digest(child, algorithm).encode())
        return f"{algorithm}:{digest.hexdigest()}"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return f"{algorithm}:{_file_digest(p, algorithm)}"


# --------------------------------------------------------------------------------------
# JSON diagnostics


def _excerpt(line: str, col: int | None = None) -> str:
    """A short ``repr`` of ``line``, centred on 1-based column ``col`` when given."""
    line = line.rstrip("\r\n")
    if col is None or len(line) <= 2 * _EXCERPT:
        text = line[: 2 * _EXCERPT]
        return repr(text) + ("..." if len(line) > len(text) else "")
    start = max(0, col - 1 - _EXCERPT)
    end = min(len(line), col - 1 + _EXCERPT)
    return ("..." if start else "") + repr(line[start:end]) + ("..." if end < len(line) else "")


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


def _check_json_line(raw: bytes, lineno: int = 2, offset: int = 0) -> tuple[Any, _BadLine | None]:
    """Parse one JSON Lines line: ``(record, None)`` or ``(None, problem)``.

    Blank lines give ``(None, None)`` and are ignored. A BOM is allowed on line 1.
    """
    problem = _text_problem(raw, lineno, offset, json_escapes=True)
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
        return None, _BadLine(lineno, reason, _excerpt(line, err.colno))
    except ValueError as err:  # from the hooks: duplicate key, number too large
        return None, _BadLine(lineno, f"invalid JSON record: {err}", _excerpt(line))
    if not isinstance(record, dict):
        kind = _KIND_NAMES.get(type(record), type(record).__name__)
        return None, _BadLine(lineno, f"expected a JSON object, got {kind}", _excerpt(line))
    return record, None


_KIND_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _type_conflict(
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


# --------------------------------------------------------------------------------------
# pass 2: text to Arrow


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


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def _read_json_bytes(data: bytes) -> pa.Table:
    """Parse JSON Lines bytes with pyarrow, exactly: text stays text (no timestamp inference)."""
    block = 1 << 20
    parse = pa_json.ParseOptions()
    while True:
        options = pa_json.ReadOptions(block_size=block)
        try:
            table = pa_json.read_json(
                pa.BufferReader(data), read_options=options, parse_options=parse
            )
        except _ARROW_ERRORS as err:
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


def _parse_json_piece(
    piece: bytes, offset: int, first_line: int, newlines: int, *, suspicious: bool
) -> tuple[pa.Table | None, list[_BadLine], Exception | None]:
    """Parse whole JSON Lines: ``(table of the good lines, bad lines, error combining them)``.

    pyarrow parses the piece first; only when it fails, or gives another number of rows than
    there are lines (it also accepts several objects on one line, or one over several lines),
    is every line checked with :mod:`json` to name the bad ones.
    """
    if not suspicious:
        try:
            table = _read_json_bytes(piece)
        except _ARROW_ERRORS:
            pass
        else:
            lines = newlines + (not piece.endswith(b"\n"))
            if table.num_rows == lines or table.num_rows == lines - _blank_lines_estimate(piece):
                return table, [], None
    good: list[bytes] = []
    bad: list[_BadLine] = []
    for lineno, line_offset, raw in _split_lines(piece, offset, first_line):
        record, problem = _check_json_line(raw, lineno, line_offset)
        if problem is not None:
            bad.append(problem)
        elif record is not None:
            good.append(raw)
    if not good:
        return None, bad, None
    try:
        return _read_json_bytes(b"\n".join(good) + b"\n"), bad, None
    except _ARROW_ERRORS as err:
        return None, bad, err


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
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
        return PoolFormatError(path, lineno, reason, _excerpt(source, where - start + 1))

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


def _read_text(data: bytes) -> str:
    text = data.decode("utf-8")
    return text[1:] if text.startswith("\ufeff") else text


def _starts_array(path: Path) -> bool:
    """Whether a JSON file holds one array (its first non-blank character is ``[``)."""
    with open(path, "rb") as fh:
        head = fh.read(len(_BOM))
        if head != _BOM:
            fh.seek(0)
        while chunk := fh.read(1 << 16):
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith(b"[")
    return False


class _TableSink:
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

    def __enter__(self) -> _TableSink:
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
class _Built:
    rows: int
    skipped: list[_BadLine]


def _bad_line_error(path: Path, bad: list[_BadLine], *, hint: str = "") -> PoolFormatError:
    first = bad[0]
    reason = first.reason
    if len(bad) > 1:
        reason += f" ({len(bad) - 1} more bad line(s); skip_bad_lines=True loads the rest)"
    return PoolFormatError(path, first.lineno, reason + hint, first.excerpt, offset=first.offset)


def _no_rows_error(path: Path) -> PoolFormatError:
    what = "it is empty" if path.stat().st_size == 0 else "it holds only blank lines"
    return PoolFormatError(path, None, f"the file holds no rows: {what}")


def _conflict_error(
    path: Path, records: Iterable[tuple[int, dict[str, Any]]], err: Exception
) -> PoolFormatError:
    found = _type_conflict(records)
    if found is None:
        return PoolFormatError(path, None, f"the rows cannot be read as one table: {err}")
    lineno, name, kind, value, earlier, earlier_line = found
    shown = repr(value)
    shown = shown if len(shown) <= 2 * _EXCERPT else shown[: 2 * _EXCERPT] + "..."
    return PoolFormatError(
        path,
        lineno,
        f"field {name!r} is {kind} ({shown}) but {earlier} in line {earlier_line}; a field "
        "must have one type in every row",
        field=name,
    )


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for piece, offset, first_line, _ in _line_chunks(path, CHUNK_BYTES):
        for lineno, line_offset, raw in _split_lines(piece, offset, first_line):
            record, _ = _check_json_line(raw, lineno, line_offset)
            if record is not None:
                yield lineno, record


def _changed(path: Path) -> RuntimeError:
    return RuntimeError(f"{path}: the file changed while it was being read; load it again")


def _build_json(path: Path, scan: _Scan, folder: Path, skip_bad_lines: bool) -> _Built:
    """Parse a JSON Lines file or a JSON array into ``folder/data.arrow``."""
    with _TableSink(folder) as sink:
        if _starts_array(path):
            return _build_json_array(path, scan, sink)
        return _build_json_lines(path, scan, sink, skip_bad_lines)


def _build_json_array(path: Path, scan: _Scan, sink: _TableSink) -> _Built:
    if scan.bad:
        raise _bad_line_error(
            path, scan.bad, hint=" (skip_bad_lines applies to JSON Lines, one record a line)"
        )
    data = path.read_bytes()
    if xxhash.xxh3_128(data).hexdigest() != scan.digest:
        raise _changed(path)
    text = _read_text(data)
    del data
    lines: list[bytes] = []
    size = 0
    try:
        for _, record in _iter_json_array(path, text):
            try:
                lines.append(_DUMPS(record).encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate escape, which json.loads accepts
                raise _first_text_problem(path) from None
            size += len(lines[-1]) + 1
            if size >= CHUNK_BYTES:
                sink.add(_read_json_bytes(b"\n".join(lines) + b"\n"))
                lines, size = [], 0
        if lines:
            sink.add(_read_json_bytes(b"\n".join(lines) + b"\n"))
    except _ARROW_ERRORS as err:
        raise _conflict_error(path, _iter_json_array(path, text), err) from None
    if sink.rows == 0:
        raise PoolFormatError(path, None, "the file holds no rows: the array is empty")
    sink.finish(sink.folder / "data.arrow")
    return _Built(sink.rows, [])


def _first_text_problem(path: Path) -> PoolFormatError:
    """The error for the first line of ``path`` with invalid UTF-8 or a lone surrogate."""
    for piece, offset, first_line, _ in _line_chunks(path, CHUNK_BYTES):
        for lineno, line_offset, raw in _split_lines(piece, offset, first_line):
            problem = _text_problem(raw, lineno, line_offset, json_escapes=True)
            if problem is not None:
                return _bad_line_error(path, [problem])
    return PoolFormatError(path, None, "holds text that cannot be stored as UTF-8")


def _build_json_lines(path: Path, scan: _Scan, sink: _TableSink, skip_bad_lines: bool) -> _Built:
    digest = xxhash.xxh3_128()
    conflict: Exception | None = None
    bad: dict[int, _BadLine] = {b.lineno: b for b in scan.bad}
    known = sorted(bad)
    for piece, offset, first_line, newlines in _line_chunks(path, CHUNK_BYTES):
        digest.update(piece)
        last_line = first_line + newlines
        at = bisect.bisect_left(known, first_line)
        suspicious = at < len(known) and known[at] <= last_line
        table, piece_bad, err = _parse_json_piece(
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
            except _ARROW_ERRORS as add_err:
                conflict = add_err
    if digest.hexdigest() != scan.digest:
        raise _changed(path)
    skipped = [bad[n] for n in sorted(bad)]
    if skipped and not skip_bad_lines:
        hint = ""
        if path.suffix.lower() == ".json" and skipped[0].lineno == 1:
            hint = " (a .json pool is JSON Lines, or one JSON array of objects)"
        raise _bad_line_error(path, skipped, hint=hint)
    if conflict is not None:
        raise _conflict_error(path, _jsonl_records(path), conflict)
    if sink.rows == 0:
        if skipped:
            first = skipped[0]
            raise PoolFormatError(path, first.lineno, "no valid line in the file", first.excerpt)
        raise _no_rows_error(path)
    sink.finish(sink.folder / "data.arrow")
    return _Built(sink.rows, skipped)


_CSV_CONVERT: dict[str, Any] = {
    "null_values": [""],
    "strings_can_be_null": True,
    "quoted_strings_can_be_null": False,
}


def _read_csv_bytes(data: bytes) -> pa.Table:
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
        except _ARROW_ERRORS as err:
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


def _build_csv(path: Path, scan: _Scan, folder: Path, skip_bad_lines: bool) -> _Built:
    data = path.read_bytes()
    if xxhash.xxh3_128(data).hexdigest() != scan.digest:
        raise _changed(path)
    skipped = list(scan.bad)
    if skipped:
        if skipped[0].lineno == 1:
            raise _bad_line_error(path, skipped, hint=" (the header line cannot be skipped)")
        drop = {b.lineno for b in skipped}
        data = b"\n".join(
            line for lineno, line in enumerate(data.split(b"\n"), start=1) if lineno not in drop
        )
    try:
        table = _read_csv_bytes(data)
    except _ARROW_ERRORS as err:
        if "Empty CSV file" in str(err):
            raise _no_rows_error(path) from None
        found = _csv_problem(_read_text(data))
        if found is None or skipped:
            raise PoolFormatError(path, None, f"cannot be read as CSV: {err}") from None
        lineno, reason = found
        raise PoolFormatError(path, lineno, reason) from None
    if table.num_rows == 0:
        raise PoolFormatError(path, None, "the file holds no rows: only a header line")
    with _TableSink(folder) as sink:
        sink.add(table)
        sink.finish(folder / "data.arrow")
    return _Built(table.num_rows, skipped)


# --------------------------------------------------------------------------------------
# the content-keyed cache


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    base = cache_dir if cache_dir is not None else datasets.config.HF_DATASETS_CACHE
    return Path(base).expanduser() / "hf_mig_pools"


def _cached_build(path: Path, root: Path, key: str, build: Any) -> tuple[Path, dict[str, Any]]:
    """The cache entry ``root/key`` (a folder with ``data.arrow`` and ``meta.json``).

    Built by ``build(folder) -> _Built`` in a temporary sibling and renamed into place, so an
    entry is complete or absent. ``key`` holds the hash of the file's bytes.
    """
    entry = root / key
    meta_path = entry / "meta.json"
    if meta_path.is_file():
        logger.info("%s: reusing the table cached at %s (same content hash)", path, entry)
        return entry, json.loads(meta_path.read_text(encoding="utf-8"))
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}{_TMP_MARK}{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        built: _Built = build(tmp)
        meta = {
            "rows": built.rows,
            "skipped": [[b.lineno, b.reason, b.excerpt, b.offset] for b in built.skipped],
            "reader_version": READER_VERSION,
        }
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if entry.exists() and not meta_path.is_file():
            _remove(entry)  # an incomplete entry (its meta.json was removed)
        try:
            os.rename(tmp, entry)
        except OSError:
            if not meta_path.is_file():
                raise
            # another process cached the same content first; theirs is as good
    finally:
        _remove(tmp)
    logger.info("%s: parsed %d rows, cached at %s", path, meta["rows"], entry)
    return entry, meta


def _warn_skipped(path: Path, skipped: list[_BadLine], rows: int) -> None:
    listed = ", ".join(str(b.lineno) for b in skipped[:_MAX_LISTED])
    if len(skipped) > _MAX_LISTED:
        listed += ", ..."
    message = (
        f"{path}: skipped {len(skipped)} malformed line(s): {listed}; "
        f"first: {skipped[0].reason}; loaded {rows} good line(s)"
    )
    logger.warning(message)
    warnings.warn(message, stacklevel=4)


_TEXT_KWARGS = ("cache_dir", "features", "keep_in_memory")


def _load_text_file(
    path: Path, kind: str, skip_bad_lines: bool, kwargs: dict[str, Any]
) -> datasets.Dataset:
    unknown = sorted(set(kwargs) - set(_TEXT_KWARGS))
    if unknown:
        raise TypeError(
            f"load_pool: {', '.join(unknown)} cannot be used with a local {path.suffix} file; "
            f"accepted: {', '.join(_TEXT_KWARGS)}"
        )
    scan = _scan_text(path, json_escapes=kind == "json")
    if scan.bad and not skip_bad_lines:
        raise _bad_line_error(path, scan.bad)
    if not scan.has_content and not scan.bad:
        raise _no_rows_error(path)
    build = _build_json if kind == "json" else _build_csv
    entry, meta = _cached_build(
        path,
        _cache_root(kwargs.get("cache_dir")),
        f"{kind}-{scan.digest}-r{READER_VERSION}",
        lambda folder: build(path, scan, folder, skip_bad_lines),
    )
    skipped = [
        _BadLine(lineno, reason, excerpt, offset)
        for lineno, reason, excerpt, offset in meta["skipped"]
    ]
    if skipped:
        if not skip_bad_lines:
            raise _bad_line_error(path, skipped)
        _warn_skipped(path, skipped, meta["rows"])
    dataset = datasets.Dataset.from_file(
        str(entry / "data.arrow"), in_memory=bool(kwargs.get("keep_in_memory"))
    )
    if kwargs.get("features") is not None:
        dataset = dataset.cast(kwargs["features"])
    return dataset


def _load_with_datasets(
    source: Path, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> datasets.Dataset:
    """``datasets.load_dataset(*args, **kwargs)`` with a cache folder keyed by ``key``.

    ``datasets`` keys local files by path and modification time only; a cache folder per
    content hash makes a rewritten file (same size and time, other bytes) load afresh.
    """
    kwargs = dict(kwargs)
    cache_dir = _cache_root(kwargs.pop("cache_dir", None)) / key
    before = set(cache_dir.rglob("*.arrow")) if cache_dir.is_dir() else set()
    dataset = datasets.load_dataset(*args, cache_dir=str(cache_dir), **kwargs)
    files = {Path(f["filename"]) for f in getattr(dataset, "cache_files", [])}
    if files and files <= before:
        logger.info("%s: reusing the table cached at %s (same content hash)", source, cache_dir)
    return dataset


# --------------------------------------------------------------------------------------
# public API


def load_pool(
    source: str | os.PathLike,
    split: str = "train",
    *,
    skip_bad_lines: bool = False,
    **kwargs: Any,
) -> datasets.Dataset:
    """Load a candidate pool as a :class:`datasets.Dataset`.

    ``source`` is tried, in order, as:

    1. a local file ending in ``.jsonl``, ``.json`` (JSON Lines or one JSON array of
       objects), ``.csv`` or ``.parquet``. A file is a single split: ``split`` is ignored.
    2. a local folder: one written by ``Dataset.save_to_disk`` is loaded with
       ``load_from_disk`` (a ``DatasetDict`` folder gives its ``split``); any other folder
       goes to ``datasets.load_dataset(folder, split=split)``.
    3. a Hub dataset id: ``datasets.load_dataset(source, split=split)``.

    JSON and CSV files are read by this module, exactly, before any work:

    * the bytes must be UTF-8 (a BOM is allowed) and JSON must not escape a lone UTF-16
      surrogate (``"\\ud800"``); each line is one JSON object (blank lines are ignored);
    * a field keeps one JSON type in every row (nulls fit any type; integers and floats are
      numbers; objects may have different keys, and a missing key reads as null);
    * numbers are parsed to the nearest float64 (what Python's :mod:`json` gives), integers to
      int64 (an integer outside the int64 range is read as a float64), and text stays text
      (date-like strings are not turned into timestamps);
    * CSV: an unquoted empty field is null and ``""`` is the empty string; column types are
      inferred (integers, floats, booleans, else text; date-like text stays text).

    A problem raises :class:`PoolFormatError` naming the file, the 1-based line and, where it
    applies, the byte offset or the field: invalid UTF-8, a lone surrogate, malformed JSON,
    a record that is not an object, a duplicate key, a field with two types, a wrong number of
    CSV fields, or a file that holds no rows. With ``skip_bad_lines=True`` the lines that
    cannot be read (bad encoding, malformed JSON; for CSV, bad encoding except on the header)
    are left out instead, and a warning (both :func:`warnings.warn` and a ``logging`` warning)
    says how many were skipped and which; type conflicts are always errors.

    The parsed table is cached as an Arrow file under ``<cache_dir>/hf_mig_pools`` (default
    ``datasets``' cache folder), keyed by a hash of the file's bytes (xxh3-128) and the reader
    version: a file rewritten in place always loads its new rows, and reuse is logged at INFO
    level. Each load reads the file once to hash it. Parquet files and plain folders go
    through ``datasets.load_dataset`` with a cache folder keyed the same way.

    ``kwargs``: for a local JSON or CSV file, ``cache_dir``, ``keep_in_memory`` (load the
    table into memory instead of memory-mapping the cache) and ``features`` (cast after
    loading); anything else raises :class:`TypeError`. For other sources they go to
    ``datasets.load_dataset`` (or ``load_from_disk`` for a saved folder).

    Raises :class:`FileNotFoundError` for a missing local file with a data extension, or when
    ``source`` is neither a local path nor reachable on the Hub; :class:`ValueError` for a
    local file with an unsupported extension or a missing split.
    """
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_file():
        builder = DATA_FILE_BUILDERS.get(suffix)
        if builder is None:
            raise ValueError(
                f"{path}: unsupported file extension {path.suffix!r}; "
                f"supported: {sorted(DATA_FILE_BUILDERS)} or a dataset folder"
            )
        if builder in ("json", "csv"):
            return _load_text_file(path, builder, skip_bad_lines, kwargs)
        dataset = _load_with_datasets(
            path,
            f"{builder}-{_file_digest(path, 'xxh3_128')}",
            (builder,),
            {"data_files": str(path), "split": "train", **kwargs},
        )
        if dataset.num_rows == 0:
            raise PoolFormatError(path, None, "the file holds no rows")
        return dataset
    if path.is_dir():
        if any((path / marker).is_file() for marker in _SAVED_MARKERS):
            loaded = datasets.load_from_disk(str(path), **kwargs)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(
                        f"{path}: no split {split!r} in this DatasetDict; splits: {list(loaded)}"
                    )
                return loaded[split]
            return loaded
        return _load_with_datasets(
            path,
            f"folder-{file_fingerprint(path, 'xxh3_128').partition(':')[2]}",
            (str(path),),
            {"split": split, **kwargs},
        )
    if suffix in DATA_FILE_BUILDERS:
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return datasets.load_dataset(str(source), split=split, **kwargs)
    except (OSError, DatasetNotFoundError) as err:
        raise FileNotFoundError(
            f"{str(source)!r} is not a local file or folder, and loading it as a Hub dataset "
            f"failed: {type(err).__name__}: {err}"
        ) from err


def save_dataset(
    dataset: datasets.Dataset, out: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Write ``dataset`` to ``out``, choosing the format by extension.

    Every format reads back through :func:`load_pool` to the same values:

    * ``.jsonl`` (JSON Lines) and ``.json`` (one array of objects, one per line), UTF-8
      without ``\\u`` escapes for non-ASCII text (except U+2028, U+2029 and U+0085, which
      some readers take for line ends), floats in their shortest exact form (``repr``),
      written in batches (the table is never held whole). Nested lists and structs and nulls
      are kept; types are re-inferred on load (integers as int64, floats as float64, float32
      values exactly; a column that is null or empty in every row comes back with a null
      type). Timestamps, dates and times are written as text (``2024-01-02 03:04:05``) and
      read back as text. A ``datasets.Json`` column is written as the JSON it holds. JSON has
      no NaN or infinity: such a value raises :class:`OutputFormatError` naming the row and
      the column; bytes, decimals, durations and maps raise it naming the columns, before
      anything is written (write ``.parquet`` or a folder instead).
    * ``.csv``: flat columns only (null, booleans, integers, floats, text); a nested or
      other column raises :class:`OutputFormatError` naming it. Floats are written with
      ``repr``, text always quoted, null as an empty field. The file is read back once before
      it is put in place, and a value that would come back different (CSV carries no types:
      ``"42"`` reads back as a number) raises :class:`OutputFormatError` naming the column
      and the row.
    * ``.parquet``: Arrow types and ``datasets`` features kept.
    * any other path: a folder written with ``save_to_disk``, everything kept.

    Checks that can fail on the schema run before anything is written. Parent folders are
    created. The output is written beside ``out`` and renamed when complete
    (:func:`atomic_output`): an existing ``out`` raises :class:`OutputExistsError` unless
    ``overwrite=True``, and a folder holding anything but a saved dataset is never replaced.
    """
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix in (".jsonl", ".json"):
        _json_plan(dataset.data.schema, target)
    elif suffix == ".csv":
        _check_csv_schema(dataset.data.schema, target)
    with atomic_output(out, overwrite=overwrite) as tmp:
        _write_dataset(dataset, tmp, suffix)


def _output_name(tmp: Path) -> Path:
    """The output that a temporary sibling made by :func:`atomic_output` stands for."""
    name = tmp.name
    if name.startswith(".") and _TMP_MARK in name:
        return tmp.with_name(name[1:].split(_TMP_MARK)[0])
    return tmp


def _write_dataset(dataset: datasets.Dataset, path: Path, suffix: str) -> None:
    """Write ``dataset`` to ``path`` (a temporary file or folder) in the format of ``suffix``."""
    out = _output_name(path)  # named in error messages
    if suffix not in DATA_FILE_BUILDERS:
        dataset.save_to_disk(str(path))
    elif suffix in (".jsonl", ".json"):
        plan = _json_plan(dataset.data.schema, out)
        _write_json(dataset, path, out, plan, array=suffix == ".json")
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        _write_csv(dataset, path, out)


# --------------------------------------------------------------------------------------
# writers


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
    if types.is_list(dtype) or types.is_large_list(dtype) or types.is_fixed_size_list(dtype):
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


def _json_plan(schema: pa.Schema, out: Path) -> _JsonPlan:
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


def _write_json(
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
        types.is_list(dtype)
        or types.is_large_list(dtype)
        or types.is_fixed_size_list(dtype)
        or types.is_struct(dtype)
        or types.is_map(dtype)
        or _is_json_extension(dtype)
    )


def _check_csv_schema(schema: pa.Schema, out: Path) -> None:
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


def _write_csv(dataset: datasets.Dataset, path: Path, out: Path) -> None:
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
    back = _read_csv_bytes(path.read_bytes()) if len(dataset) else None
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
