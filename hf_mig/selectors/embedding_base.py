"""Shared plumbing of the selectors that compare samples through their embeddings."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from ..embeddings import ensure_embeddings, read_scores
from .base import BaseSelector


class EmbeddingSelector(BaseSelector):
    """``select_indices`` for selectors working on sample embeddings and a score column.

    Subclasses set ``score_column``, ``embedding_column``, ``embedder``, ``embedding_text`` and
    ``progress`` in ``__init__``, and implement ``select_arrays(embeddings, scores)``.
    ``_check_options(n)`` runs before any data is read, so bad options fail fast.
    """

    label: str = "embedding"

    def _check_options(self, n: int) -> None:  # pragma: no cover - overridden
        pass

    def sample_embeddings(self, dataset: Dataset) -> np.ndarray:
        """L2-normalised float32 embeddings of every row, computed with ``Dataset.map`` (and
        cached by ``datasets`` for file-backed pools) when ``embedding_column`` is missing."""
        return ensure_embeddings(
            dataset,
            self.embedding_column,
            self.embedder,
            text=self.embedding_text,
            progress=self.progress,
        )

    def select_indices(self, dataset: Dataset) -> np.ndarray:
        """Row indices of the ``k`` picks, in pick order."""
        self._check_k(dataset)
        self._check_options(len(dataset))
        scores = read_scores(dataset, self.score_column, what=f"{self.label} selection")
        return self.select_arrays(self.sample_embeddings(dataset), scores)

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract
