"""The greedy's inputs, checked before any work, and float64 bounds of what it computes.

The kernels of :mod:`hf_mig.core.greedy` (and the budget, quota, stochastic and continuation
engines built on them) take a pool as ``(indptr, label_ids, weights)`` and P as its CSR parts;
:func:`check_inputs` turns the arrays a caller gives into those, refusing what the kernels
cannot run on (an inconsistent CSR, negative or non-finite weights, label ids outside P, an
objective that would overflow float64) with a ``ValueError`` that says which.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from hf_mig.core._jit import njit as _njit
from hf_mig.core.objective import Objective

__all__ = ["check_inputs", "information_bounds"]


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


def information_bounds(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    objective: Objective | None = None,
    *,
    known: tuple[int, float] | None = None,
) -> dict[str, float]:
    """Upper bounds of what the greedy computes, to check that float64 holds it.

    ``weight_total`` is the sum of the weights; ``coverage`` bounds every entry of ``x`` (that
    total times the largest column sum of P), ``gain`` every gradient gain
    (``w_i * phi'(0) * sum over L_i of P's row sums``; ``row_gain`` is that largest ``w_i *
    sum`` before ``phi'(0)``) and ``objective`` E(S) (``K * phi(coverage)``; exact gains are
    differences of such terms). ``known = (rows, row_gain)``: the ``row_gain`` of the first
    ``rows`` rows, already computed (a :class:`Frontier`'s); only the other rows are read for it.
    A bound that is not finite means the objective can overflow: rescale the weights.
    """
    objective = objective or Objective()
    p = sp.csr_matrix(propagation, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    num_labels = p.shape[0]
    first, row_gain = known if known is not None else (0, -np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        col_max = float(np.asarray(p.sum(axis=0)).max()) if p.nnz else 0.0
        row_sums = np.asarray(p.sum(axis=1)).ravel()
        total = float(np.sum(w))
        coverage = total * col_max
        d0 = float(objective.derivative(0.0))
        lab = _label_id_array(label_ids)
        starts = np.asarray(indptr, dtype=np.int64)[first:]
        row_gain = max(float(row_gain), float(_max_row_gain(starts, lab, w[first:], row_sums)))
        gain = row_gain * d0 if w.size else 0.0
        phi_max = float(objective.value(coverage))
        bound = num_labels * phi_max
    return {
        "weight_total": total,
        "coverage": coverage,
        "gain": gain,
        "row_gain": row_gain,
        "objective": bound,
    }


@_njit
def _max_row_gain(indptr, label_ids, w, row_sums):
    """``max_i w_i * sum_{l in L_i} row_sums[l]`` (``-inf`` for no rows), reading the arrays in
    place whatever their integer types."""
    best = -np.inf
    for i in range(w.size):
        s = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            s += row_sums[label_ids[t]]
        best = max(best, w[i] * s)
    return best


def check_inputs(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    objective: Objective,
    *,
    known: tuple[int, float] | None = None,
) -> tuple[tuple, tuple, dict[str, float]]:
    """``(pool, prop, bounds)``: the pool and P as the kernels take them (see the top of this
    module) and :func:`information_bounds` (``known`` as there), once the CSR is consistent,
    the weights finite and ``>= 0``, the label ids within P and the objective within float64;
    ``ValueError`` saying which otherwise. int64 ``indptr``, int32/int64 ``label_ids`` and
    float64 ``weights`` are used in place. With ``known``, the weights and label ids of its
    first ``rows`` rows, checked by the run that computed its ``row_gain``, are not read again."""
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    lab = _label_id_array(label_ids)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if indptr.shape != (w.size + 1,) or indptr[0] != 0 or indptr[-1] != lab.size:
        raise ValueError(
            "indptr must have len(weights) + 1 entries, start at 0, end at len(label_ids)"
        )
    first = min(known[0], w.size) if known is not None else 0
    new_w, new_lab = w[first:], lab[indptr[first] :]
    if not np.isfinite(new_w).all() or (new_w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    prop = _as_csr_parts(propagation)
    num_labels = prop[0].size - 1
    if new_lab.size and (new_lab.min() < 0 or new_lab.max() >= num_labels):
        raise ValueError(f"label ids must lie in [0, {num_labels})")
    bounds = information_bounds(indptr, lab, w, propagation, objective, known=known)
    if not all(math.isfinite(v) for v in bounds.values()):
        raise ValueError(
            f"weights up to {w.max():.6g} (total {bounds['weight_total']:.6g}) overflow "
            f"float64 in the objective (bounds: coverage {bounds['coverage']:.3g}, gain "
            f"{bounds['gain']:.3g}, E {bounds['objective']:.3g}); rescale the weights, e.g. "
            "divide them by their maximum"
        )
    return (indptr, lab, w), prop, bounds


def _label_id_array(label_ids: np.ndarray) -> np.ndarray:
    """The label ids as the kernels read them: int32 or int64 kept as they are (a memory-mapped
    array is read in place), any other integer type as int64."""
    lab = np.asarray(label_ids)
    if lab.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        if lab.size and not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"label ids must be integers, got {lab.dtype}")
        lab = lab.astype(np.int64)
    return np.ascontiguousarray(lab)
