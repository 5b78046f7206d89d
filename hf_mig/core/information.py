"""MIG's information per label, ``x(S)``, and the dataset information ``E(S)``.

A pool encoded against a label vocabulary (:class:`hf_mig.core.encoding.PoolEncoding`) gives
each row ``i`` a weight ``w_i`` (its score, or score / #labels with ``norm``) and a label
indicator ``v_i``. With ``P`` the label graph's propagation matrix (the identity when there is
no graph), row ``i`` carries ``u_i = w_i * v_i @ P`` and a set of rows ``S``::

    x(S) = sum_{i in S} u_i              (one value per label)
    E(S) = sum_k phi(x_k(S))             (phi: :class:`hf_mig.core.objective.Objective`)

:mod:`hf_mig.core.greedy` maximises ``E`` incrementally; :class:`LabelInformation` computes
``x`` and ``E`` of any set directly (the selection report uses it), and
:func:`explain_picks` splits each pick's gain by label ("why this row").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hf_mig.core.encoding import PoolEncoding
from hf_mig.core.greedy import GAIN_KINDS
from hf_mig.core.inputs import information_bounds
from hf_mig.core.objective import Objective

__all__ = [
    "LabelInformation",
    "PickExplanation",
    "dataset_information",
    "explain_picks",
    "label_contributions",
    "label_values",
]


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

    def bounds(
        self, objective: Objective | None = None, *, known: tuple[int, float] | None = None
    ) -> dict[str, float]:
        """Upper bounds of what the greedy computes (see
        :func:`hf_mig.core.inputs.information_bounds`, which ``known`` goes to)."""
        enc = self.encoding
        return information_bounds(
            enc.indptr, enc.label_ids, self.weights, self.propagation, objective, known=known
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


def label_contributions(
    info: LabelInformation,
    picks: Sequence[int] | np.ndarray,
    objective: Objective | None = None,
    *,
    gain: str = "gradient",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each pick's gain split by label, replaying ``picks`` in order from ``x = 0``.

    With ``x`` the information vector before the pick and ``u_i = w_i v_i @ P`` its
    propagated vector, label ``k`` contributes ``phi(x_k + u_ik) - phi(x_k)`` (``gain="exact"``)
    or ``phi'(x_k) * u_ik`` (``gain="gradient"``), the terms of the gain the greedy records.
    Returns ``(label ids, contributions)`` per pick over the support of ``u_i`` (empty for a
    row with weight 0 or no label); the contributions sum to the pick's gain.
    """
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    objective = objective or Objective()
    rows = np.asarray(picks, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= info.encoding.num_rows):
        raise ValueError(
            f"picks must be row indices in [0, {info.encoding.num_rows}), got "
            f"{int(rows.min())}..{int(rows.max())}"
        )
    u = sp.csr_matrix(info._weighted_rows[rows] @ info.propagation)
    u.sum_duplicates()
    u.sort_indices()
    x = np.zeros(info.num_labels, dtype=np.float64)
    out = []
    for r in range(rows.size):
        span = slice(u.indptr[r], u.indptr[r + 1])
        ids, values = u.indices[span], u.data[span]
        keep = values != 0.0
        ids, values = ids[keep].astype(np.int64), values[keep]
        before = x[ids]
        if gain == "exact":
            terms = objective.value(before + values) - objective.value(before)
        else:
            terms = objective.derivative(before) * values
        out.append((ids, terms))
        x[ids] = before + values
    return out


@dataclass(frozen=True)
class PickExplanation:
    """Why one row was picked: ``rank`` (0-based pick order), ``row`` (index in the pool),
    ``gain`` (the sum of every label's contribution) and ``labels``, the top labels by
    contribution, each ``{"label", "contribution", "share" (of the gain), "own"}`` where
    ``own`` is ``True`` for the row's own labels and ``False`` for labels reached through
    the label graph (neighbours)."""

    rank: int
    row: int
    gain: float
    labels: list[dict]


def explain_picks(
    info: LabelInformation,
    picks: Sequence[int] | np.ndarray,
    objective: Objective | None = None,
    *,
    gain: str = "gradient",
    top: int | None = 3,
) -> list[PickExplanation]:
    """Each pick's gain and its ``top`` labels by contribution (``None``: every label the
    pick reaches), from :func:`label_contributions` (``gain`` as the selector's ``gain``, so
    each gain equals the greedy's recorded gain up to rounding). Ties go to the lower label
    id; a share is 0 when the gain is 0."""
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 0):
        raise ValueError(f"top must be an integer >= 0 or None, got {top!r}")
    enc = info.encoding
    vocabulary = enc.vocabulary
    rows = np.asarray(picks, dtype=np.int64).reshape(-1)
    explained = []
    for rank, (row, (ids, terms)) in enumerate(
        zip(rows.tolist(), label_contributions(info, rows, objective, gain=gain))
    ):
        total = float(terms.sum())
        order = np.lexsort((ids, -terms))
        if top is not None:
            order = order[:top]
        own = set(enc.label_ids[enc.indptr[row] : enc.indptr[row + 1]].tolist())
        labels = [
            {
                "label": vocabulary[int(ids[j])],
                "contribution": float(terms[j]),
                "share": float(terms[j]) / total if total else 0.0,
                "own": int(ids[j]) in own,
            }
            for j in order
        ]
        explained.append(PickExplanation(rank, int(row), total, labels))
    return explained
