"""#InsTag complexity-first diverse sampling (Lu et al., ICLR 2024, Algorithm 1).

Rows are sorted by their number of distinct tags, most first ("complexity first"). A pass walks
the sorted rows with an empty tag set and takes every row that brings at least one tag the pass
has not seen yet ("diverse"); taken rows leave the pool. The paper repeats such passes, each
starting from an empty tag set again, until ``k`` rows are taken. Rows that can never enlarge a
tag set (no tags at all) are taken last, in sorted order.

Labels are read through Arrow and encoded once; the passes run in a compiled loop that stops a
pass as soon as every tag still present in the pool is covered, so 50,000 picks from a
939,000-row pool take about a second.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
from datasets import Dataset

from hf_mig.core._jit import njit
from hf_mig.core.encoding import (
    DegeneratePoolError,
    PoolEncoding,
    arrow_columns,
    describe_report,
    encode_pool,
    unique_labels,
)
from hf_mig.selectors.base import BaseSelector, check_choice, register_selector
from hf_mig.selectors.ranking import read_numeric_column

logger = logging.getLogger(__name__)

Strategy = Literal["passes", "fill"]
_STRATEGIES = ("passes", "fill")


@njit
def _complexity_first(order, indptr, label_ids, n_labels, k, repeat):
    """Walk ``order`` (rows sorted by priority) taking rows that enlarge the pass's tag set.

    ``repeat``: start a new pass (empty tag set) over the rows left while fewer than ``k`` are
    taken (the paper's Algorithm 1); otherwise stop after the first pass. Rows still needed
    afterwards are taken in ``order`` from those left. Returns ``(picks, pass_of_pick)`` where
    ``pass_of_pick`` is the 1-based pass that took the row, or 0 for rows taken by the fill.
    ``order`` is modified (compacted) in place.
    """
    n = order.size
    picks = np.empty(k, dtype=np.int64)
    pass_of = np.zeros(k, dtype=np.int64)
    left_with = np.zeros(n_labels, dtype=np.int64)  # rows not taken that carry each label
    for q in range(label_ids.size):
        left_with[label_ids[q]] += 1
    present = 0  # labels that some row not taken carries
    for lab in range(n_labels):
        if left_with[lab] > 0:
            present += 1
    seen_in = np.zeros(n_labels, dtype=np.int64)  # pass number that last covered each label
    taken = np.zeros(n, dtype=np.bool_)
    m = 0
    start = 0  # order[start:] holds the rows not taken, in priority order
    p = 0
    while m < k and present > 0:
        p += 1
        uncovered = present  # labels carried by rows left and not covered in this pass
        i = start
        while i < n and uncovered > 0 and m < k:
            r = order[i]
            fresh = False
            for q in range(indptr[r], indptr[r + 1]):
                if seen_in[label_ids[q]] != p:
                    fresh = True
                    break
            if fresh:
                for q in range(indptr[r], indptr[r + 1]):
                    lab = label_ids[q]
                    if seen_in[lab] != p:
                        seen_in[lab] = p
                        uncovered -= 1
                    left_with[lab] -= 1
                    if left_with[lab] == 0:
                        present -= 1
                taken[r] = True
                picks[m] = r
                pass_of[m] = p
                m += 1
            i += 1
        # compact the scanned part: rows not taken keep their order and end at position i
        w = i
        for j in range(i - 1, start - 1, -1):
            if not taken[order[j]]:
                w -= 1
                order[w] = order[j]
        start = w
        if not repeat:
            break
    j = start
    while m < k:
        picks[m] = order[j]
        m += 1
        j += 1
    return picks, pass_of


@register_selector("instag")
@dataclass(repr=False, eq=False, kw_only=True)
class InsTagSelector(BaseSelector):
    """#InsTag complexity-first diverse sampling over a label (tag) column.

    Parameters
    ----------
    k: number of rows to select.
    labels_column: list-of-strings column with each row's tags (default ``"labels"``).
    score_column: tie-break between rows with the same number of tags: higher score first. Used
        when the pool has this column (default ``"score"``), ignored when it has not or when
        ``None``. Values may be any finite or infinite number; null or NaN raise, naming the row.
    vocabulary: optional collection of tags to keep; others are ignored (and counted in
        ``encoding_report_``).
    strategy: ``"passes"`` (default): the paper's Algorithm 1: after a pass over the sorted rows,
        start another with an empty tag set over the rows left, until ``k`` are taken.
        ``"fill"``: a single pass, then the remaining slots are filled with the rows it skipped,
        in sorted order.

    Order: number of distinct tags (after the vocabulary filter) descending, then score
    descending, then row index ascending. A repeated tag within a row counts once. Picks are
    returned in the order they were taken (pass by pass). Rows without any tag are never taken
    by a pass; they come last, in sorted order, if ``k`` requires them. A pool where no row has
    a tag (and ``k`` is below its size) raises :class:`hf_mig.core.encoding.DegeneratePoolError`.

    Fitted attributes: ``tag_counts_`` (distinct tags per row), ``pass_of_pick_`` (1-based pass
    that took each pick; 0 = taken by the final fill), ``passes_`` (number of passes),
    ``n_filled_``, ``covered_labels_`` (sorted distinct tags of the selection),
    ``n_pool_labels_`` (distinct tags in the pool), ``score_column_`` (the tie-break column
    used, or ``None``), ``encoding_report_``.
    """

    labels_column: str = "labels"
    score_column: str | None = "score"
    vocabulary: Collection[str] | None = None
    strategy: Strategy = "passes"

    def encode(self, dataset: Dataset) -> PoolEncoding:
        """Tags of every row as sorted, distinct label ids (CSR) over the sorted vocabulary."""
        table = arrow_columns(dataset, [self.labels_column])
        labels = unique_labels(table, self.labels_column)
        if self.vocabulary is not None:
            allowed = set(self.vocabulary)
            labels = [label for label in labels if label in allowed]
        # encode_pool validates a score column too; the tie-break scores are read separately
        zeros = pa.array(np.zeros(table.num_rows, dtype=np.float64))
        table = table.append_column("__instag_zero__", zeros)
        return encode_pool(
            table, labels, labels_column=self.labels_column, score_column="__instag_zero__"
        )

    def select_indices(self, dataset: Dataset) -> np.ndarray:
        """Row indices of the ``k`` picks, in the order they were taken."""
        k = self._check_k(dataset)
        check_choice("strategy", self.strategy, _STRATEGIES)
        score_column = self.score_column
        if score_column is not None and score_column not in dataset.column_names:
            score_column = None
        scores = None
        if score_column is not None:
            try:
                scores, missing = read_numeric_column(dataset, score_column)
            except ValueError as err:
                raise type(err)(
                    f"{err} (the tie-break score; pass score_column=None to break ties by row "
                    "index only)"
                ) from err
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise ValueError(
                    f"row {row}: column {score_column!r} (the tie-break score) is null or NaN "
                    f"({int(missing.sum())} rows affected); fix it or pass score_column=None"
                )
        encoding = self.encode(dataset)
        logger.info("InsTag: %s", describe_report(encoding.report))
        n = encoding.num_rows
        if encoding.report["rows_with_labels"] == 0 and k < n:
            raise DegeneratePoolError(
                f"no row of the pool has a tag in column {self.labels_column!r}"
                + (" within the vocabulary" if self.vocabulary is not None else "")
                + ": #InsTag would order the rows by score and row index alone. Tag the pool "
                "first (hf-mig tag)."
            )
        counts = encoding.label_counts()
        index = np.arange(n, dtype=np.int64)
        if scores is None:
            order = np.lexsort((index, -counts))
        else:
            order = np.lexsort((index, -scores, -counts))
        order = np.ascontiguousarray(order, dtype=np.int64)
        picks, pass_of = _complexity_first(
            order,
            encoding.indptr,
            encoding.label_ids,
            len(encoding.vocabulary),
            k,
            self.strategy == "passes",
        )
        chosen = np.zeros(n, dtype=bool)
        chosen[picks] = True
        covered = np.unique(encoding.label_ids[np.repeat(chosen, counts)])
        self.tag_counts_ = counts
        self.pass_of_pick_ = pass_of
        self.passes_ = int(pass_of.max()) if pass_of.size else 0
        self.n_filled_ = int((pass_of == 0).sum())
        self.covered_labels_ = [encoding.vocabulary[j] for j in covered]
        self.n_pool_labels_ = int(np.unique(encoding.label_ids).size)
        self.score_column_ = score_column
        self.encoding_report_ = encoding.report
        return picks
