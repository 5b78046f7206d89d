"""Baselines: the authors' MIG sampler re-implemented plainly, and a naive sparse full scan.

Both follow SPEC section 2 literally, independently of ``hf_mig``:

- :func:`dense_reference` is the released code's algorithm: a dense raw-information matrix
  ``A`` (N x K, ``A[i, l] = s_i`` for each label of row i, assigned, not added), a dense
  propagation matrix ``P`` (K x K, ``diag(W) + alpha * offdiag(W)``, columns divided by their
  sums), ``U = A @ P`` dense (float32 like the reference), then per step ``g = phi'(x)``,
  ``gains = U @ g``, picked rows masked to ``-inf``, ``i = argmax(gains)`` (lowest index on
  ties), ``x += U[i]``. Memory is ``2 * N * K`` floats: 34 GB at N = 939K, K = 4,531 in
  float32, so it is run on small pools and its cost extrapolated (it is O(N * K) per step).
- :func:`naive_sparse_scan` is the same rule with ``U`` as a scipy CSR matrix and a full
  ``U @ g`` at every step: what a straightforward sparse port would do.

Both return a :class:`ReferenceRun` with the picks in order and per-phase timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ReferenceRun",
    "dense_propagation",
    "dense_reference",
    "naive_sparse_scan",
    "phi_derivative",
    "sparse_propagation",
]


@dataclass
class ReferenceRun:
    """Result of a baseline run.

    ``indices``: picked rows in pick order (int64); ``gains``: the winning gain at each step
    (in the run's dtype, as float64); ``build_s``: seconds to build U (A, P and the product);
    ``step_s``: seconds of each greedy step; ``nbytes``: bytes held by U (and A when dense).
    """

    indices: np.ndarray
    gains: np.ndarray
    build_s: float
    step_s: np.ndarray
    nbytes: int
    info: dict = field(default_factory=dict)

    def _steps(self) -> np.ndarray:
        return self.step_s[1:] if self.step_s.size > 1 else self.step_s

    @property
    def mean_step_s(self) -> float:
        """Mean seconds per step, skipping the first step (warm-up) when there are several."""
        steps = self._steps()
        return float(steps.mean()) if steps.size else float("nan")

    @property
    def median_step_s(self) -> float:
        """Median seconds per step (robust to other load on the machine), first step skipped."""
        steps = self._steps()
        return float(np.median(steps)) if steps.size else float("nan")

    @property
    def min_step_s(self) -> float:
        """Fastest step, first step skipped: the baseline's best case."""
        steps = self._steps()
        return float(steps.min()) if steps.size else float("nan")


def phi_derivative(
    x: np.ndarray, phi: str = "pow", a: float = 1e-6, b: float = 0.8, alpha: float = 1.0
) -> np.ndarray:
    """``phi'(x)`` in ``x``'s dtype: ``b (x + a)^(b - 1)`` for "pow", ``alpha e^(-alpha x)``
    for "exp"."""
    dtype = x.dtype
    if phi == "pow":
        return (dtype.type(b) * (x + dtype.type(a)) ** dtype.type(b - 1.0)).astype(dtype)
    if phi == "exp":
        return (dtype.type(alpha) * np.exp(-dtype.type(alpha) * x)).astype(dtype)
    raise ValueError(f"phi must be 'pow' or 'exp', got {phi!r}")


def _w_entries(
    k_labels: int, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray
) -> sp.csr_matrix:
    w = sp.csr_matrix(
        (np.asarray(weights, dtype=np.float64), (np.asarray(rows), np.asarray(cols))),
        shape=(k_labels, k_labels),
    )
    w.sum_duplicates()
    return w


def dense_propagation(
    k_labels: int,
    rows: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    prop_weight: float = 1.0,
    dtype: type = np.float32,
) -> np.ndarray:
    """Dense ``P`` (K x K, ``dtype``) from W's entries ``(rows, cols, weights)``.

    ``P = diag(W) + prop_weight * offdiag(W)``, then every column divided by its sum (computed
    in float64, then cast). ``W`` must hold its diagonal (every column sum must be > 0).
    """
    w = _w_entries(k_labels, rows, cols, weights).toarray()
    diag = np.diag(w).copy()
    p = w * prop_weight
    np.fill_diagonal(p, diag)
    colsum = p.sum(axis=0)
    if (colsum <= 0).any():
        raise ValueError("P has an all-zero column: W needs its diagonal")
    return (p / colsum[None, :]).astype(dtype)


def sparse_propagation(
    k_labels: int,
    rows: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    prop_weight: float = 1.0,
) -> sp.csr_matrix:
    """Sparse float64 ``P`` with the same definition as :func:`dense_propagation`."""
    w = _w_entries(k_labels, rows, cols, weights).tocoo()
    data = np.where(w.row == w.col, w.data, w.data * prop_weight)
    p = sp.csr_matrix((data, (w.row, w.col)), shape=w.shape)
    colsum = np.asarray(p.sum(axis=0)).ravel()
    if (colsum <= 0).any():
        raise ValueError("P has an all-zero column: W needs its diagonal")
    p = p.tocoo()
    return sp.csr_matrix((p.data / colsum[p.col], (p.row, p.col)), shape=p.shape)


def _row_of_entry(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


def dense_reference(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    scores: np.ndarray,
    propagation: np.ndarray,
    k: int,
    *,
    phi: str = "pow",
    a: float = 1e-6,
    b: float = 0.8,
    alpha: float = 1.0,
    dtype: type = np.float32,
) -> ReferenceRun:
    """Run the released code's dense greedy for ``k`` steps; see the module docstring.

    ``propagation`` is the dense P of :func:`dense_propagation` (cast to ``dtype``). Needs
    ``2 * N * K * itemsize`` bytes. Picks are in order; ties go to the lowest row index.
    """
    n = indptr.size - 1
    k_labels = propagation.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    t0 = time.perf_counter()
    dense_a = np.zeros((n, k_labels), dtype=dtype)
    dense_a[_row_of_entry(indptr), label_ids] = np.repeat(scores, np.diff(indptr)).astype(dtype)
    u = dense_a @ propagation.astype(dtype, copy=False)
    nbytes = dense_a.nbytes + u.nbytes
    del dense_a
    build_s = time.perf_counter() - t0

    x = np.zeros(k_labels, dtype=dtype)
    picked = np.zeros(n, dtype=bool)
    out = np.empty(k, dtype=np.int64)
    out_gain = np.empty(k, dtype=np.float64)
    step_s = np.empty(k, dtype=np.float64)
    for t in range(k):
        t1 = time.perf_counter()
        g = phi_derivative(x, phi, a, b, alpha)
        gains = u @ g
        gains[picked] = -np.inf
        i = int(np.argmax(gains))
        out[t] = i
        out_gain[t] = float(gains[i])
        picked[i] = True
        x += u[i]
        step_s[t] = time.perf_counter() - t1
    return ReferenceRun(out, out_gain, build_s, step_s, nbytes, {"dtype": np.dtype(dtype).name})


def naive_sparse_scan(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    scores: np.ndarray,
    propagation: sp.spmatrix,
    k: int,
    *,
    phi: str = "pow",
    a: float = 1e-6,
    b: float = 0.8,
    alpha: float = 1.0,
) -> ReferenceRun:
    """Run the same greedy with a sparse float64 ``U = A @ P`` and a full ``U @ g`` per step.

    ``propagation`` is a sparse P (:func:`sparse_propagation`). Duplicate labels within a row
    count once (assigned, as in the dense reference). Ties go to the lowest row index.
    """
    n = indptr.size - 1
    k_labels = propagation.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    t0 = time.perf_counter()
    rows = _row_of_entry(indptr)
    vals = np.repeat(np.asarray(scores, dtype=np.float64), np.diff(indptr))
    a_sp = sp.csr_matrix((vals, (rows, np.asarray(label_ids))), shape=(n, k_labels))
    a_sp.sum_duplicates()
    a_sp.data = np.repeat(np.asarray(scores, dtype=np.float64), np.diff(a_sp.indptr))
    u = (a_sp @ sp.csr_matrix(propagation, dtype=np.float64)).tocsr()
    u.sort_indices()
    nbytes = u.data.nbytes + u.indices.nbytes + u.indptr.nbytes
    del a_sp
    build_s = time.perf_counter() - t0

    x = np.zeros(k_labels, dtype=np.float64)
    picked = np.zeros(n, dtype=bool)
    out = np.empty(k, dtype=np.int64)
    out_gain = np.empty(k, dtype=np.float64)
    step_s = np.empty(k, dtype=np.float64)
    for t in range(k):
        t1 = time.perf_counter()
        g = phi_derivative(x, phi, a, b, alpha)
        gains = u @ g
        gains[picked] = -np.inf
        i = int(np.argmax(gains))
        out[t] = i
        out_gain[t] = float(gains[i])
        picked[i] = True
        lo, hi = u.indptr[i], u.indptr[i + 1]
        x[u.indices[lo:hi]] += u.data[lo:hi]
        step_s[t] = time.perf_counter() - t1
    return ReferenceRun(
        out, out_gain, build_s, step_s, nbytes, {"dtype": "float64", "nnz": int(u.nnz)}
    )
