"""MIGSelector: greedy maximisation of the dataset information in the label graph."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence

import numpy as np
import pyarrow as pa
from datasets import Dataset

from ..embedders import EmbedderLike, default_threshold, embedder_name
from ..encoding import PoolEncoding, describe_report, encode_pool, unique_labels
from ..graph import LabelGraph
from ..greedy import GreedyResult, greedy_select
from ..objective import Objective
from .base import BaseSelector, register_selector

logger = logging.getLogger(__name__)


def arrow_columns(dataset: Dataset, columns: Sequence[str]) -> pa.Table:
    """The given columns of ``dataset`` as an Arrow table, in row order (views resolved)."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"column {missing[0]!r} not found; the pool has columns {dataset.column_names}"
        )
    return dataset.select_columns(list(columns)).with_format("arrow")[:]


@register_selector("mig")
class MIGSelector(BaseSelector):
    """MIG: select ``k`` rows greedily maximising the label-graph information ``E(S)``.

    Parameters
    ----------
    k: number of rows to select.
    label_graph: a :class:`LabelGraph` or a path to one saved with ``LabelGraph.save``. When
        omitted, a graph over the pool's own labels is built with ``embedder`` and
        ``threshold``.
    embedder, threshold: how to build that graph. ``threshold=None`` uses the value calibrated
        for the embedder (0.9 for E5-Mistral as in the paper; see ``DEFAULT_THRESHOLDS``).
    phi, phi_a, phi_b, phi_alpha: the information function (``"pow"``: ``(x+a)^b``;
        ``"exp"``: ``1 - exp(-alpha x)``).
    prop_weight: weight of off-diagonal graph edges in propagation (0 = none).
    norm: divide each score by the row's number of labels.
    gain: ``"gradient"`` (the authors' rule, default) or ``"exact"`` (marginal gain).
    labels_column, score_column: where labels (list of strings) and scores (numbers >= 0) are.
    vocabulary: optional labels to restrict to; others are ignored (and counted).
    record_gains: ``select`` adds ``mig_rank`` (0-based pick order) and ``mig_gain`` columns.
    engine: ``"auto"`` (lazy greedy when exact, else the full scan), ``"lazy"`` or ``"scan"``.
    progress: show progress bars (``None``: only for long steps).

    After ``select_indices``, the fitted attributes ``result_`` (picks, gains, objective trace,
    lazy-evaluation stats), ``label_graph_``, ``encoding_report_`` are available.
    """

    def __init__(
        self,
        k: int,
        *,
        label_graph: LabelGraph | str | os.PathLike | None = None,
        embedder: EmbedderLike | None = None,
        threshold: float | None = None,
        phi: str = "pow",
        phi_a: float = 1e-6,
        phi_b: float = 0.8,
        phi_alpha: float = 1.0,
        prop_weight: float = 1.0,
        norm: bool = False,
        gain: str = "gradient",
        labels_column: str = "labels",
        score_column: str = "score",
        vocabulary: Collection[str] | None = None,
        record_gains: bool = False,
        engine: str = "auto",
        progress: bool | None = None,
    ):
        self.k = k
        self.label_graph = label_graph
        self.embedder = embedder
        self.threshold = threshold
        self.phi = phi
        self.phi_a = phi_a
        self.phi_b = phi_b
        self.phi_alpha = phi_alpha
        self.prop_weight = prop_weight
        self.norm = norm
        self.gain = gain
        self.labels_column = labels_column
        self.score_column = score_column
        self.vocabulary = vocabulary
        self.record_gains = record_gains
        self.engine = engine
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    @property
    def objective(self) -> Objective:
        return Objective(self.phi, self.phi_a, self.phi_b, self.phi_alpha)

    def get_params(self) -> dict:
        """The configuration, JSON-friendly (for manifests and caches)."""
        graph = self.label_graph
        if isinstance(graph, LabelGraph):
            graph_desc = repr(graph)
        else:
            graph_desc = None if graph is None else os.fspath(graph)
        return {
            "method": "mig",
            "k": self.k,
            "label_graph": graph_desc,
            "embedder": None if graph is not None else embedder_name(self.embedder),
            "threshold": self.threshold,
            **self.objective.to_dict(),
            "prop_weight": self.prop_weight,
            "norm": self.norm,
            "gain": self.gain,
            "labels_column": self.labels_column,
            "score_column": self.score_column,
            "vocabulary_size": None if self.vocabulary is None else len(self.vocabulary),
        }

    def _resolve_graph(self, table: pa.Table) -> LabelGraph:
        graph = self.label_graph
        if isinstance(graph, (str, os.PathLike)):
            graph = LabelGraph.load(graph)
        if graph is None:
            labels = unique_labels(table, self.labels_column)
            if self.vocabulary is not None:
                allowed = set(self.vocabulary)
                labels = [label for label in labels if label in allowed]
            threshold = self.threshold
            if threshold is None:
                threshold = default_threshold(self.embedder)
            logger.info("Building the label graph over %d labels (T=%s)", len(labels), threshold)
            return LabelGraph.from_labels(
                labels, embedder=self.embedder, threshold=threshold, progress=self.progress
            )
        if not isinstance(graph, LabelGraph):
            raise TypeError(f"label_graph must be a LabelGraph or a path, got {type(graph)}")
        if self.vocabulary is not None:
            allowed = set(self.vocabulary)
            keep = [label for label in graph.labels if label in allowed]
            if len(keep) != graph.num_labels:
                graph = graph.subgraph(keep)
        return graph

    def encode(self, dataset: Dataset) -> tuple[PoolEncoding, LabelGraph]:
        """Validate and encode the pool's columns against the label graph's vocabulary."""
        table = arrow_columns(dataset, [self.labels_column, self.score_column])
        graph = self._resolve_graph(table)
        encoding = encode_pool(
            table, graph.labels, labels_column=self.labels_column, score_column=self.score_column
        )
        return encoding, graph

    # ------------------------------------------------------------------ work
    def select_indices(self, dataset: Dataset) -> np.ndarray:
        """Row indices of the ``k`` picks, in pick order."""
        k = self._check_k(dataset)
        objective = self.objective
        if self.norm not in (True, False):
            raise TypeError(f"norm must be a bool, got {self.norm!r}")
        encoding, graph = self.encode(dataset)
        message = describe_report(encoding.report)
        if encoding.report.get("labels_outside_vocabulary") or encoding.report.get(
            "rows_without_labels"
        ):
            logger.warning("MIG: %s", message)
        else:
            logger.info("MIG: %s", message)
        propagation = graph.propagation_matrix(self.prop_weight)
        result = greedy_select(
            encoding.indptr,
            encoding.label_ids,
            encoding.weights(self.norm),
            propagation,
            k,
            objective,
            gain=self.gain,
            engine=self.engine,
            progress=self.progress,
        )
        self.result_: GreedyResult = result
        self.label_graph_: LabelGraph = graph
        self.encoding_report_: dict = encoding.report
        self._encoding = encoding
        return result.indices

    @property
    def objective_trace_(self) -> np.ndarray:
        """E(S) after each pick of the last run (for plots)."""
        return self.result_.objective_trace

    def rows(self, dataset: Dataset, indices: np.ndarray) -> Dataset:
        """``dataset.select(indices)`` with ``mig_rank`` / ``mig_gain`` when ``record_gains``
        (``indices``: what :meth:`select_indices` just returned for ``dataset``)."""
        subset = dataset.select(indices)
        if self.record_gains:
            for name in ("mig_rank", "mig_gain"):
                if name in subset.column_names:
                    subset = subset.remove_columns(name)
            subset = subset.add_column("mig_rank", np.arange(len(indices), dtype=np.int64))
            subset = subset.add_column("mig_gain", self.result_.gains.astype(np.float64))
        return subset

    def __repr__(self) -> str:
        params = self.get_params()
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "method")
        return f"MIGSelector({shown})"
