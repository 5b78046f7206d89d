"""DEITA: score-first selection with the representation (cosine-similarity) filter."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hf_mig.annotate.embeddings import check_arrays, max_similarity_to_set
from hf_mig.core.encoding import DegeneratePoolError
from hf_mig.selectors._diversity import best_first, show_progress
from hf_mig.selectors.base import check_bool, check_int, check_number, register_selector
from hf_mig.selectors.embedding_base import EmbeddingSelector, all_equal, constant_scores_error

logger = logging.getLogger(__name__)


@register_selector("deita")
@dataclass(repr=False, eq=False, kw_only=True)
class DeitaSelector(EmbeddingSelector):
    """DEITA: best score first, skipping rows too similar (cosine) to a row already kept.

    Rows are visited by ``score_column`` descending (ties by lower row index). A row is kept
    when its cosine similarity to **every** row kept so far is below ``threshold``; visiting
    stops when ``k`` rows are kept. This is exactly the sequential definition; it is computed
    with candidates in blocks of ``batch_size`` compared to the kept set by matrix products
    (tiles of ``batch_size x 8192``), and each block's survivors also compared with the earlier
    accepted rows of the same block.

    Parameters
    ----------
    k: rows to select.
    threshold: cosine similarity at or above which a row counts as redundant (paper: 0.9 on
        Tulu 3, the DEITA default).
    score_column: the quality score (DEITA: quality x complexity), any finite numbers. When
        every row has the same score (and ``k`` is below the pool size) the visiting order
        would be file order: :class:`hf_mig.core.encoding.DegeneratePoolError` is raised, before
        any embedding is computed.
    embedding_column: L2-normalised row embeddings; computed with
        :func:`hf_mig.annotate.embeddings.ensure_embeddings` (first user turn, ``embedder``)
        when the pool lacks the column.
    embedder: model id, path or callable used only when the embedding column is missing.
    embedding_text: what is embedded then: ``"first_user"`` (the first user turn) or
        ``"conversation"`` (every turn); see :class:`hf_mig.annotate.embeddings.SampleEmbedder`.
    fill: when fewer than ``k`` rows pass the filter, ``False`` raises ``ValueError``; ``True``
        appends the best rejected rows by score (in score order) until ``k`` rows are picked.
    batch_size: candidates compared per block.
    progress: show a progress bar (``None``: only for large pools).

    Fitted attributes after ``select_indices``: ``n_examined_`` (rows visited),
    ``n_rejected_`` (visited rows the filter dropped), ``n_filled_`` (rows added by ``fill``),
    ``max_similarity_`` (float32, per pick: its largest cosine to the rows kept before it,
    ``-inf`` for the first, NaN for filled picks).
    """

    threshold: float = 0.9
    fill: bool = False
    batch_size: int = 2048

    def _validate(self) -> float:
        check_bool("fill", self.fill)
        check_int("batch_size", self.batch_size)
        return check_number("threshold", self.threshold, hint=" (a cosine)")

    label = "DEITA"

    def _check_options(self, n: int) -> None:
        self._validate()

    def check_scores(self, scores: np.ndarray, *, warn: bool = True) -> None:
        """Equal scores leave DEITA's score-first order to file order: refused (k < n)."""
        if int(self.k) < scores.size and all_equal(scores):
            raise DegeneratePoolError(
                constant_scores_error("DEITA", scores, self.score_column, int(self.k))
            )

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """DEITA on arrays: L2-normalised ``(n, d)`` embeddings and ``n`` finite scores."""
        threshold = self._validate()
        x, scores = check_arrays(embeddings, scores, self.k)
        self.check_scores(scores)
        k = int(self.k)
        picks, max_sim, examined = deita_filter(
            x, scores, k, threshold, batch_size=int(self.batch_size), progress=self.progress
        )
        n_kept = len(picks)
        n_filled = 0
        if n_kept < k:
            message = (
                f"DEITA filter: only {n_kept} of {len(scores)} rows have cosine similarity below "
                f"{threshold} to every earlier kept row, fewer than k = {k}"
            )
            if not self.fill:
                raise ValueError(
                    message + "; raise the threshold, lower k, or pass fill=True to add the "
                    "best rejected rows by score"
                )
            order = best_first(scores)
            kept = np.zeros(len(scores), dtype=bool)
            kept[picks] = True
            extra = order[~kept[order]][: k - n_kept]
            n_filled = len(extra)
            logger.warning("%s; filled with the %d best rejected rows by score", message, n_filled)
            picks = np.concatenate([picks, extra])
            max_sim = np.concatenate([max_sim, np.full(n_filled, np.nan, dtype=np.float32)])
        self.n_examined_ = int(examined)
        self.n_rejected_ = int(examined - n_kept)
        self.n_filled_ = int(n_filled)
        self.max_similarity_ = max_sim
        return picks


def deita_filter(
    embeddings: np.ndarray,
    scores: np.ndarray,
    k: int,
    threshold: float,
    *,
    batch_size: int = 2048,
    kept_block: int = 8192,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The DEITA representation filter on arrays.

    Visit rows by ``scores`` descending (ties: lower index first); keep a row when its dot
    product with every kept row is ``< threshold``; stop at ``k`` kept rows. ``embeddings``
    should have unit rows. Returns ``(picks, max_similarity, examined)``: the kept row indices
    in visiting order (fewer than ``k`` when the pool runs out), each pick's largest similarity
    to the rows kept before it (``-inf`` for the first) and the number of rows visited.

    Memory: the kept rows' embeddings (``k x d``) plus ``batch_size x kept_block`` similarities.
    """
    n, d = embeddings.shape
    order = best_first(scores)
    kept_idx = np.empty(k, dtype=np.int64)
    kept_emb = np.empty((k, d), dtype=np.float32)
    kept_sim = np.empty(k, dtype=np.float32)
    n_kept = 0
    pos = 0
    show = show_progress(progress, n * k, 5e9)
    bar = tqdm(total=k, desc="DEITA filter", unit="pick", disable=not show)
    # float32 similarities are compared with the threshold in float64 everywhere.
    thr = np.float64(threshold)
    while n_kept < k and pos < n:
        block = order[pos : pos + batch_size]
        cand = np.ascontiguousarray(embeddings[block], dtype=np.float32)
        # Largest similarity of every candidate to the rows kept before this block.
        best = max_similarity_to_set(
            cand, kept_emb[:n_kept], block_rows=len(block), block_cols=kept_block
        )
        survivors = np.flatnonzero(best < thr)
        # Survivors against each other, in visiting order: exactly the sequential rule.
        gram = cand[survivors] @ cand[survivors].T if len(survivors) else None
        accepted = np.empty(len(survivors), dtype=np.int64)  # positions in `survivors`
        n_acc = 0
        for a in range(len(survivors)):
            if n_kept + n_acc == k:
                break
            if n_acc:
                assert gram is not None
                local_max = float(gram[a, accepted[:n_acc]].max())
                if local_max >= thr:
                    continue
                best[survivors[a]] = max(float(best[survivors[a]]), local_max)
            accepted[n_acc] = a
            n_acc += 1
        consumed = len(block)
        if n_kept + n_acc == k:  # rows after the k-th pick are not visited
            consumed = int(survivors[accepted[n_acc - 1]]) + 1
        if n_acc:
            take = survivors[accepted[:n_acc]]
            m = len(take)
            kept_idx[n_kept : n_kept + m] = block[take]
            kept_emb[n_kept : n_kept + m] = cand[take]
            kept_sim[n_kept : n_kept + m] = best[take]
            n_kept += m
            bar.update(m)
        pos += consumed
    bar.close()
    return kept_idx[:n_kept].copy(), kept_sim[:n_kept].copy(), pos
