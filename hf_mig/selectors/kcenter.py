"""k-center greedy (farthest-first traversal) on sample embeddings: a pure-diversity reference."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hf_mig.annotate.embeddings import check_arrays, update_min_distance
from hf_mig.selectors._diversity import best_first, first_argmax, show_progress
from hf_mig.selectors.base import check_int, register_selector
from hf_mig.selectors.embedding_base import EmbeddingSelector, all_equal

logger = logging.getLogger(__name__)

_STARTS = ("score", "random")


@register_selector("kcenter")
@dataclass(repr=False, eq=False, kw_only=True)
class KCenterSelector(EmbeddingSelector):
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

    start: str | int = "score"
    seed: int = 42
    pool_max: int = 1024
    flush_every: int = 2048

    label = "k-center"

    @property
    def score_what(self) -> str:
        return 'k-center selection with start="score" (or pass start="random")'

    @property
    def needs_scores(self) -> bool:
        """Only ``start="score"`` reads the score column."""
        return isinstance(self.start, str) and self.start == "score"

    def _check_options(self, n: int) -> None:
        check_int("pool_max", self.pool_max)
        check_int("flush_every", self.flush_every)
        if not self.needs_scores:
            self._first(n, None)

    def check_scores(self, scores: np.ndarray, *, warn: bool = True) -> None:
        """Equal scores: ``start="score"`` starts from row 0, with a warning."""
        if warn and self.needs_scores and all_equal(scores):
            logger.warning(
                "k-center: every row has the same score %g (column %r); start='score' "
                "starts from row 0",
                scores[0],
                self.score_column,
            )

    def _first(self, n: int, scores: np.ndarray | None) -> int:
        """The first pick: the best score (lowest index among ties), a seeded draw, or the
        given row index."""
        start = self.start
        if isinstance(start, str) and start == "score":
            if scores is None:
                raise ValueError('start="score" needs scores; pass scores or start="random"')
            return int(np.argmax(scores))  # first maximum: lowest index among ties
        if isinstance(start, str) and start == "random":
            return int(np.random.default_rng(self.seed).integers(n))
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise ValueError(f"start must be one of {_STARTS} or a row index, got {start!r}")
        if not 0 <= start < n:
            raise ValueError(f"start row {start} is outside the pool (0..{n - 1})")
        return int(start)

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """k-center on arrays: L2-normalised ``(n, d)`` embeddings; ``scores`` (``n`` finite
        numbers) are needed only for ``start="score"``."""
        self._check_options(len(embeddings))
        x, s = check_arrays(embeddings, scores, self.k)
        self.check_scores(s if s is not None else np.zeros(0))
        picks, dists, radius, flushes = farthest_first(
            x,
            int(self.k),
            self._first(len(x), s),
            pool_max=int(self.pool_max),
            flush_every=int(self.flush_every),
            progress=self.progress,
        )
        self.pick_distances_ = dists
        self.radius_ = radius
        self.n_flushes_ = flushes
        return picks


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
    show = show_progress(progress, float(n) * k * d, 1e11)
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
        order = part[best_first(mind[part], part)]
        ptr = 0
        size = 0
        while n_picked < k and n_picked - applied < flush_every:
            if size:
                pos = first_argmax(pool_val[:size], pool_idx[:size])
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
