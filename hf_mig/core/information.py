"""MIG's information per label, ``x(S)``, and the dataset information ``E(S)``.

A pool encoded against a label vocabulary (:class:`hf_mig.core.encoding.PoolEncoding`) gives
each row ``i`` a weight ``w_i`` (its score, or score / #labels with ``norm``) and a label
indicator ``v_i``. With ``P`` the label graph's propagation matrix (the identity when there is
no graph), row ``i`` carries ``u_i = w_i * v_i @ P`` and a set of rows ``S``::

    x(S) = sum_{i in S} u_i              (one value per label)
    E(S) = sum_k phi(x_k(S))             (phi: :class:`hf_mig.core.objective.Objective`)

:mod:`hf_mig.core.greedy` maximises ``E`` incrementally; :class:`LabelInformation` computes
``x`` and ``E`` of any set directly (the selection report uses it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hf_mig.core.encoding import PoolEncoding
from hf_mig.core.greedy import information_bounds
from hf_mig.core.objective import Objective

__all__ = ["LabelInformation", "dataset_information", "label_values"]


def label_values(x: np.ndarray, objective: Objective | None = None) -> np.ndarray:
    """``phi(x_k)`` for every label: each label's share of ``E``."""
    return (objective or Objective()).value(np.asarray(x, dtype=np.float64))


def dataset_information(x: np.ndarray, objective: Objective | None = None) -> float:
    """``E = sum_k phi(x_k)`` of an information vector ``x``."""
    return float(label_values(x, objective).sum())


@dataclass
class LabelInformation:
    """The rows' weights and the propagation matrix that define ``x(S)`` and ``E(S)``.

    ``encoding``: the pool against the vocabulary (node order of ``propagation``);
    ``weights``: ``w_i`` per row; ``propagation``: ``P``, square over the vocabulary.
    """

    encoding: PoolEncoding
    weights: np.ndarray
    propagation: sp.csr_matrix

    @classmethod
    def build(
        cls, encoding: PoolEncoding, propagation: sp.spmatrix | None = None, *, norm: bool = False
    ) -> LabelInformation:
        """Weights ``encoding.weights(norm)`` and ``propagation`` (``None``: the identity over
        the encoding's vocabulary, i.e. no propagation)."""
        size = len(encoding.vocabulary)
        if propagation is None:
            propagation = sp.identity(size, dtype=np.float64, format="csr")
        if propagation.shape != (size, size):
            raise ValueError(
                f"propagation matrix has shape {propagation.shape}; the vocabulary has {size} "
                "labels"
            )
        return cls(encoding, encoding.weights(norm), sp.csr_matrix(propagation))

    @property
    def num_labels(self) -> int:
        return len(self.encoding.vocabulary)

    def bounds(self, objective: Objective | None = None) -> dict[str, float]:
        """Upper bounds of what the greedy computes (see
        :func:`hf_mig.core.greedy.information_bounds`)."""
        enc = self.encoding
        return information_bounds(
            enc.indptr, enc.label_ids, self.weights, self.propagation, objective
        )

    @functools.cached_property
    def _weighted_rows(self) -> sp.csr_matrix:
        """Row ``i`` is ``w_i * v_i`` (each label once per row)."""
        enc = self.encoding
        return sp.csr_matrix(
            (np.repeat(self.weights, enc.label_counts()), enc.label_ids, enc.indptr),
            shape=(enc.num_rows, self.num_labels),
        )

    @functools.cached_property
    def _propagation_t(self) -> sp.csr_matrix:
        return self.propagation.T.tocsr()

    def x(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``x(S) = (sum_{i in S} w_i v_i) @ P`` (float64, one value per label) for the rows
        ``S`` (``None``: every row); a row listed twice counts twice."""
        wv = self._weighted_rows
        if rows is not None:
            wv = wv[np.asarray(rows, dtype=np.int64)]
        mass = np.asarray(wv.sum(axis=0)).ravel()
        return np.asarray(self._propagation_t @ mass, dtype=np.float64).ravel()

    def value(
        self, rows: Sequence[int] | np.ndarray | None = None, objective: Objective | None = None
    ) -> float:
        """``E(S)`` for the rows ``S`` (``None``: every row)."""
        return dataset_information(self.x(rows), objective)
