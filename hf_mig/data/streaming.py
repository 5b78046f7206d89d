"""Pools read in Arrow batches, never whole: Parquet files or a ``datasets.IterableDataset``.

:class:`StreamingPool` gives a pool's column names, its size when the files say it, its batches
(a few columns at a time) and a content key. A folder is read as ``datasets.load_dataset``
reads it (:func:`hf_mig.data.io.load_pool`): the same files of the same split, in the same
order, with the same column types. :func:`pool_encoding` encodes the label and score
columns into memory-mapped ``.npy`` files (:mod:`hf_mig.core.disk_csr`) cached by content: the
key holds the Parquet files' bytes (their :func:`~hf_mig.data.fingerprint.file_digest`, in
reading order), the vocabulary and the column names, never a path or a modification time, so
the same files copied elsewhere reuse the entry and a rewritten file gets a new one.
:func:`write_rows` is the second pass: it writes chosen rows, in the order given, to any
format :func:`~hf_mig.data.io.save_dataset` writes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datasets.data_files import EmptyDatasetError
from datasets.table import table_cast
from tqdm.auto import tqdm

from hf_mig.core.config import cache_root
from hf_mig.core.disk_csr import FORMAT_VERSION, META_FILE, encode_batches, open_encoding
from hf_mig.core.encoding import DegeneratePoolError, PoolEncoding, distinct_labels
from hf_mig.data.atomic import remove_path, rename_or_keep, temp_sibling
from hf_mig.data.atomic import temporary_folder as _temporary_folder
from hf_mig.data.fingerprint import file_digest

__all__ = [
    "BATCH_ROWS",
    "StreamingPool",
    "encoding_cache_dir",
    "pool_encoding",
    "pool_labels",
    "write_rows",
]

logger = logging.getLogger(__name__)

#: Rows read at once.
BATCH_ROWS = 1 << 18
_DIGEST = "xxh3_128"
_NOTHING = "there is nothing to select"


def _split_files(path: Path, split: str) -> tuple[list[Path], pa.Schema]:
    """The Parquet files that ``datasets.load_dataset(path, split=split)`` reads, in its order
    (a single file: itself, whatever ``split``), and the Arrow schema it casts them to."""
    if path.is_file():
        return [path], datasets.Features.from_arrow_schema(pq.read_schema(path)).arrow_schema
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Parquet file or folder")
    try:
        builder = datasets.load_dataset_builder(str(path))
    except EmptyDatasetError as err:
        raise ValueError(f"{path}: the folder holds no .parquet file") from err
    found = {str(name): list(files) for name, files in (builder.config.data_files or {}).items()}
    if split not in found:
        raise ValueError(
            f"{path}: no split {split!r} in this folder; datasets finds the splits {list(found)}"
        )
    files = [Path(f) for f in found[split]]
    other = [f for f in files if f.suffix.lower() != ".parquet"]
    if other or not files:
        raise ValueError(
            f"{path}: split {split!r} is read from {other[0] if other else 'no file'}, not from "
            "Parquet files; streaming selection reads Parquet files (.parquet): convert the pool "
            "first (e.g. hf-mig convert, or Dataset.to_parquet), or load it in memory"
        )
    features = builder.info.features  # else the first file of the first split, as datasets
    if features is None:
        first = next(iter(found.values()))[0]
        features = datasets.Features.from_arrow_schema(pq.read_schema(first))
    return files, features.arrow_schema


def _exact_cast(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether every ``src`` value becomes the same value of type ``dst`` (an integer beyond
    float64's exact range raises on the cast, in memory as here, rather than change)."""
    t = pa.types
    if src.equals(dst) or t.is_null(src):
        return True
    if t.is_dictionary(src):  # read as its values (datasets' features hold the value type)
        return _exact_cast(src.value_type, dst)
    if t.is_integer(src) and t.is_integer(dst):
        return dst.bit_width > src.bit_width and not (
            t.is_signed_integer(src) and t.is_unsigned_integer(dst)
        )
    if t.is_integer(src) and t.is_floating(dst):
        return dst.bit_width == 64 or (dst.bit_width == 32 and src.bit_width <= 16)
    if t.is_floating(src) and t.is_floating(dst):
        return dst.bit_width >= src.bit_width
    kind = _kind(src)
    if kind is None or kind != _kind(dst):
        return False
    if kind == "list":
        return _exact_cast(src.value_type, dst.value_type)
    if kind == "struct":
        names = {src.field(i).name for i in range(src.num_fields)}
        if names != {dst.field(i).name for i in range(dst.num_fields)}:
            return False
        return all(_exact_cast(src.field(n).type, dst.field(n).type) for n in names)
    return True  # text or bytes, of either offset width


def _kind(kind: pa.DataType) -> str | None:
    t = pa.types
    if t.is_string(kind) or t.is_large_string(kind):
        return "text"
    if t.is_binary(kind) or t.is_large_binary(kind):
        return "bytes"
    if t.is_list(kind) or t.is_large_list(kind):
        return "list"
    return "struct" if t.is_struct(kind) else None


def _columns_to_cast(file: Path, schema: pa.Schema, target: pa.Schema, first: Path) -> list[str]:
    """The columns of ``file`` whose type differs from ``target``'s but casts to it exactly;
    other columns, or another type, raise naming the file, the column and both types."""
    if sorted(schema.names) != sorted(target.names):
        raise ValueError(
            f"{file}: columns {schema.names} differ from those of {first} ({target.names}); "
            "every Parquet file of a pool has the same columns"
        )
    cast = []
    for name in target.names:
        src, dst = schema.field(name).type, target.field(name).type
        if src.equals(dst):
            continue
        if not _exact_cast(src, dst):
            raise ValueError(
                f"{file}: column {name!r} is {src}, but the pool reads it as {dst} (its type in "
                f"{first}); datasets casts every file to that type and not every {src} value "
                f"fits: write the column as {dst} in every file"
            )
        cast.append(name)
    return cast


class StreamingPool:
    """A pool read in batches: a Parquet file, a folder of them or a
    ``datasets.IterableDataset`` (rows in its iteration order, which must be the same on every
    pass: do not shuffle it).

    A folder is read as ``datasets.load_dataset(folder, split=split)`` reads it (and so
    :func:`hf_mig.data.io.load_pool`): the files of ``split`` (default ``"train"``; files and
    folders named ``train``, ``test``, ... make the splits, a folder without such names is one
    ``train`` split), in datasets' order, rows numbered across files; a missing split raises
    naming the splits found. Every file is read with the column types of the first file (of the
    first split, or the features of the folder's dataset card), as datasets casts them: a file
    whose column has another type that does not convert exactly (``double`` where the first
    file has ``int64``, ...) raises naming the file, the column and both types before any row
    is read. ``split`` is not used for a single file or an iterable dataset.

    ``column_names`` (a list: a pool without rows raises
    :class:`~hf_mig.core.encoding.DegeneratePoolError` here), ``num_rows`` (``None`` for an
    iterable dataset), ``schema`` (the Arrow schema rows are read with; ``None`` for an
    iterable dataset), :meth:`batches`, :meth:`content_key`.
    """

    def __init__(
        self, source: str | os.PathLike | datasets.IterableDataset, split: str = "train"
    ) -> None:
        self.source = source
        self.split = split
        self.files: list[Path] = []
        self.schema: pa.Schema | None = None
        if isinstance(source, datasets.IterableDataset):
            first = next(iter(source.with_format("arrow").iter(batch_size=1)), None)
            if first is None:
                raise DegeneratePoolError(f"the pool has no rows: {_NOTHING} (the stream is empty)")
            self.column_names: list[str] = list(source.column_names or first.column_names)
            self.num_rows: int | None = None
            return
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(
                f"expected a Parquet file or folder or a datasets.IterableDataset, got "
                f"{type(source).__name__}"
            )
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() != ".parquet":
            raise ValueError(
                f"{path}: streaming selection reads Parquet files (.parquet); convert the pool "
                "first (e.g. hf-mig convert, or Dataset.to_parquet), or load it in memory"
            )
        self.files, self.schema = _split_files(path, split)
        metas = [pq.read_metadata(f) for f in self.files]
        self._cast = [
            _columns_to_cast(f, m.schema.to_arrow_schema(), self.schema, self.files[0])
            for f, m in zip(self.files, metas)
        ]
        self.column_names = list(self.schema.names)
        self.num_rows = sum(meta.num_rows for meta in metas)
        if not self.num_rows:
            raise DegeneratePoolError(f"{path}: the pool has no rows: {_NOTHING}")

    def __repr__(self) -> str:
        if self.files:
            return f"StreamingPool({len(self.files)} Parquet file(s), {self.num_rows:,} rows)"
        return f"StreamingPool({type(self.source).__name__})"

    def check_columns(self, columns: Sequence[str], what: str = "selection") -> None:
        """Refuse, before reading rows, columns the pool does not have (when it knows)."""
        if self.column_names is None:
            return
        for name in columns:
            if name not in self.column_names:
                raise ValueError(
                    f"column {name!r} not found; the pool has columns {self.column_names} ({what})"
                )

    def batches(
        self,
        columns: Sequence[str] | None = None,
        batch_size: int = BATCH_ROWS,
        *,
        dictionary: Sequence[str] = (),
    ) -> Iterator[pa.Table]:
        """The pool's rows in order, ``batch_size`` at a time, as Arrow tables of ``columns``
        (``None``: all, in the pool's column order and with its schema). Columns are read with
        the pool's types (see the class). List-of-string ``dictionary`` columns of Parquet files
        are read dictionary-encoded (the labels of a row are then looked up once per file
        chunk)."""
        if not self.files:
            ds = self.source
            if columns is not None:
                ds = ds.select_columns(list(columns))
            yield from ds.with_format("arrow").iter(batch_size=batch_size)
            return
        names = list(columns) if columns is not None else self.column_names
        for file, cast in zip(self.files, self._cast):
            cast = [name for name in cast if name in names]
            read = [name for name in dictionary if name not in cast]
            pf = pq.ParquetFile(file, read_dictionary=self._leaf_paths(file, read))
            for batch in pf.iter_batches(batch_size=batch_size, columns=names):
                table = pa.Table.from_batches([batch]).select(names)
                for name in cast:  # datasets' own cast, as load_dataset applies it
                    one = table_cast(table.select([name]), pa.schema([self.schema.field(name)]))
                    table = table.set_column(names.index(name), name, one.column(0))
                yield table.replace_schema_metadata(self.schema.metadata)

    @staticmethod
    def _leaf_paths(file: Path, columns: Sequence[str]) -> list[str] | None:
        if not columns:
            return None
        schema = pq.read_schema(file)
        paths = []
        parquet_schema = pq.read_metadata(file).schema
        for name in columns:
            kind = schema.field(name).type if name in schema.names else None
            if kind is None or not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
                continue
            if not pa.types.is_string(kind.value_type):
                continue
            paths += [
                parquet_schema.column(i).path
                for i in range(len(parquet_schema))
                if parquet_schema.column(i).path.split(".")[0] == name
            ]
        return paths or None

    def content_key(self) -> str | None:
        """Digest of the Parquet files' bytes in reading order (``None`` for an iterable
        dataset: it has no files to hash); the files are read once per object."""
        if not self.files:
            return None
        known = getattr(self, "_content_key", None)
        if known is None:
            digest = xxhash.xxh3_128()
            for file in self.files:
                digest.update(file_digest(file, _DIGEST).encode() + b"\0")
            known = self._content_key = digest.hexdigest()
        return known


def encoding_cache_dir(cache: bool | str | os.PathLike = True) -> Path | None:
    """Where encodings are cached: ``True`` -> ``$HF_MIG_CACHE/encodings``, a folder, or
    ``None`` for ``False`` (no cache)."""
    if cache is False:
        return None
    return cache_root() / "encodings" if cache is True else Path(cache).expanduser()


def _key(*parts: Any) -> str:
    return xxhash.xxh3_128(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _cached(
    pool: StreamingPool, cache: bool | str | os.PathLike, key_parts: Sequence[Any], name: str
) -> Path | None:
    """The cache entry for ``key_parts`` of ``pool`` (``None``: not cacheable)."""
    root = encoding_cache_dir(cache)
    content = pool.content_key()
    if root is None or content is None:
        return None
    return root / f"{name}-{_key(content, *key_parts)}"


def pool_labels(
    pool: StreamingPool,
    labels_column: str = "labels",
    *,
    cache: bool | str | os.PathLike = True,
    batch_size: int = BATCH_ROWS,
    progress: bool | None = None,
) -> list[str]:
    """Sorted distinct labels of the pool's label column, read in one pass (cached by
    content); null, empty or whitespace-only labels raise naming the row."""
    entry = _cached(pool, cache, [FORMAT_VERSION, labels_column], "labels")
    if entry is not None and (entry / "labels.json").is_file():
        return json.loads((entry / "labels.json").read_text(encoding="utf-8"))
    pool.check_columns([labels_column])
    found: set[str] = set()
    first_row = 0
    for table in _progress(pool, [labels_column], batch_size, progress, "MIG labels"):
        found.update(distinct_labels(table, labels_column, first_row=first_row))
        first_row += table.num_rows
    labels = sorted(found)
    if entry is not None:
        with _temporary_folder(entry) as tmp:
            (tmp / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
            _put(tmp, entry, "labels.json")
    return labels


def _progress(pool, columns, batch_size, progress, desc) -> Iterator[pa.Table]:
    show = progress if progress is not None else (pool.num_rows or 0) > 2_000_000
    with tqdm(total=pool.num_rows, desc=desc, unit="row", disable=not show) as bar:
        for table in pool.batches(columns, batch_size, dictionary=(columns or [])[:1]):
            yield table
            bar.update(table.num_rows)


def _put(tmp: Path, entry: Path, marker: str) -> None:
    """Rename a finished ``tmp`` onto ``entry``; an incomplete ``entry`` is replaced first, a
    complete one (another process finished first) kept."""
    if entry.exists() and not (entry / marker).is_file():
        remove_path(entry)
    rename_or_keep(tmp, entry, lambda folder: (folder / marker).is_file())


def pool_encoding(
    pool: StreamingPool,
    vocabulary: Sequence[str],
    *,
    labels_column: str = "labels",
    score_column: str = "score",
    cost_column: str | None = None,
    cache: bool | str | os.PathLike = True,
    batch_size: int = BATCH_ROWS,
    progress: bool | None = None,
) -> tuple[PoolEncoding, np.ndarray | None]:
    """The pool encoded against ``vocabulary`` (:func:`hf_mig.core.disk_csr.encode_batches`),
    memory-mapped, and its costs (with ``cost_column``; else ``None``).

    Cached by content in ``cache`` (see :func:`encoding_cache_dir`): a later call with the
    same Parquet bytes, vocabulary and columns maps the files without reading the pool. An
    iterable dataset (or ``cache=False``) is encoded into a temporary folder that is removed
    once mapped.
    """
    columns = [labels_column, score_column] + ([cost_column] if cost_column else [])
    pool.check_columns(columns)
    vocabulary = list(vocabulary)
    parts = [FORMAT_VERSION, _key(vocabulary), labels_column, score_column, cost_column]
    entry = _cached(pool, cache, parts, "csr")
    if entry is not None and (entry / META_FILE).is_file():
        logger.info("MIG: reusing the pool's encoding cached at %s (same content)", entry)
        return open_encoding(entry, vocabulary)

    def encode(folder: Path) -> None:
        encode_batches(
            pool.batches(columns, batch_size, dictionary=[labels_column]),
            vocabulary,
            folder,
            labels_column=labels_column,
            score_column=score_column,
            cost_column=cost_column,
            total_rows=pool.num_rows,
            progress=progress,
        )

    if entry is None:  # not cached: map the files, then let them go
        with _temporary_folder(
            (encoding_cache_dir(cache) or encoding_cache_dir(True)) / "csr"
        ) as tmp:
            encode(tmp)
            return open_encoding(tmp, vocabulary)
    with _temporary_folder(entry) as tmp:
        encode(tmp)
        _put(tmp, entry, META_FILE)
    return open_encoding(entry, vocabulary)


def write_rows(
    pool: StreamingPool,
    indices: np.ndarray,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    batch_size: int = BATCH_ROWS,
    finish: Callable[[datasets.Dataset, np.ndarray], datasets.Dataset] | None = None,
    progress: bool | None = None,
) -> datasets.Dataset:
    """Write the pool's rows ``indices`` (positions, in that order) to ``out`` without
    loading the pool: one pass gathers them, in pool order, into an Arrow file beside ``out``;
    the output is then written from it in the order of ``indices`` by
    :func:`hf_mig.data.io.save_dataset` (any of its formats, atomically; an existing ``out``
    is refused unless ``overwrite``). ``finish(rows, order)``, when given, returns the dataset
    to write from the gathered rows and the positions in them of ``indices`` (default:
    ``rows.select(order)``). Returns the gathered rows (memory-mapped, valid until the process
    ends)."""
    from hf_mig.data.io import check_output, save_dataset

    final = check_output(out, overwrite=overwrite)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or (pool.num_rows and indices.max() >= pool.num_rows)):
        raise ValueError(f"row indices must lie in [0, {pool.num_rows}), got {indices.max()}")
    order = np.argsort(indices, kind="stable")
    wanted = indices[order]
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    gathered = temp_sibling(final, ".arrow")
    try:
        _gather(pool, wanted, gathered, batch_size, progress)
        rows = datasets.Dataset.from_file(str(gathered))
        subset = finish(rows, position) if finish is not None else rows.select(position)
        save_dataset(subset, final, overwrite=overwrite)
    finally:
        remove_path(gathered)  # mapped pages stay readable until unmapped
    return rows


def _gather(pool: StreamingPool, wanted: np.ndarray, path: Path, batch_size, progress) -> None:
    """Write the rows ``wanted`` (sorted positions) to an Arrow stream file at ``path``."""
    writer = None
    start = 0
    done = 0
    try:
        for table in _progress(pool, None, batch_size, progress, "MIG write picks"):
            stop = start + table.num_rows
            hi = int(np.searchsorted(wanted, stop))
            if writer is None:
                writer = pa.ipc.new_stream(str(path), table.schema)
                schema = table.schema
            if hi > done:
                take = table.take(pa.array(wanted[done:hi] - start))
                writer.write_table(take if take.schema == schema else take.cast(schema))
                done = hi
            start = stop
        if done != wanted.size:
            raise ValueError(f"row {int(wanted[done])} is past the pool's end ({start} rows)")
    finally:
        if writer is not None:
            writer.close()
