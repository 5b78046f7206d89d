"""A pool's encoding kept on disk: the CSR arrays of :class:`~hf_mig.core.encoding.PoolEncoding`
as ``.npy`` files, written batch by batch and opened memory-mapped.

:func:`encode_batches` encodes Arrow batches one after the other with
:func:`~hf_mig.core.encoding.encode_batch` (so the result equals :func:`encode_pool` of the
whole table, report included) and appends each batch's arrays to the files of a folder; only one
batch is in memory at a time. :func:`open_encoding` maps the files back read-only
(``np.load(..., mmap_mode="r")``): the greedy reads them in place, and the operating system pages
them in and out as it needs.

Files: ``indptr.npy`` (int64, rows + 1), ``label_ids.npy`` (int32), ``scores.npy`` (float64),
``label_occurrences.npy`` (int32), ``costs.npy`` (float64, only when a cost column is read) and
``meta.json`` (written last: a folder without it is incomplete).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from hf_mig.core.encoding import (
    BatchEncoding,
    EncodingTally,
    PoolEncoding,
    encode_batch,
    read_scores,
    vocabulary_array,
)

__all__ = ["FORMAT_VERSION", "META_FILE", "NpyAppender", "encode_batches", "open_encoding"]

#: Version of the folder layout (part of cache keys).
FORMAT_VERSION = 1
#: The file written last; its presence marks a complete folder.
META_FILE = "meta.json"
_LENGTH_SLOT = 10**15  # the header written first has room for any length below this


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
    np.lib.format.write_array_header_1_0(buf, {**header, "shape": (length,)})
    return buf.getvalue()


class NpyAppender:
    """A 1-D ``.npy`` file whose length is known once the last values are appended.

    The header is written first for a placeholder length and rewritten by :meth:`close`;
    headers are padded to 64 bytes, so both take the same room.
    """

    def __init__(self, path: str | os.PathLike, dtype: np.dtype | type) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(_npy_header(self.dtype, _LENGTH_SLOT))

    def append(self, values: np.ndarray) -> None:
        """Append ``values`` (cast to the file's dtype)."""
        arr = np.ascontiguousarray(values, dtype=self.dtype)
        self._file.write(memoryview(arr).cast("B"))
        self.length += int(arr.size)

    def close(self) -> None:
        """Write the final length into the header and close the file."""
        if self.length >= _LENGTH_SLOT:
            raise ValueError(f"{self.path}: {self.length} values exceed the header's room")
        header = _npy_header(self.dtype, self.length)
        if len(header) != len(_npy_header(self.dtype, _LENGTH_SLOT)):  # pragma: no cover
            raise RuntimeError(f"{self.path}: the .npy header changed size")
        self._file.seek(0)
        self._file.write(header)
        self._file.close()


class _EncodingWriter:
    """Appends :class:`BatchEncoding` s to the files of a folder."""

    def __init__(self, folder: Path, vocabulary_size: int, costs: bool) -> None:
        self.files = {
            "indptr": NpyAppender(folder / "indptr.npy", np.int64),
            "label_ids": NpyAppender(folder / "label_ids.npy", np.int32),
            "scores": NpyAppender(folder / "scores.npy", np.float64),
            "label_occurrences": NpyAppender(folder / "label_occurrences.npy", np.int32),
        }
        if costs:
            self.files["costs"] = NpyAppender(folder / "costs.npy", np.float64)
        self.files["indptr"].append(np.zeros(1, dtype=np.int64))
        self.tally = EncodingTally(vocabulary_size)
        self._ids = 0

    def add(self, batch: BatchEncoding, costs: np.ndarray | None) -> None:
        self.files["indptr"].append(self._ids + np.cumsum(batch.counts, dtype=np.int64))
        self.files["label_ids"].append(batch.label_ids)
        self.files["scores"].append(batch.scores)
        self.files["label_occurrences"].append(batch.occurrences)
        if costs is not None:
            self.files["costs"].append(costs)
        self._ids += int(batch.label_ids.size)
        self.tally.add(batch)

    def close(self) -> None:
        for appender in self.files.values():
            appender.close()


def encode_batches(
    batches: Iterable[pa.Table],
    vocabulary: Sequence[str],
    folder: str | os.PathLike,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
    cost_column: str | None = None,
    total_rows: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Encode consecutive Arrow tables of one pool against ``vocabulary`` into ``folder``.

    The files hold exactly :func:`~hf_mig.core.encoding.encode_pool` of the concatenated
    tables; errors name the row's position in the whole pool. With ``cost_column``, that
    column is read too (as a budget reads costs: finite numbers, naming the first bad row) into
    ``costs.npy``. ``meta.json`` is written last. Returns the encoding report.
    """
    folder = Path(folder)
    vocab = vocabulary_array(vocabulary)
    writer = _EncodingWriter(folder, len(vocab), cost_column is not None)
    first_row = 0
    show = progress if progress is not None else (total_rows or 0) > 2_000_000
    try:
        with tqdm(total=total_rows, desc="MIG encode", unit="row", disable=not show) as bar:
            for table in batches:
                batch = encode_batch(
                    table,
                    vocab,
                    labels_column=labels_column,
                    score_column=score_column,
                    first_row=first_row,
                )
                costs = None
                if cost_column is not None:
                    costs = read_scores(
                        table,
                        cost_column,
                        what="budgeted MIG selection",
                        name_rows="column",
                        first_row=first_row,
                    )
                writer.add(batch, costs)
                first_row += table.num_rows
                bar.update(table.num_rows)
    finally:
        writer.close()
    report = writer.tally.report()
    meta = {
        "format": FORMAT_VERSION,
        "report": report,
        "vocabulary_size": len(vocab),
        "labels_column": labels_column,
        "score_column": score_column,
        "cost_column": cost_column,
    }
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return report


def open_encoding(
    folder: str | os.PathLike, vocabulary: Sequence[str]
) -> tuple[PoolEncoding, np.ndarray | None]:
    """The :class:`PoolEncoding` written by :func:`encode_batches` into ``folder``, its arrays
    memory-mapped read-only, and the costs (``None`` when none were read)."""
    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    if meta.get("vocabulary_size") != len(vocabulary):
        raise ValueError(
            f"{folder}: encoded against {meta.get('vocabulary_size')} labels, not {len(vocabulary)}"
        )

    def load(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r")

    encoding = PoolEncoding(
        load("indptr"),
        load("label_ids"),
        load("scores"),
        list(vocabulary),
        meta["report"],
        load("label_occurrences"),
    )
    costs = load("costs") if (folder / "costs.npy").is_file() else None
    return encoding, costs
