"""Shared plumbing of the selectors that compare samples through their embeddings."""

from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from hf_mig.annotate.embeddings import ensure_embeddings
from hf_mig.core.encoding import read_scores
from hf_mig.models.embedders import EmbedderLike
from hf_mig.selectors.base import BaseSelector


def all_equal(scores: np.ndarray) -> bool:
    """Whether every score is the same (so a ranking by score cannot choose)."""
    return scores.size > 1 and bool(np.all(scores == scores[0]))


def constant_scores_error(label: str, scores: np.ndarray, column: str, k: int) -> str:
    return (
        f"{label}: every row has the same score {scores[0]:g} (column {column!r}): the "
        f"score ranking cannot choose and would follow file order for the first {k} picks. "
        "Score the pool first (hf-mig score), or use a method that needs no scores "
        "(kcenter, or qdit with alpha=0, for diversity; random for an unbiased sample)."
    )


@dataclass(repr=False, eq=False, kw_only=True)
class EmbeddingSelector(BaseSelector):
    """``select_indices`` for selectors working on sample embeddings and a score column.

    The options every such method takes are declared here (after ``k``, before each method's
    own):

    * ``score_column``: the quality score (default ``"score"``);
    * ``embedding_column``: L2-normalised row embeddings (default ``"embedding"``), computed
      with :func:`hf_mig.annotate.embeddings.ensure_embeddings` when the pool lacks it;
    * ``embedder``: model id, path or callable used only when the embedding column is missing;
    * ``embedding_text``: what is embedded then, ``"first_user"`` (default) or
      ``"conversation"``;
    * ``progress``: progress bars (``None``: only for large pools).

    Subclasses declare their own options and implement ``select_arrays(embeddings, scores)``.
    ``_check_options(n)`` runs before any data is read, so bad options fail fast; the scores
    are read and checked (:meth:`check_scores`) before any embedding is computed.
    ``needs_scores`` says whether the method reads the score column at all (when it does not,
    ``select_arrays`` gets zeros and the column may hold anything).
    """

    score_column: str = "score"
    embedding_column: str = "embedding"
    embedder: EmbedderLike | None = None
    embedding_text: str = "first_user"
    progress: bool | None = None

    #: The method's name in messages.
    label = "embedding"

    @property
    def score_what(self) -> str:
        """The selection named in messages about the score column."""
        return f"{self.label} selection"

    def _check_options(self, n: int) -> None:  # pragma: no cover - overridden
        pass

    @property
    def needs_scores(self) -> bool:
        return True

    def check_scores(self, scores: np.ndarray, *, warn: bool = True) -> None:
        """Refuse scores the method cannot select by (subclasses); ``warn``: log warnings."""

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
        if self.needs_scores:
            scores = read_scores(dataset, self.score_column, what=self.score_what)
            self.check_scores(scores, warn=False)
        else:
            scores = np.zeros(len(dataset))
        return self.select_arrays(self.sample_embeddings(dataset), scores)

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract
