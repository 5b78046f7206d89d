"""Reading candidate pools and writing selected subsets.

:func:`load_pool` accepts a local data file, a folder written by ``save_to_disk`` (or any
local folder ``datasets.load_dataset`` understands), or a Hub dataset id. JSON input that
``datasets`` cannot parse is re-scanned with :mod:`json` so that the error names the file and
the 1-based line of the first malformed record (:class:`PoolFormatError`), instead of an
Arrow error without context. :func:`save_dataset` writes by file extension.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

__all__ = [
    "DATA_FILE_BUILDERS",
    "OutputExistsError",
    "PoolFormatError",
    "atomic_output",
    "check_output",
    "load_pool",
    "save_dataset",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

#: File extensions read and written as data files, and the ``datasets`` builder for each.
DATA_FILE_BUILDERS: dict[str, str] = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}

_SAVED_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
_EXCERPT = 40  # characters of context on each side of a JSON error
_MAX_LISTED = 10  # bad line numbers quoted in a skip warning


class PoolFormatError(ValueError):
    """A pool file holds malformed records.

    Attributes: ``path`` (the file), ``lineno`` (1-based line of the first bad record) and
    ``reason`` (what is wrong with it).
    """

    def __init__(self, path: str | os.PathLike, lineno: int, reason: str, excerpt: str) -> None:
        self.path = str(path)
        self.lineno = lineno
        self.reason = reason
        super().__init__(f"{self.path}: line {lineno}: {reason}; near: {excerpt}")


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


def _check_json_line(raw: bytes) -> tuple[Any, tuple[str, str] | None]:
    """Parse one JSON Lines line: ``(record, None)`` or ``(None, (reason, excerpt))``.

    Blank lines give ``(None, None)`` and are ignored, as ``datasets`` ignores them.
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        excerpt = _excerpt(raw.decode("utf-8", "replace"))
        return None, (f"invalid UTF-8 at byte {err.start}", excerpt)
    if not line.strip():
        return None, None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return None, (f"invalid JSON ({err.msg} at column {err.colno})", _excerpt(line, err.colno))
    if not isinstance(record, dict):
        return None, (f"expected a JSON object, got a JSON {type(record).__name__}", _excerpt(line))
    return record, None


def _scan_json_lines(path: Path) -> tuple[list[bytes], list[tuple[int, str, str]]]:
    """Split a JSON Lines file into its good lines and its bad ones (lineno, reason, excerpt)."""
    good: list[bytes] = []
    bad: list[tuple[int, str, str]] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            _, problem = _check_json_line(raw)
            if problem is not None:
                bad.append((lineno, *problem))
            elif raw.strip():
                good.append(raw if raw.endswith(b"\n") else raw + b"\n")
    return good, bad


def _is_json_array(path: Path) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith(b"[")
    return False


def _json_array_error(path: Path) -> PoolFormatError | None:
    """The first syntax error in a file meant to hold one JSON array, if any."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        line = text.splitlines()[err.lineno - 1] if text.splitlines() else ""
        return PoolFormatError(
            path,
            err.lineno,
            f"invalid JSON ({err.msg} at column {err.colno})",
            _excerpt(line, err.colno),
        )
    return None


def _load_good_lines(path: Path, good: list[bytes], **kwargs: Any) -> datasets.Dataset:
    """Load pre-validated JSON lines with the same ``json`` builder, fully in memory."""
    kwargs.pop("cache_dir", None)
    kwargs.pop("keep_in_memory", None)
    with tempfile.TemporaryDirectory(prefix="hf_mig_pool_") as tmp:
        clean = Path(tmp) / (path.stem + ".jsonl")
        with open(clean, "wb") as fh:
            fh.writelines(good)
        return datasets.load_dataset(
            "json",
            data_files=str(clean),
            split="train",
            cache_dir=str(Path(tmp) / "cache"),
            keep_in_memory=True,
            **kwargs,
        )


def _load_json(path: Path, skip_bad_lines: bool, **kwargs: Any) -> datasets.Dataset:
    try:
        return datasets.load_dataset("json", data_files=str(path), split="train", **kwargs)
    except (DatasetGenerationError, ValueError) as err:
        original = err
    if _is_json_array(path):
        problem = _json_array_error(path)
        if problem is not None:
            raise problem from original
        raise original
    good, bad = _scan_json_lines(path)
    if not bad:
        raise original
    if not skip_bad_lines:
        lineno, reason, excerpt = bad[0]
        more = f" ({len(bad) - 1} more bad line(s); skip_bad_lines=True loads the rest)"
        raise PoolFormatError(
            path, lineno, reason + (more if len(bad) > 1 else ""), excerpt
        ) from original
    if not good:
        raise PoolFormatError(path, bad[0][0], "no valid line in the file", bad[0][2]) from original
    numbers = [b[0] for b in bad]
    listed = ", ".join(map(str, numbers[:_MAX_LISTED]))
    if len(bad) > _MAX_LISTED:
        listed += ", ..."

    message = (
        f"{path}: skipped {len(bad)} malformed line(s): {listed}; "
        f"first: {bad[0][1]}; loaded {len(good)} good line(s)"
    )
    logger.warning(message)
    warnings.warn(message, stacklevel=3)
    return _load_good_lines(path, good, **kwargs)


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
       objects), ``.parquet`` or ``.csv``. A file is a single split: ``split`` is ignored.
    2. a local folder: one written by ``Dataset.save_to_disk`` is loaded with
       ``load_from_disk`` (a ``DatasetDict`` folder gives its ``split``); any other folder
       goes to ``datasets.load_dataset(folder, split=split)``.
    3. a Hub dataset id: ``datasets.load_dataset(source, split=split)``.

    ``kwargs`` go to ``datasets.load_dataset`` (or ``load_from_disk`` for a saved folder).

    JSON errors: when ``datasets`` cannot parse a JSON file, the file is scanned with the
    :mod:`json` module and :class:`PoolFormatError` is raised with the path, the 1-based line
    of the first malformed record, the parser's message and an excerpt of the line. With
    ``skip_bad_lines=True`` (JSON Lines only) the malformed lines are left out instead and a
    warning (both :func:`warnings.warn` and a ``logging`` warning) says how many were skipped
    and which; the good lines are loaded in memory. Other errors propagate unchanged.

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
        if builder == "json":
            return _load_json(path, skip_bad_lines, **kwargs)
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
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
        return datasets.load_dataset(str(path), split=split, **kwargs)
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

    ``.jsonl``: JSON Lines; ``.json``: one JSON array of objects (any size; read back by
    :func:`load_pool`); ``.parquet``; ``.csv``. Any other path is a folder written with
    ``save_to_disk`` (read back by :func:`load_pool` too). Parent folders are created. JSON is
    written as UTF-8 without ``\\u`` escapes for non-ASCII text.

    The output is written beside ``out`` and renamed when complete (:func:`atomic_output`): an
    existing ``out`` raises :class:`OutputExistsError` unless ``overwrite=True``, and a folder
    holding anything but a saved dataset is never replaced.
    """
    with atomic_output(out, overwrite=overwrite) as tmp:
        _write_dataset(dataset, tmp, Path(out).suffix.lower())


def _write_dataset(dataset: datasets.Dataset, path: Path, suffix: str) -> None:
    if suffix not in DATA_FILE_BUILDERS:
        dataset.save_to_disk(str(path))
        return
    if suffix == ".jsonl":
        dataset.to_json(str(path), lines=True, force_ascii=False)
    elif suffix == ".json":
        _write_json_array(dataset, path)
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.to_csv(str(path), index=False)


def _write_json_array(dataset: datasets.Dataset, path: Path) -> None:
    """Stream ``dataset`` into ``path`` as one JSON array, one record per line.

    ``Dataset.to_json(lines=False)`` writes one array per batch, so records are first written
    as JSON Lines next to the target and then wrapped into a single array.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".jsonl", dir=path.parent)
    os.close(fd)
    try:
        dataset.to_json(tmp_name, lines=True, force_ascii=False)
        with open(tmp_name, "rb") as src, open(path, "wb") as dst:
            dst.write(b"[")
            first = True
            for line in src:
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                dst.write(b"\n" if first else b",\n")
                dst.write(line)
                first = False
            dst.write(b"\n]\n")
    finally:
        os.unlink(tmp_name)
