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
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ._jit import HAVE_NUMBA
from ._jit import njit as _njit
from ._jit import njit_inline as _njit_inline
from .objective import Objective

GAIN_KINDS = ("gradient", "exact")
ENGINES = ("auto", "lazy", "scan")

# integer state slots
_SIZE, _STEP, _STALE, _REFRESHES, _EVALS = range(5)


# ---------------------------------------------------------------------------- phi
@_njit_inline
def _phi(x, code, a, b, alpha):
    if code == 0:
        return (x + a) ** b
    return 1.0 - math.exp(-alpha * x)


@_njit_inline
def _dphi(x, code, a, b, alpha):
    if code == 0:
        return b * (x + a) ** (b - 1.0)
    return alpha * math.exp(-alpha * x)


# ---------------------------------------------------------------------------- gains
@_njit_inline
def _gain(
    i, indptr, lab, w, p_indptr, p_indices, p_data, x, h, exact, acc, touched, code, a, b, al
):
    """Gain of sample i: gradient ``w_i * sum h_l`` or exact ``sum phi(x+u_i) - phi(x)``."""
    wi = w[i]
    if wi == 0.0:
        return 0.0
    if not exact:
        s = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            s += h[lab[t]]
        return wi * s
    n = 0
    for t in range(indptr[i], indptr[i + 1]):
        lb = lab[t]
        for q in range(p_indptr[lb], p_indptr[lb + 1]):
            j = p_indices[q]
            if acc[j] == 0.0:
                touched[n] = j
                n += 1
            acc[j] += wi * p_data[q]
    s = 0.0
    for m in range(n):
        j = touched[m]
        uj = acc[j]
        acc[j] = 0.0
        if uj != 0.0:
            s += _phi(x[j] + uj, code, a, b, al) - _phi(x[j], code, a, b, al)
    return s


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
        last = min(first + 4, end)
        for c in range(first + 1, last):
            if _less(heap[c, 0], heap[c, 1], heap[best, 0], heap[best, 1]):
                best = c
        if _less(heap[best, 0], heap[best, 1], k0, i0):
            heap[pos, 0] = heap[best, 0]
            heap[pos, 1] = heap[best, 1]
            pos = best
        else:
            break
    heap[pos, 0] = k0
    heap[pos, 1] = i0


@_njit
def _heapify(heap, end):
    for pos in range(end - 1, ROOT - 1, -1):
        if _child(pos) < end:
            _sift_down(heap, pos, end)


@_njit
def _fill_heap(
    heap,
    indptr,
    lab,
    w,
    p_indptr,
    p_indices,
    p_data,
    x,
    h,
    exact,
    acc,
    touched,
    picked,
    stamp,
    t,
    code,
    a,
    b,
    al,
):
    """Evaluate every unpicked sample in index order into the heap, then heapify; -> size."""
    pos = ROOT
    n = w.size
    if exact:
        for j in range(n):
            if not picked[j]:
                heap[pos, 0] = -_gain(
                    j,
                    indptr,
                    lab,
                    w,
                    p_indptr,
                    p_indices,
                    p_data,
                    x,
                    h,
                    True,
                    acc,
                    touched,
                    code,
                    a,
                    b,
                    al,
                )
                heap[pos, 1] = j
                stamp[j] = t
                pos += 1
    else:
        for j in range(n):
            if not picked[j]:
                s = 0.0
                for q in range(indptr[j], indptr[j + 1]):
                    s += h[lab[q]]
                heap[pos, 0] = -(w[j] * s) if w[j] != 0.0 else -0.0
                heap[pos, 1] = j
                stamp[j] = t
                pos += 1
    _heapify(heap, pos)
    return pos - ROOT


# ---------------------------------------------------------------------------- state update
@_njit
def _add_sample(
    i, indptr, lab, w, p_indptr, p_indices, p_data, x, g, h, acc, touched, mark, code, a, b, al
):
    """x += u_i, then refresh g and h where they changed; return the change of E."""
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
        delta += _phi(x[j], code, a, b, al) - _phi(old, code, a, b, al)
        g[j] = _dphi(x[j], code, a, b, al)
    # h_l = sum_j P[l, j] g_j changes for every l linked to a touched j (P's pattern is
    # symmetric, so those are the column indices of row j).
    for m in range(n):
        j = touched[m]
        for q in range(p_indptr[j], p_indptr[j + 1]):
            lb = p_indices[q]
            if mark[lb] == 0:
                mark[lb] = 1
                s = 0.0
                for r in range(p_indptr[lb], p_indptr[lb + 1]):
                    s += p_data[r] * g[p_indices[r]]
                h[lb] = s
    for m in range(n):
        j = touched[m]
        for q in range(p_indptr[j], p_indptr[j + 1]):
            mark[p_indices[q]] = 0
    return delta


# ---------------------------------------------------------------------------- engines
@_njit
def _lazy_steps(
    steps,
    indptr,
    lab,
    w,
    p_indptr,
    p_indices,
    p_data,
    x,
    g,
    h,
    heap,
    stamp,
    picked,
    istate,
    fstate,
    out_idx,
    out_gain,
    out_obj,
    acc,
    touched,
    mark,
    exact,
    refresh_limit,
    code,
    a,
    b,
    al,
):
    """Run up to ``steps`` picks of lazy greedy from the state held in the arrays."""
    for _ in range(steps):
        size = istate[_SIZE]
        if size == 0:
            break
        t = istate[_STEP]
        while True:
            i = np.int64(heap[ROOT, 1])
            if stamp[i] == t:
                break
            gi = _gain(
                i,
                indptr,
                lab,
                w,
                p_indptr,
                p_indices,
                p_data,
                x,
                h,
                exact,
                acc,
                touched,
                code,
                a,
                b,
                al,
            )
            istate[_EVALS] += 1
            stamp[i] = t
            heap[ROOT, 0] = -gi
            _sift_down(heap, ROOT, ROOT + size)
            istate[_STALE] += 1
            if istate[_STALE] > refresh_limit * size:
                _fill_heap(
                    heap,
                    indptr,
                    lab,
                    w,
                    p_indptr,
                    p_indices,
                    p_data,
                    x,
                    h,
                    exact,
                    acc,
                    touched,
                    picked,
                    stamp,
                    t,
                    code,
                    a,
                    b,
                    al,
                )
                istate[_EVALS] += size
                istate[_STALE] = 0
                istate[_REFRESHES] += 1
        i = np.int64(heap[ROOT, 1])
        gain = -heap[ROOT, 0]
        size -= 1
        heap[ROOT, 0] = heap[ROOT + size, 0]
        heap[ROOT, 1] = heap[ROOT + size, 1]
        istate[_SIZE] = size
        picked[i] = True
        if size > 0:
            _sift_down(heap, ROOT, ROOT + size)
        fstate[0] += _add_sample(
            i,
            indptr,
            lab,
            w,
            p_indptr,
            p_indices,
            p_data,
            x,
            g,
            h,
            acc,
            touched,
            mark,
            code,
            a,
            b,
            al,
        )
        out_idx[t] = i
        out_gain[t] = gain
        out_obj[t] = fstate[0]
        istate[_STEP] = t + 1
    return istate[_STEP]


@_njit
def _scan_steps(
    steps,
    indptr,
    lab,
    w,
    p_indptr,
    p_indices,
    p_data,
    x,
    g,
    h,
    picked,
    istate,
    fstate,
    out_idx,
    out_gain,
    out_obj,
    acc,
    touched,
    mark,
    exact,
    code,
    a,
    b,
    al,
):
    """Run up to ``steps`` picks of the full-scan greedy (argmax, lowest index on ties)."""
    n = w.size
    for _ in range(steps):
        t = istate[_STEP]
        if t >= n:
            break
        best = -1
        best_gain = 0.0
        for i in range(n):
            if picked[i]:
                continue
            gi = _gain(
                i,
                indptr,
                lab,
                w,
                p_indptr,
                p_indices,
                p_data,
                x,
                h,
                exact,
                acc,
                touched,
                code,
                a,
                b,
                al,
            )
            if best < 0 or gi > best_gain:
                best = i
                best_gain = gi
        istate[_EVALS] += n - t
        picked[best] = True
        fstate[0] += _add_sample(
            best,
            indptr,
            lab,
            w,
            p_indptr,
            p_indices,
            p_data,
            x,
            g,
            h,
            acc,
            touched,
            mark,
            code,
            a,
            b,
            al,
        )
        out_idx[t] = best
        out_gain[t] = best_gain
        out_obj[t] = fstate[0]
        istate[_STEP] = t + 1
    return istate[_STEP]


# ---------------------------------------------------------------------------- driver
@dataclass
class GreedyResult:
    """Picks in order, the gain of each pick when it was made, and E after each pick."""

    indices: np.ndarray
    gains: np.ndarray
    objective_trace: np.ndarray
    initial_objective: float
    stats: dict = field(default_factory=dict)


def _as_csr_parts(propagation: sp.spmatrix):
    p = sp.csr_matrix(propagation, dtype=np.float64)
    if p.shape[0] != p.shape[1]:
        raise ValueError(f"propagation matrix must be square, got {p.shape}")
    p = p.copy()
    p.eliminate_zeros()
    p.sort_indices()
    if p.nnz and (p.data < 0).any():
        raise ValueError("propagation matrix has negative entries; gains could rise")
    return (
        np.ascontiguousarray(p.indptr, dtype=np.int64),
        np.ascontiguousarray(p.indices, dtype=np.int64),
        np.ascontiguousarray(p.data, dtype=np.float64),
    )


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
) -> GreedyResult:
    """Pick ``k`` samples greedily; see the module docstring for the model and the engines.

    ``indptr``/``label_ids``: CSR of sample -> label ids (each label at most once per sample);
    ``weights``: per-sample weight ``>= 0``; ``propagation``: P (K x K, non-negative, CSR).
    ``engine="auto"`` uses lazy greedy when phi is concave and the full scan otherwise (with a
    warning). ``compiled=None`` uses numba when installed.
    """
    objective = objective or Objective()
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    lab = np.ascontiguousarray(label_ids, dtype=np.int64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    n = w.size
    if indptr.shape != (n + 1,) or indptr[0] != 0 or indptr[-1] != lab.size:
        raise ValueError(
            "indptr must have len(weights) + 1 entries, start at 0, end at len(label_ids)"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if not isinstance(k, (int, np.integer)) or k < 1 or k > n:
        raise ValueError(f"k must be an integer in [1, {n}], got {k!r}")
    p_indptr, p_indices, p_data = _as_csr_parts(propagation)
    num_labels = p_indptr.size - 1
    if lab.size and (lab.min() < 0 or lab.max() >= num_labels):
        raise ValueError(f"label ids must lie in [0, {num_labels})")

    if engine == "auto":
        engine = "lazy" if objective.is_concave else "scan"
    if engine == "lazy" and not objective.is_concave:
        warnings.warn(
            f"phi={objective.phi} with b={objective.b} is not concave: gains can rise, so lazy "
            "greedy is not exact; using the full scan instead.",
            stacklevel=2,
        )
        engine = "scan"
    if compiled is None:
        compiled = HAVE_NUMBA
    if compiled and not HAVE_NUMBA:
        raise ImportError("compiled=True needs numba: pip install numba")

    def fn(f):
        return f if compiled else f.py_func

    code, a, b, al = objective.code, float(objective.a), float(objective.b), float(objective.alpha)
    exact = gain == "exact"
    x = np.zeros(num_labels)
    g = np.full(num_labels, _dphi.py_func(0.0, code, a, b, al))
    h = sp.csr_matrix((p_data, p_indices, p_indptr), shape=(num_labels, num_labels)) @ g
    acc = np.zeros(num_labels)
    touched = np.zeros(num_labels, dtype=np.int64)
    mark = np.zeros(num_labels, dtype=np.int8)
    istate = np.zeros(5, dtype=np.int64)
    initial = float(num_labels * _phi.py_func(0.0, code, a, b, al))
    fstate = np.array([initial])
    out_idx = np.empty(k, dtype=np.int64)
    out_gain = np.empty(k)
    out_obj = np.empty(k)
    args = (indptr, lab, w, p_indptr, p_indices, p_data, x, g, h)

    if engine == "lazy":
        heap = np.empty((n + ROOT, 2))
        stamp = np.zeros(n, dtype=np.int64)
        picked = np.zeros(n, dtype=np.bool_)
        istate[_SIZE] = fn(_fill_heap)(
            heap, *args[:7], h, exact, acc, touched, picked, stamp, 0, code, a, b, al
        )
        istate[_EVALS] = n

        def run(steps):
            return fn(_lazy_steps)(
                steps,
                *args,
                heap,
                stamp,
                picked,
                istate,
                fstate,
                out_idx,
                out_gain,
                out_obj,
                acc,
                touched,
                mark,
                exact,
                float(refresh_fraction),
                code,
                a,
                b,
                al,
            )
    else:
        picked = np.zeros(n, dtype=np.bool_)

        def run(steps):
            return fn(_scan_steps)(
                steps,
                *args,
                picked,
                istate,
                fstate,
                out_idx,
                out_gain,
                out_obj,
                acc,
                touched,
                mark,
                exact,
                code,
                a,
                b,
                al,
            )

    show = (
        progress
        if progress is not None
        else (k * (1 if engine == "lazy" else n)) > 5e9 or n > 2_000_000
    )
    with tqdm(total=k, desc=f"MIG greedy ({engine})", unit="pick", disable=not show) as bar:
        done = 0
        while done < k:
            step = min(chunk_size if compiled else max(1, chunk_size // 10), k - done)
            new_done = int(run(step))
            bar.update(new_done - done)
            done = new_done

    stats = {
        "engine": engine,
        "compiled": bool(compiled),
        "gain": gain,
        "evaluations": int(istate[_EVALS]),
        "refreshes": int(istate[_REFRESHES]),
        "pool_size": n,
        "num_labels": num_labels,
    }
    return GreedyResult(out_idx, out_gain, out_obj, initial, stats)
