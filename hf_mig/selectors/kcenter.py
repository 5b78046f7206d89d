"""k-center greedy (farthest-first traversal) on sample embeddings: a pure-diversity reference."""

from __future__ import annotations

import logging

import numpy as np
from datasets import Dataset
from tqdm.auto import tqdm

from hf_mig.annotate.embeddings import check_arrays as _check_arrays
from hf_mig.annotate.embeddings import ensure_embeddings, update_min_distance
from hf_mig.models.embedders import EmbedderLike
from hf_mig.selectors.base import BaseSelector, register_selector
from hf_mig.selectors.embedding_base import all_equal, read_score_column

logger = logging.getLogger(__name__)

_STARTS = ("score", "random")


@register_selector("kcenter")
class KCenterSelector(BaseSelector):
    """k-center greedy: each pick is the row farthest (cosine distance) from all earlier picks.

    The first pick is the highest-score row (``start="score"``, ties to the lower index), a
    row drawn with ``seed`` (``start="random"``) or a given row index. Every later pick is
    ``argmax_i min_{j in S} (1 - cos(x_i, x_j))`` with ties to the lower row index: the classic
    2-approximation of the k-center problem. Quality plays no role after the first pick.

    Exact, in ``O(N)`` extra memory (one distance per row) plus a pool of at most
    ``pool_max`` rows: distances only fall, so stale distances are upper bounds and only the rows
    that reach the top are brought up to date (lazy evaluation, see :func:`farthest_first`);
    every ``flush_every`` picks all rows are updated with one ``N x flush_every`` matrix product,
    block by block. The total work is ``O(N k d)`` like the textbook loop, but spent in matrix
    products instead of ``k`` passes over the embeddings.

    Parameters
    ----------
    k: rows to select.
    start: ``"score"``, ``"random"`` or a row index for the first pick.
    seed: random generator seed for ``start="random"``.
    score_column: used by ``start="score"`` only (equal scores start from row 0, with a
        warning: only the first pick depends on the scores).
    embedding_column, embedder, embedding_text: as in :class:`DeitaSelector`.
    pool_max: most rows kept exact between two full distance updates.
    flush_every: most picks between two full distance updates.
    progress: progress bar (``None``: only for large pools).

    Fitted attributes: ``pick_distances_`` (float64, per pick: its distance to the nearest
    earlier pick, ``inf`` for the first; non-increasing), ``radius_`` (largest distance of
    any row to its nearest pick: the covering radius), ``n_flushes_``.
    """

    def __init__(
        self,
        k: int,
        *,
        start: str | int = "score",
        seed: int = 42,
        score_column: str = "score",
        embedding_column: str = "embedding",
        embedder: EmbedderLike | None = None,
        embedding_text: str = "first_user",
        pool_max: int = 1024,
        flush_every: int = 2048,
        progress: bool | None = None,
    ):
        self.k = k
        self.start = start
        self.seed = seed
        self.score_column = score_column
        self.embedding_column = embedding_column
        self.embedder = embedder
        self.embedding_text = embedding_text
        self.pool_max = pool_max
        self.flush_every = flush_every
        self.progress = progress

    def _first(self, dataset: Dataset, n: int) -> int:
        start = self.start
        if isinstance(start, str):
            if start == "score":
                scores = read_score_column(
                    dataset,
                    self.score_column,
                    what='k-center selection with start="score" (or pass start="random")',
                )
                if all_equal(scores):
                    logger.warning(
                        "k-center: every row has the same score %g (column %r); start='score' "
                        "starts from row 0",
                        scores[0],
                        self.score_column,
                    )
                return int(np.argmax(scores))  # first maximum: lowest index among ties
            if start == "random":
                return int(np.random.default_rng(self.seed).integers(n))
            raise ValueError(f"start must be one of {_STARTS} or a row index, got {start!r}")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise ValueError(f"start must be one of {_STARTS} or a row index, got {start!r}")
        if not 0 <= start < n:
            raise ValueError(f"start row {start} is outside the pool (0..{n - 1})")
        return int(start)

    def _validate(self) -> None:
        for name in ("pool_max", "flush_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    def select_indices(self, dataset: Dataset) -> np.ndarray:
        """Row indices of the ``k`` picks, in pick order."""
        self._check_k(dataset)
        self._validate()
        first = self._first(dataset, len(dataset))
        x = ensure_embeddings(
            dataset,
            self.embedding_column,
            self.embedder,
            text=self.embedding_text,
            progress=self.progress,
        )
        return self._run(x, first)

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """k-center on arrays: L2-normalised ``(n, d)`` embeddings; ``scores`` (``n`` finite
        numbers) are needed only for ``start="score"``."""
        self._validate()
        x, s = _check_arrays(embeddings, scores, self.k)
        n = len(x)
        start = self.start
        if isinstance(start, str) and start == "score":
            if s is None:
                raise ValueError('start="score" needs scores; pass scores or start="random"')
            first = int(np.argmax(s))
        elif isinstance(start, str) and start == "random":
            first = int(np.random.default_rng(self.seed).integers(n))
        elif (
            isinstance(start, (int, np.integer)) and not isinstance(start, bool) and 0 <= start < n
        ):
            first = int(start)
        else:
            raise ValueError(
                f"start must be one of {_STARTS} or a row index in [0, {n}), got {start!r}"
            )
        return self._run(x, first)

    def _run(self, x: np.ndarray, first: int) -> np.ndarray:
        picks, dists, radius, flushes = farthest_first(
            x,
            int(self.k),
            first,
            pool_max=int(self.pool_max),
            flush_every=int(self.flush_every),
            progress=self.progress,
        )
        self.pick_distances_ = dists
        self.radius_ = radius
        self.n_flushes_ = flushes
        return picks

    def __repr__(self) -> str:
        return (
            f"KCenterSelector(k={self.k}, start={self.start!r}, seed={self.seed}, "
            f"embedding_column={self.embedding_column!r})"
        )


def _first_argmax(values: np.ndarray, ids: np.ndarray) -> int:
    """Position of the largest value; among equal values the one with the lowest id."""
    top = values.max()
    tied = np.flatnonzero(values == top)
    if len(tied) == 1:
        return int(tied[0])
    return int(tied[np.argmin(ids[tied])])


def farthest_first(
    x: np.ndarray,
    k: int,
    first: int,
    *,
    pool_max: int = 1024,
    chunk: int = 256,
    flush_every: int = 2048,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Farthest-first traversal of unit rows ``x`` under cosine distance, starting at ``first``.

    Returns ``(picks, pick_distances, radius, n_flushes)``; see :class:`KCenterSelector`.
    The picks equal those of the plain loop "update every row's distance, take the argmax
    (lowest index among ties)" up to float32 rounding of the similarities.

    How: ``mind`` holds every row's distance to the picks made before the last *flush*; as
    distances only fall, it bounds the current ones from above. Rows are pulled into a *pool*
    in decreasing ``mind`` order, ``chunk`` at a time, and brought up to date with the picks
    made since the flush (one ``chunk x pending`` product). The pool's best row is the true
    farthest row as soon as its exact distance exceeds the bound of the next row not pulled
    yet. After each pick the pool is updated with one ``pool x d`` product. A flush (one
    ``N x pending`` product, block by block) happens after ``flush_every`` picks or when the
    pool exceeds ``pool_max`` rows.
    """
    n, d = x.shape
    picks = np.empty(k, dtype=np.int64)
    pick_dist = np.empty(k, dtype=np.float64)
    picks[0] = first
    pick_dist[0] = np.inf
    mind = np.full(n, np.inf, dtype=np.float32)
    update_min_distance(x, x[first : first + 1], mind, progress=False)
    mind[first] = -np.inf  # picked rows are never candidates again
    applied = n_picked = 1
    flushes = 0
    show = bool(progress) if progress is not None else float(n) * k * d >= 1e11
    bar = tqdm(total=k, initial=1, desc="k-center greedy", unit="pick", disable=not show)
    cap = pool_max + chunk
    pool_idx = np.empty(cap, dtype=np.int64)
    pool_x = np.empty((cap, d), dtype=np.float32)
    pool_val = np.empty(cap, dtype=np.float32)
    while n_picked < k:
        # After a flush: the rows with the `top` largest (exact) distances, all ties at the cut
        # included, by (distance descending, index); every other row is below `beyond`.
        top = min(n, 4 * pool_max)
        if top < n:
            kth = np.partition(mind, n - top)[n - top]
            part = np.flatnonzero(mind >= kth)
            rest = mind[mind < kth]
            beyond = float(rest.max()) if rest.size else -np.inf
        else:
            part = np.arange(n)
            beyond = -np.inf
        order = part[np.lexsort((part, -mind[part]))]
        ptr = 0
        size = 0
        while n_picked < k and n_picked - applied < flush_every:
            if size:
                pos = _first_argmax(pool_val[:size], pool_idx[:size])
                best, best_row = float(pool_val[pos]), int(pool_idx[pos])
            else:
                pos, best, best_row = -1, -np.inf, -1
            # The pool's best is the farthest row when no row outside the pool can beat it:
            # its bound is lower, or equal with a larger index (`order` is index-sorted among
            # equal distances; rows below `beyond` need a strict win).
            if ptr < len(order):
                nxt, nxt_row = float(mind[order[ptr]]), int(order[ptr])
                wins = best > nxt or (best == nxt and 0 <= best_row < nxt_row)
            else:
                wins = best > beyond
            if not wins:
                if ptr >= len(order) or size + chunk > cap:
                    break  # nothing left to pull without a flush
                rows = order[ptr : ptr + chunk]
                ptr += len(rows)
                rows = rows[mind[rows] > -np.inf]
                m = len(rows)
                if m == 0:
                    continue
                pool_idx[size : size + m] = rows
                pool_x[size : size + m] = x[rows]
                vals = mind[rows].copy()
                if n_picked > applied:
                    pending = x[picks[applied:n_picked]]
                    np.minimum(
                        vals, 1.0 - (pool_x[size : size + m] @ pending.T).max(axis=1), out=vals
                    )
                pool_val[size : size + m] = vals
                size += m
                continue
            row = int(pool_idx[pos])
            picks[n_picked] = row
            pick_dist[n_picked] = best
            n_picked += 1
            bar.update(1)
            pool_val[pos] = -np.inf
            # einsum runs single-threaded: no BLAS thread start-up on every pick.
            sims = np.einsum("ij,j->i", pool_x[:size], x[row])
            np.minimum(pool_val[:size], 1.0 - sims, out=pool_val[:size])
            pool_val[pos] = -np.inf
            if size > pool_max:
                break
        # Flush: apply the pending picks to every row.
        if n_picked > applied:
            update_min_distance(x, x[picks[applied:n_picked]], mind, progress=False)
            mind[picks[applied:n_picked]] = -np.inf
            applied = n_picked
            flushes += 1
    bar.close()
    radius = float(mind.max()) if n > k else 0.0
    return picks, pick_dist, max(radius, 0.0), flushes
