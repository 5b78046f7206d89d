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

The parts live in their own modules: :mod:`hf_mig.data.atomic` (atomic outputs),
:mod:`hf_mig.data.fingerprint` (content hashes), :mod:`hf_mig.data.text_scan` and
:mod:`hf_mig.data.exact_json` (checking text), :mod:`hf_mig.data.readers` (text to Arrow) and
:mod:`hf_mig.data.writers` (Arrow to text); their public names are importable from here too.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetNotFoundError

from hf_mig.data.atomic import (
    TMP_MARK,
    atomic_output,
    check_output,
    output_name,
    remove_path,
    rename_or_keep,
    temporary_folder,
    write_text_atomic,
)
from hf_mig.data.errors import OutputExistsError, OutputFormatError, PoolFormatError
from hf_mig.data.fingerprint import file_digest, file_fingerprint
from hf_mig.data.readers import Built, bad_line_error, no_rows_error
from hf_mig.data.readers import build_csv as _build_csv
from hf_mig.data.readers import build_json as _build_json
from hf_mig.data.text_scan import CHUNK_BYTES, BadLine, scan_text
from hf_mig.data.writers import (
    WRITE_BATCH_ROWS,
    check_csv_schema,
    json_plan,
    write_csv,
    write_json,
)

__all__ = [
    "CHUNK_BYTES",
    "DATA_FILE_BUILDERS",
    "READER_VERSION",
    "TMP_MARK",
    "WRITE_BATCH_ROWS",
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
_MAX_LISTED = 10  # bad line numbers quoted in a skip warning

#: Version of the text readers; part of every cache key, so a change to how files are parsed
#: never reuses tables parsed the old way.
READER_VERSION = 1


# --------------------------------------------------------------------------------------
# the content-keyed cache


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    base = cache_dir if cache_dir is not None else datasets.config.HF_DATASETS_CACHE
    return Path(base).expanduser() / "hf_mig_pools"


def _cached_build(path: Path, root: Path, key: str, build: Any) -> tuple[Path, dict[str, Any]]:
    """The cache entry ``root/key`` (a folder with ``data.arrow`` and ``meta.json``).

    Built by ``build(folder) -> Built`` in a temporary sibling and renamed into place, so an
    entry is complete or absent. ``key`` holds the hash of the file's bytes.
    """
    entry = root / key
    meta_path = entry / "meta.json"
    if meta_path.is_file():
        logger.info("%s: reusing the table cached at %s (same content hash)", path, entry)
        return entry, json.loads(meta_path.read_text(encoding="utf-8"))
    with temporary_folder(entry) as tmp:
        built: Built = build(tmp)
        meta = {
            "rows": built.rows,
            "skipped": [[b.lineno, b.reason, b.excerpt, b.offset] for b in built.skipped],
            "reader_version": READER_VERSION,
        }
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if entry.exists() and not meta_path.is_file():
            remove_path(entry)  # an incomplete entry (its meta.json was removed)
        # when another process cached the same content first, theirs is kept
        rename_or_keep(tmp, entry, lambda folder: (folder / "meta.json").is_file())
    logger.info("%s: parsed %d rows, cached at %s", path, meta["rows"], entry)
    return entry, meta


def _warn_skipped(path: Path, skipped: list[BadLine], rows: int) -> None:
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
    scan = scan_text(path, json_escapes=kind == "json")
    if scan.bad and not skip_bad_lines:
        raise bad_line_error(path, scan.bad)
    if not scan.has_content and not scan.bad:
        raise no_rows_error(path)
    build = _build_json if kind == "json" else _build_csv
    entry, meta = _cached_build(
        path,
        _cache_root(kwargs.get("cache_dir")),
        f"{kind}-{scan.digest}-r{READER_VERSION}",
        lambda folder: build(path, scan, folder, skip_bad_lines),
    )
    skipped = [
        BadLine(lineno, reason, excerpt, offset)
        for lineno, reason, excerpt, offset in meta["skipped"]
    ]
    if skipped:
        if not skip_bad_lines:
            raise bad_line_error(path, skipped)
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


def _file_builder(path: Path) -> str:
    """The kind of reader for a local data file (a value of :data:`DATA_FILE_BUILDERS`);
    ``ValueError`` naming the supported extensions for any other file."""
    builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"{path}: unsupported file extension {path.suffix!r}; "
            f"supported: {sorted(DATA_FILE_BUILDERS)} or a dataset folder"
        )
    return builder


def _load_data_file(path: Path, builder: str, kwargs: dict[str, Any]) -> datasets.Dataset:
    """A local data file read by ``datasets``' ``builder`` (``parquet``) as one split, cached
    by the file's content hash; :class:`PoolFormatError` when it holds no rows."""
    dataset = _load_with_datasets(
        path,
        f"{builder}-{file_digest(path, 'xxh3_128')}",
        (builder,),
        {"data_files": str(path), "split": "train", **kwargs},
    )
    if dataset.num_rows == 0:
        raise PoolFormatError(path, None, "the file holds no rows")
    return dataset


def _load_folder(path: Path, split: str, kwargs: dict[str, Any]) -> datasets.Dataset:
    """A local folder: one written by ``save_to_disk`` through ``load_from_disk`` (its
    ``split`` for a ``DatasetDict``, ``ValueError`` naming the splits when it lacks it), any
    other through ``datasets.load_dataset``, cached by the folder's content hash."""
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


def _load_from_hub(
    source: str | os.PathLike, split: str, kwargs: dict[str, Any]
) -> datasets.Dataset:
    """``split`` of the Hub dataset ``source``; ``FileNotFoundError`` (chained to the cause)
    when it cannot be loaded."""
    try:
        return datasets.load_dataset(str(source), split=split, **kwargs)
    except (OSError, DatasetNotFoundError) as err:
        raise FileNotFoundError(
            f"{str(source)!r} is not a local file or folder, and loading it as a Hub dataset "
            f"failed: {type(err).__name__}: {err}"
        ) from err


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
    if path.is_file():
        builder = _file_builder(path)
        if builder in ("json", "csv"):
            return _load_text_file(path, builder, skip_bad_lines, kwargs)
        return _load_data_file(path, builder, kwargs)
    if path.is_dir():
        return _load_folder(path, split, kwargs)
    if path.suffix.lower() in DATA_FILE_BUILDERS:
        raise FileNotFoundError(f"{path}: no such file")
    return _load_from_hub(source, split, kwargs)


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
        json_plan(dataset.data.schema, target)
    elif suffix == ".csv":
        check_csv_schema(dataset.data.schema, target)
    with atomic_output(out, overwrite=overwrite) as tmp:
        _write_dataset(dataset, tmp, suffix)


def _write_dataset(dataset: datasets.Dataset, path: Path, suffix: str) -> None:
    """Write ``dataset`` to ``path`` (a temporary file or folder) in the format of ``suffix``."""
    out = output_name(path)  # named in error messages
    if suffix not in DATA_FILE_BUILDERS:
        dataset.save_to_disk(str(path))
    elif suffix in (".jsonl", ".json"):
        plan = json_plan(dataset.data.schema, out)
        write_json(dataset, path, out, plan, array=suffix == ".json")
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        write_csv(dataset, path, out)
