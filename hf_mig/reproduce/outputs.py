"""Checks of a step's output file: present, non-empty and well-formed for its kind.

:func:`inspect_output` is what :class:`~hf_mig.reproduce.plan.Plan` uses to judge an output it
did not mark as its own (made elsewhere, or by an older version of the plan), and what the
runner uses to refuse a step that exits 0 but leaves an empty or truncated file.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OutputCheck", "inspect_output"]

_DATASET_FOLDER_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")


@dataclass(frozen=True)
class OutputCheck:
    """``ok``: the output is usable; ``text``: what was found (``427 rows``, ``empty file``)."""

    ok: bool
    text: str


def _edge_lines(path: Path) -> tuple[int, bytes, bytes]:
    """(number of non-blank lines, first non-blank line, last non-blank line) of a text file."""
    count, first, last = 0, b"", b""
    tail = b""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            for line in lines:
                if line.strip():
                    count += 1
                    first = first or line
                    last = line
    if tail.strip():
        count += 1
        first = first or tail
        last = tail
    return count, first, last


def _json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def _inspect_file(path: Path) -> OutputCheck:
    size = path.stat().st_size
    if size == 0:
        return OutputCheck(False, "empty file (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, first, last = _edge_lines(path)
        if not rows:
            return OutputCheck(False, "no records (blank lines only)")
        for where, line in (("first", first), ("last", last)):
            if not _json_object(line):
                return OutputCheck(
                    False, f"the {where} record is not a complete JSON object (truncated?)"
                )
        return OutputCheck(True, f"{rows:,} rows")
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return OutputCheck(False, f"invalid JSON ({err})")
        if isinstance(data, (list, dict)) and not data:
            return OutputCheck(False, f"an empty JSON {type(data).__name__}")
        if isinstance(data, list):
            return OutputCheck(True, f"JSON list of {len(data):,}")
        return OutputCheck(True, f"JSON {type(data).__name__}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_metadata(path).num_rows
        except Exception as err:  # pyarrow raises several types for a damaged file
            return OutputCheck(False, f"unreadable Parquet ({type(err).__name__}: {err})")
        return OutputCheck(rows > 0, f"{rows:,} rows")
    if suffix == ".csv":
        rows, _, _ = _edge_lines(path)
        return OutputCheck(rows > 1, f"{max(rows - 1, 0):,} rows")
    if suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                broken = archive.testzip()
        except (zipfile.BadZipFile, OSError) as err:
            return OutputCheck(False, f"not a readable .npz archive ({err})")
        if broken is not None or not names:
            return OutputCheck(False, f"damaged .npz archive (member {broken!r})")
        return OutputCheck(True, f".npz with {len(names)} arrays")
    return OutputCheck(True, f"{size:,} bytes")


def _inspect_folder(path: Path) -> OutputCheck:
    if any((path / name).is_file() for name in _DATASET_FOLDER_FILES):
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as err:  # datasets raises several types for a damaged folder
            return OutputCheck(False, f"unreadable dataset folder ({type(err).__name__}: {err})")
        rows = sum(map(len, loaded.values())) if isinstance(loaded, dict) else len(loaded)
        return OutputCheck(rows > 0, f"dataset folder, {rows:,} rows")
    if not any(path.iterdir()):
        return OutputCheck(False, "empty folder")
    return OutputCheck(True, "folder")


def inspect_output(path: str | os.PathLike) -> OutputCheck:
    """Whether ``path`` holds a usable output, judged by its kind (its suffix).

    Every file must be non-empty. ``.jsonl``: at least one record, the first and the last a
    complete JSON object (a cut-off write fails), rows counted; ``.json``: parses, and is not an
    empty list or object; ``.parquet``: readable footer, at least one row; ``.csv``: a header and
    a row; ``.npz``: a readable zip archive with at least one array. A folder saved by
    ``save_to_disk`` must load and hold rows; any other folder must not be empty. A missing path
    is not usable.
    """
    p = Path(path)
    if p.is_dir():
        return _inspect_folder(p)
    if p.is_file():
        return _inspect_file(p)
    if p.exists() or p.is_symlink():
        return OutputCheck(False, "not a regular file or folder")
    return OutputCheck(False, "missing")
