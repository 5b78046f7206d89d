"""Greedy maximisation of MIG's dataset information E(S) = sum_k phi(x_k), x = sum_{i in S} u_i.

Sample i is given sparsely: its label ids ``label_ids[indptr[i]:indptr[i+1]]`` (each once) and its
weight ``w_i`` (the score, or score / #labels); its propagated information is
``u_i = w_i * v_i @ P``. Propagated rows are never materialised: the gradient gain is
``u_i . phi'(x) = w_i * sum_{l in L_i} h_l`` with ``h = P phi'(x)``, and after a pick only the
labels within two hops of the picked sample's labels change ``h``.

Engines, all returning the same picks in the same order (ties go to the lowest index):

* ``"lazy"``: lazy greedy over a binary max-heap keyed by (gain, index) holding stale upper
  bounds; only the top is re-evaluated. Exact because gains never rise (phi concave, u_i >= 0).
  When stale re-evaluations since the last refresh exceed ``refresh_fraction`` of the heap,
  every remaining gain is recomputed and the heap rebuilt.
  With gradient gains and a pool larger than its candidate heap (``candidates`` rows, by
  default ``max(16384, k // 2)``), the heap holds only the best rows of a full pass and the
  best row left out bounds all the others (see ``_select_candidates``); a new pass is made
  when the heap's best falls to that bound. The picks are the same; the heap is small, so a
  pool of 100M rows needs no 1.6 GB heap.
* ``"scan"``: every remaining gain evaluated at every step (required when phi is not concave).

Gradient gains are sums of non-increasing terms, so they are non-increasing in floating point
too and lazy greedy reproduces the full scan bit for bit. Exact gains ``phi(x+u) - phi(x)`` carry
rounding noise; candidates whose exact gains agree to within that noise (e.g. any linear phi) may
come out in a different order than the full scan.

Both are compiled with numba when it is installed (``compiled=True``); the same functions run
as plain Python otherwise, slower but identical.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hf_mig.core._jit import HAVE_NUMBA, resolve_compiled  # noqa: F401 (HAVE_NUMBA: public)
from hf_mig.core._jit import njit as _njit
from hf_mig.core._jit import njit_inline as _njit_inline
from hf_mig.core.encoding import check_k
from hf_mig.core.inputs import check_inputs
from hf_mig.core.objective import Objective

GAIN_KINDS = ("gradient", "exact")
#: The candidate engine's heap holds max(CANDIDATES_MIN, k // CANDIDATES_PICKS_PER_ROW) rows;
#: pools no larger use the plain lazy heap (measured best on 1M to 100M-row pools).
CANDIDATES_MIN = 1 << 14
CANDIDATES_PICKS_PER_ROW = 2
ENGINES = ("auto", "lazy", "scan")

# The kernels pass their arrays in small tuples:
#   pool = (indptr, label_ids, weights)       the samples, CSR over label ids
#   prop = (p_indptr, p_indices, p_data)      P, CSR
#   state = (x, g, h)                         coverage x, g = phi'(x), h = P g
#   work = (acc, touched, mark)               scratch of length K, zero between calls
#   phi = (code, a, b, alpha)                 the objective (code 0 = pow, 1 = exp)
#   out = (picks, gains, objective trace)
#   istate = [heap size, step, stale evaluations, refreshes, evaluations]; fstate = [E]
_SIZE, _STEP, _STALE, _REFRESHES, _EVALS = range(5)


# ---------------------------------------------------------------------------- phi
@_njit_inline
def _phi(x, phi):
    code, a, b, alpha = phi
    if code == 0:
        return (x + a) ** b
    return 1.0 - math.exp(-alpha * x)


@_njit_inline
def _dphi(x, phi):
    code, a, b, alpha = phi
    if code == 0:
        return b * (x + a) ** (b - 1.0)
    return alpha * math.exp(-alpha * x)


# ---------------------------------------------------------------------------- gains
@_njit_inline
def _gradient_gain(i, pool, h):
    """``w_i * sum_{l in L_i} h_l``."""
    indptr, lab, w = pool
    if w[i] == 0.0:
        return 0.0
    s = 0.0
    for t in range(indptr[i], indptr[i + 1]):
        s += h[lab[t]]
    return w[i] * s


@_njit_inline
def _exact_gain(i, pool, prop, x, work, phi):
    """``sum_j phi(x_j + u_ij) - phi(x_j)`` over the support of u_i."""
    indptr, lab, w = pool
    p_indptr, p_indices, p_data = prop
    acc, touched, _ = work
    wi = w[i]
    if wi == 0.0:
        return 0.0
    n = 0
    for t in range(indptr[i], indptr[i + 1]):
        lb = lab[t]
        for q in range(p_indptr[lb], p_indptr[lb + 1]):
            j = p_indices[q]
            if acc[j] == 0.0:  # P has no explicit zeros and w_i > 0: first visit of j
                touched[n] = j
                n += 1
            acc[j] += wi * p_data[q]
    s = 0.0
    for m in range(n):
        j = touched[m]
        s += _phi(x[j] + acc[j], phi) - _phi(x[j], phi)
        acc[j] = 0.0
    return s


@_njit_inline
def _gain(i, pool, prop, state, work, exact, phi):
    if exact:
        return _exact_gain(i, pool, prop, state[0], work, phi)
    return _gradient_gain(i, pool, state[2])


# ---------------------------------------------------------------------------- heap
@_njit_inline
def _less(ka, ia, kb, ib):
    return ka < kb or (ka == kb and ia < ib)


# The heap is a 4-ary min-heap over rows ``(-gain, index)`` of a (n + ROOT, 2) float64 array
# (indices are exact in float64 up to 2**53). Key and index sit side by side and, with the root
# at row ROOT = 3, the four children of a node fill one 64-byte cache line.
ROOT = 3


@_njit_inline
def _child(pos):
    return 4 * pos - 8


@_njit
def _sift_down(heap, pos, end):
    """Restore the heap below ``pos``; live rows are ``ROOT <= row < end``."""
    k0 = heap[pos, 0]
    i0 = heap[pos, 1]
    while True:
        first = _child(pos)
        if first >= end:
            break
        best = first
        for c in range(first + 1, min(first + 4, end)):
            if _less(heap[c, 0], heap[c, 1], heap[best, 0], heap[best, 1]):
                best = c
        if not _less(heap[best, 0], heap[best, 1], k0, i0):
            break
        heap[pos, 0] = heap[best, 0]
        heap[pos, 1] = heap[best, 1]
        pos = best
    heap[pos, 0] = k0
    heap[pos, 1] = i0


@_njit
def _heapify(heap, end):
    for pos in range(end - 1, ROOT - 1, -1):
        if _child(pos) < end:
            _sift_down(heap, pos, end)


@_njit
def _fill_heap(heap, pool, prop, state, work, exact, phi, picked, stamp, t):
    """Evaluate every unpicked sample, in index order, into the heap and heapify; -> size."""
    pos = ROOT
    for j in range(picked.size):
        if not picked[j]:
            heap[pos, 0] = -_gain(j, pool, prop, state, work, exact, phi)
            heap[pos, 1] = j
            stamp[j] = t
            pos += 1
    _heapify(heap, pos)
    return pos - ROOT


# ---------------------------------------------------------------------------- state update
@_njit
def _add_sample(i, pool, prop, state, work, phi):
    """x += u_i, then refresh g and h where they changed; return the change of E."""
    indptr, lab, w = pool
    p_indptr, p_indices, p_data = prop
    x, g, h = state
    acc, touched, mark = work
    wi = w[i]
    n = 0
    for t in range(indptr[i], indptr[i + 1]):
        lb = lab[t]
        for q in range(p_indptr[lb], p_indptr[lb + 1]):
            j = p_indices[q]
            if mark[j] == 0:
                mark[j] = 1
                touched[n] = j
                n += 1
            acc[j] += wi * p_data[q]
    delta = 0.0
    for m in range(n):
        j = touched[m]
        old = x[j]
        x[j] = old + acc[j]
        acc[j] = 0.0
        mark[j] = 0
        delta += _phi(x[j], phi) - _phi(old, phi)
        g[j] = _dphi(x[j], phi)
    # h_l = sum_j P[l, j] g_j changes for every l linked to a touched j (P's pattern is
    # symmetric, so those are the column indices of row j).
    for m in range(n):
        for q in range(p_indptr[touched[m]], p_indptr[touched[m] + 1]):
            lb = p_indices[q]
            if mark[lb] == 0:
                mark[lb] = 1
                s = 0.0
                for r in range(p_indptr[lb], p_indptr[lb + 1]):
                    s += p_data[r] * g[p_indices[r]]
                h[lb] = s
    for m in range(n):
        for q in range(p_indptr[touched[m]], p_indptr[touched[m] + 1]):
            mark[p_indices[q]] = 0
    return delta


@_njit_inline
def _record(i, gain, pool, prop, state, work, phi, istate, fstate, out):
    t = istate[_STEP]
    fstate[0] += _add_sample(i, pool, prop, state, work, phi)
    out[0][t] = i
    out[1][t] = gain
    out[2][t] = fstate[0]
    istate[_STEP] = t + 1


# ---------------------------------------------------------------------------- engines
@_njit_inline
def _update_top(heap, key, stamp, t, istate):
    """Give the heap's top its key re-evaluated at step ``t`` and restore the heap."""
    stamp[np.int64(heap[ROOT, 1])] = t
    heap[ROOT, 0] = key
    _sift_down(heap, ROOT, ROOT + istate[_SIZE])
    istate[_EVALS] += 1
    istate[_STALE] += 1


@_njit_inline
def _pick_top(i, heap, pool, prop, state, work, phi, picked, istate, fstate, out):
    """Pop the heap's top (row ``i``, its gain current) and add it to the selection."""
    gain = -heap[ROOT, 0]
    size = istate[_SIZE] - 1
    heap[ROOT, 0] = heap[ROOT + size, 0]
    heap[ROOT, 1] = heap[ROOT + size, 1]
    istate[_SIZE] = size
    if size > 0:
        _sift_down(heap, ROOT, ROOT + size)
    picked[i] = True
    _record(i, gain, pool, prop, state, work, phi, istate, fstate, out)


@_njit
def _lazy_steps(
    steps,
    pool,
    prop,
    state,
    work,
    exact,
    phi,
    heap,
    stamp,
    picked,
    istate,
    fstate,
    out,
    refresh_limit,
):
    """Run up to ``steps`` picks of lazy greedy from the state held in the arrays."""
    for _ in range(steps):
        size = istate[_SIZE]
        if size == 0:
            break
        t = istate[_STEP]
        while True:
            i = np.int64(heap[ROOT, 1])
            if stamp[i] == t:  # evaluated at this step: its gain is current, and maximal
                break
            _update_top(heap, -_gain(i, pool, prop, state, work, exact, phi), stamp, t, istate)
            if istate[_STALE] > refresh_limit * size:
                _fill_heap(heap, pool, prop, state, work, exact, phi, picked, stamp, t)
                istate[_EVALS] += size
                istate[_STALE] = 0
                istate[_REFRESHES] += 1
        _pick_top(i, heap, pool, prop, state, work, phi, picked, istate, fstate, out)
    return istate[_STEP]


@_njit
def _scan_steps(steps, pool, prop, state, work, exact, phi, picked, istate, fstate, out):
    """Run up to ``steps`` picks of the full-scan greedy (argmax, lowest index on ties)."""
    n = picked.size
    for _ in range(steps):
        if istate[_STEP] >= n:
            break
        best = -1
        best_gain = 0.0
        for i in range(n):
            if not picked[i]:
                gi = _gain(i, pool, prop, state, work, exact, phi)
                if best < 0 or gi > best_gain:
                    best = i
                    best_gain = gi
        istate[_EVALS] += n - istate[_STEP]
        picked[best] = True
        _record(best, best_gain, pool, prop, state, work, phi, istate, fstate, out)
    return istate[_STEP]


# ---------------------------------------------------------------------------- candidates
#: No rows to offer first (:func:`_select_candidates` over the whole pool).
NO_ROWS = np.empty(0, dtype=np.int64)

# The candidate engine: lazy greedy over a heap of the best ``m`` rows only. A full pass
# evaluates every row left, keeps the best ``m`` (gain first, lowest index on ties) in the heap
# and remembers the best row left out, ``(T, iT)``. Gains only fall, so every row outside the
# heap stays at or below ``(T, iT)``: the heap's top, once current, is the next pick while it
# beats ``(T, iT)``; otherwise (or when the heap runs empty) the pass is repeated. The picks are
# those of the full scan, as gradient gains never rise in floating point; it evaluates gradient
# gains only (a literal call: a gain kind chosen at run time slows these loops several times).
# Every gain it evaluates is also stored in ``ub`` as float32 (a plain store, rounded to
# nearest); :func:`_bound32` widens such a value into an upper bound of the row's gain from
# then on, which a continuation (:mod:`hf_mig.core.incremental`) starts from.
_F32_SLACK = 1.0 + 2.0**-22  # > the relative rounding of float32 (2**-24), with room for ours
_F32_TINY = 2e-45  # > the absolute rounding of float32 near zero (subnormals: 1.4e-45)
_F32_MAX = float(np.finfo(np.float32).max)


@_njit_inline
def _as32(g):
    """``g`` for a float32 store: beyond float32's range, ``inf`` (which still bounds it) with
    no overflow warning in plain Python."""
    return g if g <= _F32_MAX else np.inf


@_njit_inline
def _bound32(stored):
    """An upper bound of the gain ``g`` whose float32 rounding is ``stored`` (``g >= 0``)."""
    return np.float64(stored) * _F32_SLACK + _F32_TINY


@_njit_inline
def _to_max_heap(heap, size):
    """The min-heap of ``(gain, -index)`` a pass fills as the max-heap of ``(-gain, index)``
    the steps use."""
    for pos in range(ROOT, ROOT + size):
        heap[pos, 0] = -heap[pos, 0]
        heap[pos, 1] = -heap[pos, 1]
    _heapify(heap, ROOT + size)


@_njit
def _select_candidates(heap, pool, h, picked, stamp, t, m, bound, ub, known, first):
    """Evaluate every unpicked row from ``known`` on (stamped ``t``; rows before it take their
    bound in ``ub`` as their key and stay stale, stamp -1); the best ``m`` go into ``heap`` as
    a max-heap (rows ``(-gain, index)``), the best left out into ``bound = [T, iT]`` (``-inf``
    when none); -> (heap size, rows evaluated). The rows ``first`` (below ``known``: a previous
    heap's, whose bounds are the highest) are offered before the others, so that few rows
    displace one; which rows are kept does not depend on the order."""
    size = 0
    evaluated = 0
    best_g = -np.inf
    best_i = -1.0
    offered = np.zeros(known, dtype=np.bool_)
    lead = first.size
    for r in range(lead + picked.size):
        if r < lead:
            j = first[r]
            if j >= known or picked[j] or offered[j]:
                continue
            offered[j] = True
            g = _bound32(ub[j])
            st = -1
        else:
            j = r - lead
            if picked[j]:
                continue
            if j < known:
                if offered[j]:
                    continue
                g = _bound32(ub[j])
                st = -1
            else:
                evaluated += 1
                g = _gradient_gain(j, pool, h)
                ub[j] = _as32(g)
                st = t
        # while filling, the heap is a min-heap of (gain, -index): its root is the worst row
        if size < m:
            heap[ROOT + size, 0] = g
            heap[ROOT + size, 1] = -j
            stamp[j] = st
            size += 1
            if size == m:
                _heapify(heap, ROOT + size)
            continue
        out_g = g
        out_i = float(j)
        if _less(heap[ROOT, 0], heap[ROOT, 1], g, -j):  # the root is worse: swap it out
            out_g = heap[ROOT, 0]
            out_i = -heap[ROOT, 1]
            heap[ROOT, 0] = g
            heap[ROOT, 1] = -j
            stamp[j] = st
            _sift_down(heap, ROOT, ROOT + size)
        if out_g > best_g or (out_g == best_g and out_i < best_i):
            best_g = out_g
            best_i = out_i
    bound[0] = best_g
    bound[1] = best_i
    _to_max_heap(heap, size)
    return size, evaluated


@_njit
def _candidate_steps(
    steps,
    pool,
    prop,
    state,
    work,
    phi,
    heap,
    stamp,
    picked,
    istate,
    fstate,
    out,
    m,
    bound,
    ub,
):
    """Run up to ``steps`` picks of the candidate engine from the state held in the arrays."""
    for _ in range(steps):
        if istate[_STEP] >= picked.size:
            break
        t = istate[_STEP]
        while True:
            size = istate[_SIZE]
            if size == 0:
                size, evaluated = _select_candidates(
                    heap, pool, state[2], picked, stamp, t, m, bound, ub, 0, NO_ROWS
                )
                istate[_SIZE] = size
                istate[_EVALS] += evaluated
                istate[_REFRESHES] += 1
                continue
            i = np.int64(heap[ROOT, 1])
            if stamp[i] == t:  # current, and the best in the heap
                g = -heap[ROOT, 0]
                if g > bound[0] or (g == bound[0] and i < bound[1]):
                    break
                istate[_SIZE] = 0  # a row left out may be better: select again
                continue
            g = _gradient_gain(i, pool, state[2])
            ub[i] = _as32(g)
            _update_top(heap, -g, stamp, t, istate)
        _pick_top(i, heap, pool, prop, state, work, phi, picked, istate, fstate, out)
    return istate[_STEP]


# ---------------------------------------------------------------------------- driver
@dataclass
class Frontier:
    """Where a lazy greedy stopped: its state and upper bounds on the gains of the rows not
    picked, so that a continuation neither replays the picks nor evaluates the rows it has seen.

    ``entries``: rows ``(-bound, index)`` (a gain cannot exceed its bound); ``bound``: ``(T,
    iT)``, which bounds every unpicked row of the first ``rows`` that is not in ``entries``
    (``(-inf, -1)`` when ``entries`` holds them all); ``gain``: the gain kind of the bounds;
    ``picks``: how many rows were picked; ``x``, ``g``, ``h``, ``objective``: the state after
    them (see :class:`hf_mig.core.incremental.GreedyState`); ``row_gain``: the overflow check's
    bound over the first ``rows`` rows (:func:`~hf_mig.core.inputs.information_bounds`);
    ``row_bounds`` (the candidate engine's): for each of the first ``rows`` rows, its latest
    gain evaluated, as float32 (``inf`` if never evaluated; the kernels widen them into upper
    bounds of the gains from then on), from which a continuation picks its first candidates
    without evaluating the pool again. The arrays are only read.
    """

    entries: np.ndarray
    bound: tuple[float, float]
    rows: int
    gain: str
    picks: int
    x: np.ndarray
    g: np.ndarray
    h: np.ndarray
    objective: float
    row_gain: float = math.nan
    row_bounds: np.ndarray | None = None


@dataclass
class GreedyResult:
    """Picks in order, the gain of each pick when it was made, and E after each pick;
    ``frontier`` (lazy engines) the bounds a continuation starts from
    (:func:`hf_mig.core.incremental.greedy_extend`)."""

    indices: np.ndarray
    gains: np.ndarray
    objective_trace: np.ndarray
    initial_objective: float
    stats: dict = field(default_factory=dict)
    frontier: Frontier | None = None


def heap_frontier(
    heap, size, bound, n, gain, picks, state, fstate, row_gain, row_bounds=None
) -> Frontier:
    """The :class:`Frontier` of a lazy engine over ``n`` rows: its heap's ``size`` live rows (a
    view), its candidate ``bound`` (``None``: the heap holds every unpicked row), the number of
    ``picks``, ``state = (x, g, h)`` and E (``fstate[0]``) it stopped at, the pool's
    ``row_gain`` (:func:`~hf_mig.core.inputs.information_bounds`) and the candidate engine's
    ``row_bounds``."""
    far = (-np.inf, -1.0) if bound is None else (float(bound[0]), float(bound[1]))
    x, g, h = state
    live = heap[ROOT : ROOT + int(size)]
    return Frontier(
        live, far, n, gain, int(picks), x, g, h, float(fstate[0]), float(row_gain), row_bounds
    )


def _initial_state(prop, phi, k, spent=False):
    """The kernels' arrays for the empty selection, with room for ``k`` picks.

    -> ``(state, work, istate, fstate, out)`` as described at the top of this module;
    ``fstate = [E(empty)]``, or ``[E(empty), 0.0]`` with ``spent`` (the cost spent so far).
    """
    p_indptr, p_indices, p_data = prop
    num_labels = p_indptr.size - 1
    g = np.full(num_labels, _dphi.py_func(0.0, phi))
    h = sp.csr_matrix((p_data, p_indices, p_indptr), shape=(num_labels, num_labels)) @ g
    state = (np.zeros(num_labels), g, h)
    work = (np.zeros(num_labels), np.zeros(num_labels, np.int64), np.zeros(num_labels, np.int8))
    istate = np.zeros(5, dtype=np.int64)
    initial = float(num_labels * _phi.py_func(0.0, phi))
    fstate = np.array([initial, 0.0] if spent else [initial])
    out = (np.empty(k, dtype=np.int64), np.empty(k), np.empty(k))
    return state, work, istate, fstate, out


def stamp_array(n: int, k: int) -> np.ndarray:
    """Zeros for the step at which each of ``n`` rows was last evaluated, over ``k`` steps:
    int32 when every step number fits, else int64."""
    return np.zeros(n, dtype=np.int32 if k < np.iinfo(np.int32).max else np.int64)


def _candidate_count(n: int, k: int, candidates: int | None) -> int:
    """Rows the candidate engine keeps in its heap (``candidates``, or a default from k)."""
    if candidates is None:
        return max(CANDIDATES_MIN, k // CANDIDATES_PICKS_PER_ROW)
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
        raise TypeError(f"candidates must be an integer, got {candidates!r}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    return int(candidates)


def chunk_steps(chunk_size: int, compiled: bool) -> int:
    """Picks per kernel call: ``chunk_size`` compiled, a tenth of it in plain Python (so the
    progress bar moves)."""
    return chunk_size if compiled else max(1, chunk_size // 10)


def run_in_chunks(run: Callable[[int], int], total: int, desc: str, show: bool, steps: int) -> None:
    """Call ``run(n)`` (which makes up to ``n`` picks and returns the picks made so far) until
    ``total`` picks are made, ``steps`` at a time, with a progress bar."""
    with tqdm(total=total, desc=desc, unit="pick", disable=not show) as bar:
        done = 0
        while done < total:
            new_done = int(run(min(steps, total - done)))
            bar.update(new_done - done)
            done = new_done


def resolve_engine(engine: str, objective: Objective) -> str:
    """``engine`` once it is one of ``ENGINES``, with ``"auto"`` resolved: lazy greedy when phi
    is concave, else the full scan, which also replaces ``"lazy"`` (with a warning) when phi is
    not concave."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        return "lazy" if objective.is_concave else "scan"
    if engine == "lazy" and not objective.is_concave:
        warnings.warn(
            f"phi={objective.phi} with b={objective.b} is not concave: gains can rise, so lazy "
            "greedy is not exact; using the full scan instead.",
            stacklevel=3,
        )
        return "scan"
    return engine


def _greedy_runner(engine, model, arrays, k, m, refresh_fraction, compiled):
    """``(run, leave)`` for a greedy from the empty selection: ``run(steps)`` makes up to
    ``steps`` picks with ``engine`` (the candidate engine when lazy with gradient gains and
    ``m`` < the pool's rows) and returns the picks made so far; ``leave(gain, row_gain)`` gives
    the lazy engines' :class:`Frontier`. ``model = (pool, prop, state, work, exact, phi)``,
    ``arrays = (picked, istate, fstate, out)``."""
    pool, prop, state, work, exact, phi = model
    picked, istate, fstate, out = arrays
    n = picked.size

    def fn(f):
        return f if compiled else f.py_func

    def leave_with(heap, bound=None, ub=None):
        def leave(gain, row_gain):
            size = istate[_SIZE]
            return heap_frontier(heap, size, bound, n, gain, k, state, fstate, row_gain, ub)

        return leave

    if engine == "lazy" and not exact and m < n:
        heap = np.empty((m + ROOT, 2))
        bound = np.array([-np.inf, -1.0])
        ub = np.full(n, np.inf, dtype=np.float32)
        args = (pool, prop, state, work, phi, heap, stamp_array(n, k), picked, istate, fstate)
        args = (*args, out, m, bound, ub)
        return lambda steps: fn(_candidate_steps)(steps, *args), leave_with(heap, bound, ub)
    if engine == "lazy":
        heap = np.empty((n + ROOT, 2))
        stamp = stamp_array(n, k)
        istate[_SIZE] = fn(_fill_heap)(heap, pool, prop, state, work, exact, phi, picked, stamp, 0)
        istate[_EVALS] = n
        args = (pool, prop, state, work, exact, phi, heap, stamp, picked, istate, fstate, out)
        args = (*args, float(refresh_fraction))
        return lambda steps: fn(_lazy_steps)(steps, *args), leave_with(heap)
    args = (pool, prop, state, work, exact, phi, picked, istate, fstate, out)
    return lambda steps: fn(_scan_steps)(steps, *args), None


def greedy_select(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    k: int,
    objective: Objective | None = None,
    *,
    gain: str = "gradient",
    engine: str = "auto",
    compiled: bool | None = None,
    refresh_fraction: float = 0.05,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    candidates: int | None = None,
) -> GreedyResult:
    """Pick ``k`` samples greedily; see the module docstring for the model and the engines.

    ``indptr``/``label_ids``: CSR of sample -> label ids (each label at most once per sample);
    ``weights``: per-sample weight ``>= 0``; ``propagation``: P (K x K, non-negative, CSR).
    int64 ``indptr``, int32 or int64 ``label_ids`` and float64 ``weights`` (memory-mapped
    ones included) are read in place, never copied; besides them the lazy engine holds, per
    row, a flag and the step at which it was last evaluated (int32 while ``k`` fits), and a
    heap of 16 bytes per row (per candidate with gradient gains: ``candidates`` rows, see the
    module docstring; the picks do not depend on it, and the candidate engine keeps a float32
    bound per row instead, for :func:`hf_mig.core.incremental.greedy_extend`).
    ``engine="auto"`` uses lazy greedy when phi is concave and the full scan otherwise (with a
    warning). ``compiled=None`` uses numba when installed.
    """
    objective = objective or Objective()
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    pool, prop, limits = check_inputs(indptr, label_ids, weights, propagation, objective)
    n = pool[2].size
    k = check_k(k, n)
    engine = resolve_engine(engine, objective)
    compiled = resolve_compiled(compiled)
    phi = objective.kernel_args
    state, work, istate, fstate, out = _initial_state(prop, phi, k)
    initial = float(fstate[0])
    model = (pool, prop, state, work, gain == "exact", phi)
    arrays = (np.zeros(n, dtype=np.bool_), istate, fstate, out)
    m = _candidate_count(n, k, candidates)
    run, leave = _greedy_runner(engine, model, arrays, k, m, refresh_fraction, compiled)
    show = (
        progress
        if progress is not None
        else (k * (1 if engine == "lazy" else n)) > 5e9 or n > 2_000_000
    )
    run_in_chunks(run, k, f"MIG greedy ({engine})", show, chunk_steps(chunk_size, compiled))
    stats = {
        "engine": engine,
        "compiled": bool(compiled),
        "gain": gain,
        "evaluations": int(istate[_EVALS]),
        "refreshes": int(istate[_REFRESHES]),
        "pool_size": n,
        "num_labels": prop[0].size - 1,
    }
    frontier = leave(gain, limits["row_gain"]) if engine == "lazy" else None
    return GreedyResult(out[0], out[1], out[2], initial, stats, frontier)
