"""Continue a finished greedy selection: more picks from the current ``x(S)``, over a grown pool.

A :class:`GreedyState` is where a greedy stands: its picks, the coverage ``x = sum_{i in S} u_i``,
``g = phi'(x)``, ``h = P g`` and ``E(S)``. :func:`replay_state` rebuilds it from the picks
(``O(|S| * nnz(u_i))``, no gain is evaluated); :func:`greedy_extend` adds picks to it with the
engines of :mod:`hf_mig.core.greedy`, over a pool that may have rows appended after those the
state was built on, never picking a row of ``S`` again, and returns the new state with the new
picks so that it can be extended again.

Rows are identified by position: row ``i`` of the grown pool must be row ``i`` of the pool the
picks came from (:func:`check_same_prefix` checks that on two encodings). With no rows appended,
``greedy_extend`` by ``k_more`` after ``greedy_select(k)`` returns exactly picks ``k .. k +
k_more - 1`` of ``greedy_select(k + k_more)`` and their gains (gradient gains: the replayed
``x``, ``phi'(x)`` and ``P phi'(x)`` are bit for bit the greedy's, and lazy greedy's picks are the
full scan's); E agrees to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hf_mig.core._jit import njit as _njit
from hf_mig.core._jit import resolve_compiled
from hf_mig.core.encoding import PoolEncoding, PoolValidationError
from hf_mig.core.greedy import (
    _EVALS,
    _REFRESHES,
    _SIZE,
    _STEP,
    GAIN_KINDS,
    ROOT,
    Frontier,
    GreedyResult,
    _candidate_count,
    _candidate_steps,
    _dphi,
    _fill_heap,
    _gain,
    _heapify,
    _lazy_steps,
    _phi,
    _scan_steps,
    _select_candidates,
    chunk_steps,
    heap_frontier,
    resolve_engine,
    run_in_chunks,
    stamp_array,
)
from hf_mig.core.inputs import check_inputs
from hf_mig.core.objective import Objective

__all__ = ["GreedyState", "check_same_prefix", "greedy_extend", "replay_state"]


@dataclass
class GreedyState:
    """A greedy's position: ``picks`` in order, ``x`` (coverage per label), ``g = phi'(x)``,
    ``h = P g``, ``objective`` (E of the picks) and, after a lazy run, its ``frontier`` (see
    :class:`hf_mig.core.greedy.Frontier`)."""

    picks: np.ndarray
    x: np.ndarray
    g: np.ndarray
    h: np.ndarray
    objective: float
    frontier: Frontier | None = None

    def copy(self) -> GreedyState:
        """A copy whose arrays can change without changing this state (the frontier, which is
        only read, is shared)."""
        return GreedyState(
            self.picks.copy(),
            self.x.copy(),
            self.g.copy(),
            self.h.copy(),
            self.objective,
            self.frontier,
        )


def _work(num_labels: int) -> tuple:
    return (np.zeros(num_labels), np.zeros(num_labels, np.int64), np.zeros(num_labels, np.int8))


@_njit
def _replay(picks, pool, prop, state, work, phi):
    """Add ``picks`` in order to the empty ``state``; return the change of E.

    ``x`` is accumulated as :func:`hf_mig.core.greedy._add_sample` accumulates it, pick by pick,
    so it is bit for bit the greedy's; ``g`` and ``h`` are then refreshed once where they
    changed, with the same arithmetic, so they are too. E is summed per label (the greedy sums
    it per pick: the two agree to rounding).
    """
    indptr, lab, w = pool
    p_indptr, p_indices, p_data = prop
    x, g, h = state
    acc, touched, mark = work
    changed = np.zeros(x.size, dtype=np.bool_)
    for i in picks:
        wi = w[i]
        n = 0
        for t in range(indptr[i], indptr[i + 1]):
            for q in range(p_indptr[lab[t]], p_indptr[lab[t] + 1]):
                j = p_indices[q]
                if mark[j] == 0:
                    mark[j] = 1
                    touched[n] = j
                    n += 1
                acc[j] += wi * p_data[q]
        for m in range(n):
            j = touched[m]
            x[j] = x[j] + acc[j]
            acc[j] = 0.0
            mark[j] = 0
            changed[j] = True
    delta = 0.0
    for j in range(x.size):
        if changed[j]:
            delta += _phi(x[j], phi) - _phi(0.0, phi)
            g[j] = _dphi(x[j], phi)
    for lb in range(x.size):  # P's pattern is symmetric: h_l changed iff a neighbour's g did
        hit = False
        for r in range(p_indptr[lb], p_indptr[lb + 1]):
            hit = hit or changed[p_indices[r]]
        if hit:
            s = 0.0
            for r in range(p_indptr[lb], p_indptr[lb + 1]):
                s += p_data[r] * g[p_indices[r]]
            h[lb] = s
    return delta


def _check_picks(picks: object, n: int, *, repeats: bool = True) -> np.ndarray:
    """``picks`` as int64 once they are row indices in ``[0, n)`` (and distinct, unless
    ``repeats=False`` leaves that to the caller)."""
    picks = np.asarray(picks, dtype=np.int64)
    if picks.ndim != 1 or (picks.size and (picks.min() < 0 or picks.max() >= n)):
        raise ValueError(f"picks must be a 1-d array of row indices in [0, {n})")
    if repeats and np.unique(picks).size != picks.size:
        raise ValueError(_REPEATED)
    return picks


_REPEATED = "picks must not repeat a row"


def _replayed(pool, prop, picks, phi, compiled: bool) -> GreedyState:
    """The state after ``picks`` (checked), built as ``greedy_select`` builds it."""
    num_labels = prop[0].size - 1
    p_indptr, p_indices, p_data = prop
    g = np.full(num_labels, _dphi.py_func(0.0, phi))
    h = sp.csr_matrix((p_data, p_indices, p_indptr), shape=(num_labels, num_labels)) @ g
    state = (np.zeros(num_labels), g, h)
    value = float(num_labels * _phi.py_func(0.0, phi))
    replay = _replay if compiled else _replay.py_func
    value += replay(picks, pool, prop, state, _work(num_labels), phi)
    return GreedyState(picks.copy(), state[0], state[1], state[2], value)


def replay_state(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    picks: np.ndarray,
    objective: Objective | None = None,
    *,
    compiled: bool | None = None,
) -> GreedyState:
    """The state after adding ``picks`` in order to the empty selection, computed as
    :func:`hf_mig.core.greedy.greedy_select` computes it (``x``, ``g`` and ``h`` bit for bit its
    state after those picks, ``objective`` to rounding), in ``O(|picks| * nnz(u_i) + nnz(P))``
    with no gain evaluated. ``picks``: distinct row indices of the pool."""
    objective = objective or Objective()
    pool, prop, _ = check_inputs(indptr, label_ids, weights, propagation, objective)
    picks = _check_picks(picks, pool[2].size)
    return _replayed(pool, prop, picks, objective.kernel_args, resolve_compiled(compiled))


def _check_k_more(k_more: object, free: int) -> int:
    if isinstance(k_more, bool) or not isinstance(k_more, (int, np.integer)):
        raise TypeError(f"k_more must be an integer, got {type(k_more).__name__}: {k_more!r}")
    if k_more < 1 or k_more > free:
        raise ValueError(f"k_more = {k_more}: must be between 1 and the {free} rows not picked yet")
    return int(k_more)


def _check_frontier(frontier: Frontier | None, n: int, gain: str, picks: int) -> Frontier | None:
    """``frontier`` once it can continue ``picks`` picks over ``n`` rows with ``gain`` gains."""
    if frontier is None:
        return None
    if not isinstance(frontier, Frontier):
        raise TypeError(f"frontier must be a Frontier, got {type(frontier).__name__}")
    if frontier.gain != gain:
        raise ValueError(f"the frontier holds {frontier.gain} gains; this run uses {gain} gains")
    if frontier.rows > n:
        raise ValueError(f"the frontier covers {frontier.rows} rows; the pool has {n}")
    if frontier.picks != picks:
        raise ValueError(
            f"the frontier was left after {frontier.picks} picks; the selection has {picks}"
        )
    return frontier


#: A seeded candidate heap keeps every row given while they are at most this many times its
#: size (no sort; a larger heap costs a little more per pick); beyond, the best rows only.
SEED_ALL = 8


@_njit
def _evaluate_rows(first, pool, prop, state, work, exact, phi, gains):
    """``gains[r]``: the gain of row ``first + r`` at ``state``."""
    for r in range(gains.size):
        gains[r] = _gain(first + r, pool, prop, state, work, exact, phi)


def _seeded_heap(frontier, model, picked, capacity, compiled):
    """A heap seeded from ``frontier`` (its rows' bounds, stale) and the rows appended since
    (evaluated now, fresh at step 0), keeping the best ``capacity`` (``None``: all; all as well
    while they are no more than ``SEED_ALL`` times ``capacity``).

    -> ``(heap, stamp, size, bound, evaluated)``; ``bound`` is ``[T, iT]`` over the rows left
    out (the frontier's own included), ``[-inf, -1]`` when none is."""
    pool, prop, state, work, exact, phi = model
    n = picked.size
    gains = np.empty(n - frontier.rows)
    evaluate = _evaluate_rows if compiled else _evaluate_rows.py_func
    evaluate(frontier.rows, pool, prop, state, work, exact, phi, gains)
    old = frontier.entries
    keys = np.concatenate([-old[:, 0], gains])
    rows = np.concatenate([old[:, 1], np.arange(frontier.rows, n, dtype=np.float64)])
    fresh = np.arange(keys.size) >= old.shape[0]
    bound = np.array(frontier.bound, dtype=np.float64)
    if capacity is not None and keys.size > SEED_ALL * capacity:
        order = np.lexsort((rows, -keys))  # best first, lowest index on ties
        out = order[capacity]
        if keys[out] > bound[0] or (keys[out] == bound[0] and rows[out] < bound[1]):
            bound[:] = (keys[out], rows[out])
        keep = order[:capacity]
        keys, rows, fresh = keys[keep], rows[keep], fresh[keep]
    size = keys.size
    heap = np.empty((max(size, capacity or 0, 1) + ROOT, 2))
    heap[ROOT : ROOT + size, 0] = -keys
    heap[ROOT : ROOT + size, 1] = rows
    (_heapify if compiled else _heapify.py_func)(heap, ROOT + size)
    stamp = stamp_array(n, n)
    stamp[rows.astype(np.int64)] = np.where(fresh, 0, -1)  # 0: this run's first step
    return heap, stamp, size, bound, gains.size


def _extend_engine(engine, model, frontier, picked, limits, istate, fstate, out, compiled):
    """The step function of ``engine`` over the arrays given, and a function giving the
    frontier it leaves (``None`` for the scan); ``istate`` counts the evaluations made here."""
    pool, prop, state, work, exact, phi = model
    k_more, candidates, refresh, row_gain = limits
    n = picked.size
    done = int(picked.sum())

    def left(heap, bound, ub=None):
        size, picks = istate[_SIZE], done + istate[_STEP]
        return heap_frontier(heap, size, bound, n, gain, picks, state, fstate, row_gain, ub)

    def fn(f):
        return f if compiled else f.py_func

    if engine != "lazy":

        def scan(steps):
            return fn(_scan_steps)(
                steps, pool, prop, state, work, exact, phi, picked, istate, fstate, out
            )

        return scan, lambda: None
    m = _candidate_count(n, k_more, candidates)
    gain = "exact" if exact else "gradient"
    if not exact and m < n:  # the candidate engine
        ub = np.full(n, np.inf, dtype=np.float32)
        if frontier is not None and frontier.row_bounds is not None:
            heap, stamp, bound = np.empty((m + ROOT, 2)), stamp_array(n, k_more), np.empty(2)
            ub[: frontier.rows] = frontier.row_bounds
            first = frontier.entries[:, 1].astype(np.int64)
            size, evaluated = fn(_select_candidates)(
                heap, pool, state[2], picked, stamp, 0, m, bound, ub, frontier.rows, first
            )
        elif frontier is not None:
            heap, stamp, size, bound, evaluated = _seeded_heap(frontier, model, picked, m, compiled)
        else:
            heap, stamp, bound = np.empty((m + ROOT, 2)), stamp_array(n, k_more), None
            size, evaluated = 0, 0
        if bound is None:
            bound = np.array([-np.inf, -1.0])
        istate[_SIZE], istate[_EVALS] = size, evaluated
        args = (pool, prop, state, work, phi, heap, stamp, picked, istate, fstate, out, m, bound)
        args = (*args, ub)

        def candidates(steps):
            return fn(_candidate_steps)(steps, *args)

        return candidates, lambda: left(heap, bound, ub)
    if frontier is not None and frontier.bound[0] == -np.inf:
        heap, stamp, size, _, evaluated = _seeded_heap(frontier, model, picked, None, compiled)
    else:
        heap, stamp = np.empty((n + ROOT, 2)), stamp_array(n, n)
        size = fn(_fill_heap)(heap, pool, prop, state, work, exact, phi, picked, stamp, 0)
        evaluated = size
    istate[_SIZE], istate[_EVALS] = size, evaluated
    args = (pool, prop, state, work, exact, phi, heap, stamp, picked, istate, fstate, out)

    def lazy(steps):
        return fn(_lazy_steps)(steps, *args, float(refresh))

    return lazy, lambda: left(heap, None)


def _starting_state(start, frontier, pool, prop, gain, phi, compiled) -> GreedyState:
    """The state :func:`greedy_extend` starts from: ``start`` itself, the state ``frontier``
    holds after the picks ``start`` (no replay), or those picks replayed; checked against the
    pool (rows), P (labels) and the frontier (gain kind, rows, pick count)."""
    n, num_labels = pool[2].size, prop[0].size - 1
    if isinstance(start, GreedyState):
        state = start
    else:
        picks = _check_picks(start, n, repeats=frontier is None)
        if frontier is None:
            state = _replayed(pool, prop, picks, phi, compiled)
        else:  # the state the run stopped at: no replay
            f = _check_frontier(frontier, n, gain, picks.size)
            state = GreedyState(picks, f.x, f.g, f.h, f.objective, f)
    _check_frontier(frontier, n, gain, state.picks.size)
    if state.x.shape != (num_labels,):
        raise ValueError(
            f"state covers {state.x.size} labels; the propagation matrix has {num_labels}"
        )
    if state.picks.size and state.picks.max() >= n:
        raise ValueError(f"state picks row {int(state.picks.max())}; the pool has {n} rows")
    return state


def greedy_extend(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    k_more: int,
    start: GreedyState | np.ndarray,
    objective: Objective | None = None,
    *,
    gain: str = "gradient",
    engine: str = "auto",
    compiled: bool | None = None,
    refresh_fraction: float = 0.05,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    frontier: Frontier | None = None,
    candidates: int | None = None,
) -> tuple[GreedyResult, GreedyState]:
    """Pick ``k_more`` rows not picked yet, greedily from the coverage ``x`` of ``start``.

    The pool, P, ``objective`` and the options are those of
    :func:`hf_mig.core.greedy.greedy_select`; the pool is the one ``state`` was built on with
    any rows appended (same P and objective). ``start``: a :class:`GreedyState` (left as it
    was), or the rows picked so far, in pick order (replayed as :func:`replay_state` does).
    ``k_more``: an integer in ``[1, rows not picked yet]``. Returns the new picks
    (``GreedyResult``: indices, gains, E after each, with ``initial_objective`` the starting E)
    and the state after them.

    ``frontier``: the bounds left by the lazy run that reached ``start`` (``GreedyResult.frontier``
    of the ``greedy_select`` or ``greedy_extend`` whose picks ``start`` holds; by default a
    ``GreedyState``'s own). With it, the lazy engines evaluate only the appended rows up front
    (the rows seen before keep their bounds, which gains never exceed), instead of every row;
    the picks are the same. It must come from the same pool prefix, P, objective and ``gain``.
    ``candidates``: the candidate engine's heap size, as in ``greedy_select``.
    """
    objective = objective or Objective()
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    engine = resolve_engine(engine, objective)
    if isinstance(start, GreedyState) and frontier is None and start.frontier is not None:
        frontier = start.frontier if start.frontier.gain == gain else None
    if frontier is not None:  # before its rows are trusted as checked: its type, gain, size
        _check_frontier(frontier, np.asarray(weights).size, gain, getattr(frontier, "picks", 0))
    known = None  # the frontier's pool prefix was checked by the run that left it
    if isinstance(frontier, Frontier) and np.isfinite(frontier.row_gain):
        known = (frontier.rows, frontier.row_gain)
    pool, prop, limits = check_inputs(
        indptr, label_ids, weights, propagation, objective, known=known
    )
    n = pool[2].size
    num_labels = prop[0].size - 1
    compiled = resolve_compiled(compiled)
    phi = objective.kernel_args
    state = _starting_state(start, frontier, pool, prop, gain, phi, compiled)
    k_more = _check_k_more(k_more, n - state.picks.size)
    new = state.copy()
    model = (pool, prop, (new.x, new.g, new.h), _work(num_labels), gain == "exact", phi)
    istate = np.zeros(5, dtype=np.int64)
    fstate = np.array([state.objective])
    out = (np.empty(k_more, dtype=np.int64), np.empty(k_more), np.empty(k_more))
    picked = np.zeros(n, dtype=np.bool_)
    picked[state.picks] = True
    if np.count_nonzero(picked) != state.picks.size:
        raise ValueError(_REPEATED)
    sizes = (k_more, candidates, refresh_fraction, limits["row_gain"])
    run, finish = _extend_engine(
        engine, model, frontier, picked, sizes, istate, fstate, out, compiled
    )
    show = progress if progress is not None else n > 2_000_000
    steps = chunk_steps(chunk_size, compiled)
    run_in_chunks(run, k_more, f"MIG extend ({engine})", show, steps)
    new.picks = np.concatenate([state.picks, out[0]])
    new.objective = float(fstate[0])
    new.frontier = finish()
    stats = {
        "engine": engine,
        "compiled": compiled,
        "gain": gain,
        "evaluations": int(istate[_EVALS]),
        "refreshes": int(istate[_REFRESHES]),
        "pool_size": n,
        "num_labels": num_labels,
        "already_picked": int(state.picks.size),
    }
    return GreedyResult(out[0], out[1], out[2], state.objective, stats), new


def check_same_prefix(
    old: PoolEncoding,
    new: PoolEncoding,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
) -> None:
    """Raise :class:`PoolValidationError` unless ``new``'s first ``old.num_rows`` rows encode
    exactly as ``old``'s rows (same labels in the vocabulary, same label occurrences, same
    scores) over the same vocabulary; the message names the first row that differs and its
    column."""
    n_old = old.num_rows
    if list(new.vocabulary) != list(old.vocabulary):
        raise PoolValidationError("the two encodings use different vocabularies")
    if new.num_rows < n_old:
        raise PoolValidationError(
            f"the pool has {new.num_rows} rows, fewer than the {n_old} the selection was made "
            "from; it must be that pool with rows appended"
        )
    first = {
        labels_column: _first_label_difference(old, new),
        score_column: _first(old.scores != new.scores[:n_old]),
    }
    differ = {column: row for column, row in first.items() if row is not None}
    if differ:
        column, row = min(differ.items(), key=lambda item: item[1])
        raise PoolValidationError(
            f"row {row}: column {column!r} differs from the pool the selection was made from; "
            f"the pool must be that pool, its first {n_old} rows unchanged, with rows appended "
            "(run select on the new pool instead)"
        )


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _first_label_difference(old: PoolEncoding, new: PoolEncoding) -> int | None:
    """First of ``old``'s rows whose labels (or label occurrences) differ in ``new``."""
    n_old = old.num_rows
    changed = _first(old.label_counts() != new.label_counts()[:n_old])
    if old.label_occurrences is not None and new.label_occurrences is not None:
        occurrences = _first(old.label_occurrences != new.label_occurrences[:n_old])
        if occurrences is not None and (changed is None or occurrences < changed):
            changed = occurrences
    # Up to the first row whose label count changed, both CSRs are aligned.
    end = int(old.indptr[n_old if changed is None else changed])
    position = _first(old.label_ids[:end] != new.label_ids[:end])
    if position is None:
        return changed
    return int(np.searchsorted(old.indptr, position, side="right")) - 1
