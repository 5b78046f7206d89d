"""Pools read in Arrow batches, never whole: Parquet files or a ``datasets.IterableDataset``.

:class:`StreamingPool` gives a pool's column names, its size when the files say it, its batches
(a few columns at a time) and a content key. :func:`pool_encoding` encodes the label and score
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
from tqdm.auto import tqdm

from hf_mig.core.config import cache_root
from hf_mig.core.disk_csr import FORMAT_VERSION, META_FILE, encode_batches, open_encoding
from hf_mig.core.encoding import PoolEncoding, distinct_labels
from hf_mig.data.atomic import TMP_MARK, remove_path, rename_or_keep, temp_sibling
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


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Parquet file or folder")
    files = sorted(
        p
        for p in path.rglob("*.parquet")
        if p.is_file() and not any(TMP_MARK in part for part in p.relative_to(path).parts)
    )
    if not files:
        raise ValueError(f"{path}: the folder holds no .parquet file")
    return files


class StreamingPool:
    """A pool read in batches: a Parquet file, a folder of them (``*.parquet`` under it, in
    sorted path order, rows numbered across files) or a ``datasets.IterableDataset`` (rows in
    its iteration order, which must be the same on every pass: do not shuffle it).

    ``column_names`` (``None`` when an iterable dataset does not know them), ``num_rows``
    (``None`` for an iterable dataset), :meth:`batches`, :meth:`content_key`.
    """

    def __init__(self, source: str | os.PathLike | datasets.IterableDataset) -> None:
        self.source = source
        self.files: list[Path] = []
        if isinstance(source, datasets.IterableDataset):
            self.column_names = source.column_names
            if self.column_names is None:  # features unknown: read them off the first rows
                first = next(iter(source.with_format("arrow").iter(batch_size=1)), None)
                self.column_names = None if first is None else first.column_names
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
        self.files = _parquet_files(path)
        metas = [pq.read_metadata(f) for f in self.files]
        schema = pq.read_schema(self.files[0])
        self.schema = schema
        self.column_names = list(schema.names)
        for file, meta in zip(self.files, metas):
            names = meta.schema.to_arrow_schema().names
            if names != self.column_names:
                raise ValueError(
                    f"{file}: columns {names} differ from those of {self.files[0]} "
                    f"({self.column_names}); every Parquet file of a pool has the same columns"
                )
        self.num_rows = sum(meta.num_rows for meta in metas)

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
        (``None``: all). List-of-string ``dictionary`` columns of Parquet files are read
        dictionary-encoded (the labels of a row are then looked up once per file chunk)."""
        if not self.files:
            ds = self.source
            if columns is not None:
                ds = ds.select_columns(list(columns))
            yield from ds.with_format("arrow").iter(batch_size=batch_size)
            return
        for file in self.files:
            pf = pq.ParquetFile(file, read_dictionary=self._leaf_paths(file, dictionary))
            for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
                yield pa.Table.from_batches([batch])

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
