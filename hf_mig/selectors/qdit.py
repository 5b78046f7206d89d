"""QDIT: greedy quality + facility-location diversity over sample embeddings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hf_mig.annotate.embeddings import check_arrays
from hf_mig.core.encoding import DegeneratePoolError
from hf_mig.selectors._diversity import best_first, first_argmax, show_progress
from hf_mig.selectors.base import check_choice, check_int, check_number, register_selector
from hf_mig.selectors.embedding_base import EmbeddingSelector, all_equal, constant_scores_error

logger = logging.getLogger(__name__)

_ENGINES = ("lazy", "scan")


@register_selector("qdit")
@dataclass(repr=False, eq=False, kw_only=True)
class QDITSelector(EmbeddingSelector):
    """QDIT: greedy on ``alpha * quality + (1 - alpha) * facility-location diversity gain``.

    Diversity is the facility-location function over a set of *facility* rows ``R``::

        f(S) = sum_{r in R} max_{j in S} max(0, cos(x_r, x_j))      (f(empty) = 0)

    and each step adds the row ``i`` maximising

        alpha * q_i + (1 - alpha) * (f(S + i) - f(S)) / g_max

    (ties to the lower row index), where

    * ``q_i`` is the score min-max normalised to ``[0, 1]`` over the pool (all 0 when every
      score is equal), and
    * ``g_max = max_i f({i})`` is the largest diversity gain of the first step, a constant, so
      the diversity term also starts in ``[0, 1]`` and both terms are comparable at every step.

    Quality is modular and ``f`` is monotone submodular, so every row's objective gain can only
    fall as ``S`` grows: **lazy greedy** (``engine="lazy"``) returns the picks of a full scan
    (``engine="scan"``, every gain every step; for small pools and checks). Rows are evaluated
    in chunks with one ``chunk x |R|`` product each, then kept exact incrementally, only on the
    facilities whose coverage changed (see :func:`qdit_greedy`). Similarities enter the sums
    rounded to multiples of ``2^-32``, so incremental and fresh sums agree bit for bit and exact
    ties (duplicate rows) keep the lowest index. With float64 embeddings both engines pick the
    same rows; with float32, products of different shapes can differ in the last bit, so rows
    whose gains agree to ~1e-7 may come out in either order.

    **Facility sample.** With ``R`` = the whole pool, ``f`` is QDIT's exact diversity, but
    every evaluation costs ``O(N d)`` and the first step ``O(N^2 d)`` (days at 939K rows on two
    cores). ``n_facilities`` rows drawn uniformly with ``seed`` stand in for the pool:
    ``f / |R|`` is an unbiased estimate of ``f / N`` for any fixed ``S``, every pool row stays
    a candidate, and the cost falls to ``O(N |R| d)`` for the first step. The price: coverage
    is only measured at the sampled rows, so once ``S`` covers every facility closely the
    diversity term stops separating candidates (choose ``n_facilities`` of the order of ``k``
    or more when the budget allows). Pools with at most ``n_facilities`` rows use every row.

    Parameters
    ----------
    k: rows to select.
    alpha: weight of quality (paper: 0.7); ``0`` = pure diversity, ``1`` = top score.
    score_column: quality score (any finite numbers); not read when ``alpha = 0``. When every
        row has the same score, ``alpha = 1`` raises
        :class:`hf_mig.core.encoding.DegeneratePoolError` (every gain would be 0: file order) and
        any other ``alpha`` logs a warning (the selection is then pure diversity).
    embedding_column, embedder, embedding_text: as in :class:`DeitaSelector`.
    n_facilities: size of the facility sample (``None``: every row).
    seed: seed of the facility sample.
    engine: ``"lazy"`` (default) or ``"scan"``.
    chunk, pool_max: lazy engine: rows evaluated together, and most rows kept exact at once
        (memory ``pool_max x |R|`` similarities).
    progress: progress bar (``None``: only for large pools).

    Fitted attributes: ``facilities_`` (row indices of ``R``), ``quality_`` (normalised
    ``q``), ``diversity_scale_`` (``g_max``), ``pick_gains_`` (objective gain of each pick),
    ``pick_diversity_`` (its normalised diversity gain), ``objective_`` (final
    ``alpha * sum q + (1 - alpha) f(S) / g_max``), ``n_evaluations_`` (exact gain evaluations,
    lazy engine) and ``n_pulls_`` (chunks pulled).
    """

    alpha: float = 0.7
    n_facilities: int | None = 10_000
    seed: int = 42
    engine: str = "lazy"
    chunk: int = 256
    pool_max: int = 2048

    def _validate(self) -> None:
        check_number("alpha", self.alpha, 0, 1)
        check_choice("engine", self.engine, _ENGINES)
        check_int("n_facilities", self.n_facilities, allow_none=True)
        check_int("chunk", self.chunk)
        check_int("pool_max", self.pool_max)

    label = "QDIT"

    def _check_options(self, n: int) -> None:
        self._validate()

    @property
    def needs_scores(self) -> bool:
        """``alpha = 0`` is pure diversity: the score column is not read."""
        return self.alpha != 0

    def check_scores(self, scores: np.ndarray, *, warn: bool = True) -> None:
        """Equal scores: refused with ``alpha = 1`` (every gain 0, file order), a warning
        otherwise (the quality term is 0 and the selection is pure diversity)."""
        if self.alpha == 0 or int(self.k) >= scores.size or not all_equal(scores):
            return
        if self.alpha == 1:
            raise DegeneratePoolError(
                constant_scores_error("QDIT (alpha=1)", scores, self.score_column, int(self.k))
            )
        if warn:
            logger.warning(
                "QDIT: every row has the same score %g (column %r); the quality term is 0 and "
                "the selection is pure diversity, as with alpha=0",
                scores[0],
                self.score_column,
            )

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """QDIT on arrays: L2-normalised ``(n, d)`` embeddings and ``n`` finite scores."""
        self._validate()
        x, scores = check_arrays(embeddings, scores, self.k)
        self.check_scores(scores)
        k = int(self.k)
        n = len(x)
        if self.n_facilities is None or self.n_facilities >= n:
            facilities = np.arange(n, dtype=np.int64)
        else:
            rng = np.random.default_rng(self.seed)
            facilities = np.sort(rng.choice(n, size=int(self.n_facilities), replace=False))
        result = qdit_greedy(
            x,
            scores,
            k,
            float(self.alpha),
            facilities,
            engine=self.engine,
            chunk=int(self.chunk),
            pool_max=int(self.pool_max),
            progress=self.progress,
        )
        self.facilities_ = facilities
        self.quality_ = result["quality"]
        self.diversity_scale_ = result["scale"]
        self.pick_gains_ = result["gains"]
        self.pick_diversity_ = result["diversity"]
        self.objective_ = float(result["gains"].sum())
        self.n_evaluations_ = result["evaluations"]
        self.n_pulls_ = result["rounds"]
        return result["picks"]


def normalise_quality(scores: np.ndarray) -> np.ndarray:
    """Min-max scaling to ``[0, 1]`` (float64); all zeros when every score is equal."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    if hi <= lo:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


#: Similarities enter the coverage sums rounded to multiples of 2^-32. Every term is then an
#: integer number of units below 2^33 and every sum over at most 2^20 facilities is exact in
#: float64 (below 2^53), whatever the order of additions: a gain updated incrementally equals
#: the same gain summed afresh, bit for bit, so exact ties stay ties.
_UNIT = float(2**32)
MAX_FACILITIES = 2**20


def _units(sims: np.ndarray) -> np.ndarray:
    """Similarities as float64 integers in units of 2^-32 (round half to even)."""
    return np.rint(np.asarray(sims, dtype=np.float64) * _UNIT)


def _coverage_sums(
    x: np.ndarray, rows: np.ndarray | slice, fac: np.ndarray, cover: np.ndarray
) -> np.ndarray:
    """``sum_r max(0, sim(x_i, fac_r) - cover_r)`` for the given rows, in units (exact)."""
    u = _units(x[rows] @ fac.T)
    u -= cover
    np.maximum(u, 0.0, out=u)
    return u.sum(axis=1)


def _all_coverage_sums(
    x: np.ndarray, fac: np.ndarray, cover: np.ndarray, block: int, show: bool, desc: str
) -> np.ndarray:
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in tqdm(range(0, n, block), desc=desc, unit="block", disable=not show, leave=False):
        out[i : i + block] = _coverage_sums(x, slice(i, i + block), fac, cover)
    return out


def qdit_greedy(
    x: np.ndarray,
    scores: np.ndarray,
    k: int,
    alpha: float,
    facilities: np.ndarray,
    *,
    engine: str = "lazy",
    chunk: int = 256,
    pool_max: int = 2048,
    block: int = 1024,
    progress: bool | None = None,
) -> dict:
    """QDIT greedy on arrays (unit rows ``x``); see :class:`QDITSelector` for the objective.

    Lazy engine: every row starts with its exact first-step gain as an upper bound. Rows are
    pulled, ``chunk`` at a time and best bound first, into a *pool* whose gains are kept exact:
    a pulled row's similarities to the facilities are computed once (one ``chunk x |R|``
    product) and, after each pick, its gain is corrected only on the facilities whose coverage
    rose. The pool's best row is the greedy pick as soon as its exact gain exceeds every bound
    outside the pool (ties go to the lower row index). When the pool would exceed ``pool_max``
    rows, its weaker half is evicted with their exact gains as new bounds. Memory:
    ``pool_max x |R|`` similarities plus ``O(N)``.

    Returns a dict: ``picks`` (int64, pick order), ``gains`` (objective gain of each pick),
    ``diversity`` (normalised diversity gain of each pick), ``quality`` (normalised scores),
    ``scale`` (``g_max``), ``evaluations`` (rows whose exact gain was computed, the first step
    included) and ``rounds`` (pulls).
    """
    import heapq

    n = x.shape[0]
    quality = normalise_quality(scores)
    # Similarities are computed in the embeddings' precision: float32, or float64 when given
    # (then the two engines agree bit for bit: float32 products of different shapes may differ
    # in the last bit, which can swap candidates whose gains agree to ~1e-7).
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    fac = np.ascontiguousarray(x[facilities], dtype=dtype)
    n_fac = fac.shape[0]
    if n_fac > MAX_FACILITIES:
        raise ValueError(f"at most {MAX_FACILITIES:,} facilities are supported, got {n_fac:,}")
    cover = np.zeros(n_fac, dtype=np.float64)  # coverage of every facility, in units
    show = show_progress(progress, float(n) * n_fac * x.shape[1], 1e11)
    # Diversity gains of every row for S = empty: exact first-step values and upper bounds.
    div = _all_coverage_sums(x, fac, cover, block, show, "QDIT first gains")
    scale = float(div.max())
    if scale <= 0:
        scale = 1.0
    w_div = (1.0 - alpha) / scale
    bound = alpha * quality + w_div * div  # float64 upper bounds of every row's gain
    picks = np.empty(k, dtype=np.int64)
    gains = np.empty(k, dtype=np.float64)
    div_gain = np.empty(k, dtype=np.float64)
    bar = tqdm(total=k, desc=f"QDIT greedy ({engine})", unit="pick", disable=not show)

    def take(
        t: int, row: int, gain: float, dsum: float, sims: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Record pick ``t`` and raise the coverage with the pick's facility similarities
        ``sims`` (in units); return the facilities whose coverage rose and their previous
        coverage."""
        picks[t] = row
        gains[t] = gain
        div_gain[t] = dsum / scale
        changed = np.flatnonzero(sims > cover)
        old = cover[changed].copy()
        cover[changed] = sims[changed]
        bar.update(1)
        return changed, old

    def result(evaluations: int, rounds: int) -> dict:
        bar.close()
        return {
            "picks": picks,
            "gains": gains,
            "diversity": div_gain,
            "quality": quality,
            "scale": scale / _UNIT,
            "evaluations": evaluations,
            "rounds": rounds,
        }

    if engine == "scan":
        selected = np.zeros(n, dtype=bool)
        for t in range(k):
            if t:
                div = _all_coverage_sums(x, fac, cover, block, False, "")
            obj = alpha * quality + w_div * div
            obj[selected] = -np.inf
            row = int(np.argmax(obj))  # first maximum: lowest index among ties
            selected[row] = True
            take(t, row, float(obj[row]), float(div[row]), _units(x[row : row + 1] @ fac.T)[0])
        return result(n * k, k)

    # Stale rows: never pulled (in `order`, best bound first) or evicted (a heap of
    # (-bound, row)); pool rows: exact gains.
    order = best_first(bound)
    ptr = 0
    evicted: list[tuple[float, int]] = []
    cap = max(pool_max, chunk) + chunk
    pool_idx = np.empty(cap, dtype=np.int64)
    pool_sims = np.empty((cap, n_fac), dtype=dtype)
    pool_dsum = np.zeros(cap, dtype=np.float64)
    pool_val = np.full(cap, -np.inf, dtype=np.float64)
    size = 0
    evaluations = n
    pulls = 0

    def next_stale() -> tuple[float, int]:
        """(bound, row) of the best stale row: highest bound, lowest row among ties."""
        a = (float(bound[order[ptr]]), int(order[ptr])) if ptr < n else (-np.inf, n)
        if evicted and (-evicted[0][0], -evicted[0][1]) > (a[0], -a[1]):
            return -evicted[0][0], evicted[0][1]
        return a

    t = 0
    while t < k:
        nxt, nxt_row = next_stale()
        if size:
            pos = first_argmax(pool_val[:size], pool_idx[:size])
            best, best_row = float(pool_val[pos]), int(pool_idx[pos])
        else:
            pos, best, best_row = -1, -np.inf, n
        # No stale row can beat the pool's best: lower bound, or an equal bound on a larger row
        # index (the greedy's tie rule is the lowest index).
        if best > nxt or (best == nxt and best > -np.inf and best_row < nxt_row):
            row = int(pool_idx[pos])
            # The pick's similarities were computed when it was pulled.
            changed, old = take(t, row, best, float(pool_dsum[pos]), _units(pool_sims[pos]))
            t += 1
            pool_val[pos] = -np.inf
            if changed.size:
                sub = _units(pool_sims[:size, changed])
                before = np.maximum(sub - old, 0.0).sum(axis=1)
                after = np.maximum(sub - cover[changed], 0.0).sum(axis=1)
                dsum_view = pool_dsum[:size]
                dsum_view -= before - after  # exact: integers below 2^53
                val_view = pool_val[:size]
                live = val_view > -np.inf
                val_view[live] = alpha * quality[pool_idx[:size][live]] + w_div * dsum_view[live]
            continue
        # Pull the next rows by bound (from whichever source holds the larger bound).
        if size + chunk > cap:
            live = np.flatnonzero(pool_val[:size] > -np.inf)
            keep_n = max(1, min(len(live), cap // 2 - chunk))
            ranked = live[best_first(pool_val[live], pool_idx[live])]
            keep, drop = ranked[:keep_n], ranked[keep_n:]
            for j in drop:
                heapq.heappush(evicted, (-float(pool_val[j]), int(pool_idx[j])))
            m = len(keep)
            pool_idx[:m] = pool_idx[keep]
            pool_sims[:m] = pool_sims[keep]
            pool_dsum[:m] = pool_dsum[keep]
            pool_val[:m] = pool_val[keep]
            pool_val[m:] = -np.inf
            size = m
        a_bound, a_row = (float(bound[order[ptr]]), int(order[ptr])) if ptr < n else (-np.inf, n)
        if evicted and (-evicted[0][0], -evicted[0][1]) > (a_bound, -a_row):
            rows_list = []
            while evicted and len(rows_list) < chunk:
                rows_list.append(heapq.heappop(evicted)[1])
            rows = np.asarray(rows_list, dtype=np.int64)
        else:
            rows = order[ptr : ptr + chunk]
            ptr += len(rows)
        m = len(rows)
        if m == 0:
            break
        pulls += 1
        evaluations += m
        sims = x[rows] @ fac.T
        pool_idx[size : size + m] = rows
        pool_sims[size : size + m] = sims
        u = _units(sims)
        u -= cover
        np.maximum(u, 0.0, out=u)
        dsum = u.sum(axis=1)
        pool_dsum[size : size + m] = dsum
        pool_val[size : size + m] = alpha * quality[rows] + w_div * dsum
        size += m
    return result(evaluations, pulls)
