"""MIGSelector: greedy maximisation of the dataset information in the label graph."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, IterableDataset

from hf_mig.annotate.graph import DEFAULT_MAX_EDGES, LabelGraph
from hf_mig.core.budget import budget_select, check_budget, check_costs, check_some_row_fits
from hf_mig.core.encoding import (
    DegeneratePoolError,
    PoolEncoding,
    arrow_columns,
    check_k,
    describe_report,
    encode_appended,
    encode_pool,
    read_scores,
    unique_labels,
)
from hf_mig.core.greedy import Frontier, GreedyResult, greedy_select
from hf_mig.core.incremental import check_same_prefix, greedy_extend
from hf_mig.core.information import LabelInformation, PickExplanation, explain_picks
from hf_mig.core.objective import Objective
from hf_mig.core.quotas import Bound, group_codes, quota_bounds, quota_select
from hf_mig.core.stochastic import check_epsilon, stochastic_select
from hf_mig.core.summary import score_collapse
from hf_mig.data.streaming import (
    StreamingPool,
    pool_encoding,
    pool_labels,
    write_rows,
)
from hf_mig.models.embedders import EmbedderLike, default_threshold, embedder_name
from hf_mig.selectors.base import (
    BaseSelector,
    as_dataset,
    check_bool,
    check_choice,
    check_int,
    check_number,
    register_selector,
)

logger = logging.getLogger(__name__)


def _accepts_pool_on_disk(method):
    """Wrap a pool method of :class:`MIGSelector`: a path (a Parquet file or folder) is passed
    on as a :class:`StreamingPool`, anything else through :func:`as_dataset` (which refuses an
    ``IterableDataset``: :meth:`MIGSelector.select_streaming` takes one explicitly)."""

    @functools.wraps(method)
    def wrapper(self, pool, *args, **kwargs):
        if isinstance(pool, StreamingPool):
            return method(self, pool, *args, **kwargs)
        if isinstance(pool, (str, os.PathLike)):
            return method(self, StreamingPool(pool), *args, **kwargs)
        return method(self, as_dataset(pool, what="mig selection"), *args, **kwargs)

    wrapper._resolves_dataset = True
    return wrapper


GAIN_COLUMNS = ("mig_rank", "mig_gain")
#: the column ``explain`` adds: each pick's top labels by contribution to its gain
WHY_COLUMN = "mig_why"
WHY_TYPE = pa.list_(
    pa.struct([("label", pa.string()), ("contribution", pa.float64()), ("own", pa.bool_())])
)


@register_selector("mig")
@dataclass(repr=False, eq=False, kw_only=True)
class MIGSelector(BaseSelector):
    """MIG: select ``k`` rows greedily maximising the label-graph information ``E(S)``.

    Parameters
    ----------
    k: number of rows to select. With ``budget``: the most rows to select, or ``None``
        (default) for the budget alone; without a budget ``k`` is required.
    label_graph: a :class:`LabelGraph` or a path to one saved with ``LabelGraph.save``. When
        omitted, a graph over the pool's own labels is built with ``embedder`` and
        ``threshold``.
    embedder, threshold: how to build that graph. ``threshold=None`` uses the value calibrated
        for the embedder (0.9 for E5-Mistral as in the paper; see ``DEFAULT_THRESHOLDS``).
    max_edges, max_degree: limits of that graph (see :meth:`LabelGraph.from_embeddings`):
        building refuses, before the work, a graph estimated to have more than ``max_edges``
        edges (default ``hf_mig.annotate.graph.DEFAULT_MAX_EDGES``, 20M, about 2.4 GB);
        ``max_degree`` keeps each label's ``max_degree`` closest neighbours only (default: all).
    graph_cache: where that graph is cached on disk (see :meth:`LabelGraph.from_labels`):
        ``True`` (default) the hf-mig cache (``$HF_MIG_CACHE/label_graphs``, default
        ``~/.cache/hf_mig/label_graphs``), a folder, or ``False`` for no cache. The key is the
        pool's label set, the embedder's name and content identity, the threshold, the limits
        and the graph format, so a repeated selection over the same labels loads the graph
        instead of embedding them again; a graph from a callable embedder is never cached.
    phi, phi_a, phi_b, phi_alpha: the information function (``"pow"``: ``(x+a)^b``;
        ``"exp"``: ``1 - exp(-alpha x)``).
    prop_weight: weight of off-diagonal graph edges in propagation (0 = none).
    norm: divide each score by the row's number of labels, counted as the reference sampler
        counts them: every occurrence of a label in the row's list, repeats included, after
        labels outside the label graph (and ``vocabulary``) are dropped. A row tagged
        ``["code", "code", "math"]`` has weight ``score / 3`` on each of its two distinct
        labels (a repeated label still contributes once to ``v_i``). Default ``False``, as in
        the paper and the reference's command line.
    gain: ``"gradient"`` (the authors' rule, default) or ``"exact"`` (marginal gain).
    labels_column, score_column: where labels (list of strings) and scores (numbers >= 0) are.
    vocabulary: optional labels to restrict to; others are ignored (and counted).
    min_coverage: the least share of rows that must have at least one label in the label graph
        (default 0.5; 0 disables the check). Rows without such a label carry no information and
        are picked last, in file order, so below the floor the selection says little; the
        error gives the row and label-occurrence coverage. A pool where *no* row has a label
        in the graph is refused whatever this says.
    record_gains: ``select`` adds ``mig_rank`` (0-based pick order) and ``mig_gain`` columns.
        A pool that already has either column is refused before the work unless
        ``overwrite_gain_columns=True``, which replaces them in the selection.
    explain: when ``> 0``, ``select`` adds a ``mig_why`` column: the pick's ``explain`` labels
        that contributed most to its gain, each ``{"label", "contribution", "own"}`` (``own``:
        one of the row's labels, else a neighbour reached through the label graph), computed
        after the greedy by :func:`hf_mig.core.information.explain_picks`; the contributions
        of all labels sum to the gain (``mig_gain``). Default 0: no column. An existing
        ``mig_why`` column is treated as ``record_gains`` treats its columns.
    engine: ``"auto"`` (lazy greedy when exact, else the full scan), ``"lazy"``, ``"scan"`` or
        ``"stochastic"``: stochastic greedy (:func:`hf_mig.core.stochastic.stochastic_select`),
        each pick the best of ``ceil((n / k) ln(1 / epsilon))`` rows drawn with ``seed``
        among those not yet picked; E(S) within ``1 - 1/e - epsilon`` of the best in
        expectation, in about ``n ln(1 / epsilon)`` gain evaluations whatever ``k``.
    epsilon: the stochastic engine's accuracy, ``0 < epsilon < 1`` (default 0.01).
    seed: the stochastic engine's draws (the same seed gives the same picks).
    budget: when set, the picks' total cost (``cost_column``, e.g. tokens) stays ``<= budget``,
        and at most ``k`` rows are picked, whichever binds first (default ``None``: ``k`` rows).
        The selection is the better, by E(S), of a cost-scaled greedy (largest gain / cost among
        rows that still fit) and a unit-cost greedy (largest gain among rows that still fit):
        within ``(1 - 1/e) / 2`` of the best selection within the budget
        (:func:`hf_mig.core.budget.budget_select`). A row costing more than the budget is never
        picked; phi must be concave and ``engine`` ``"auto"`` or ``"lazy"``.
    cost_column: the per-row cost read with ``budget`` (finite numbers ``> 0``).
    quotas: when set, ``{group: (min, max)}`` bounds on how many picks come from each group of
        ``quota_column`` (values compared as text): counts (ints), shares of ``k`` (floats in
        [0, 1]) or ``None`` (no bound); a group left out is unbounded. The minimums are met
        first, by a greedy among the groups still under their minimum, then the greedy goes on
        among the groups under their maximum (:func:`hf_mig.core.quotas.quota_select`); with
        ``budget`` a row must also fit the budget left. Quotas that cannot be met raise
        ``ValueError`` before any work; ``engine`` must be ``"auto"`` or ``"lazy"``.
    quota_column: the column holding each row's group, read with ``quotas``.
    progress: show progress bars (``None``: only for long steps).

    Degenerate inputs raise :class:`hf_mig.core.encoding.DegeneratePoolError` (a ``ValueError``)
    before the greedy runs, instead of returning the first ``k`` rows in file order: no row with
    a label in the graph, row coverage below ``min_coverage``, every row that has a label
    scored 0, or scores so large that the objective overflows float64 (the message gives the
    largest score; rescale the scores). When fewer than ``k`` rows carry information (a label
    in the graph and a score above 0) the rest are picked in file order, with a warning.

    Scores that have collapsed (all about equal, or at least 90% of the rows at the lowest or
    highest score: :func:`hf_mig.core.summary.score_collapse`, as DEITA scorers that rate every row
    the same produce) leave MIG ranking by labels alone: a ``logging`` warning says so, and
    ``score_collapse_`` holds the details (``None`` when the scores are fine).

    After ``select_indices``, the fitted attributes ``result_`` (picks, gains, objective trace,
    lazy-evaluation stats), ``label_graph_``, ``encoding_report_`` (see
    :func:`hf_mig.core.encoding.encode_pool`: counts, ``row_coverage``, ``occurrence_coverage``,
    plus ``rows_with_information``) and ``score_collapse_`` are available.
    """

    k: int | None = field(default=None, kw_only=False)
    label_graph: LabelGraph | str | os.PathLike | None = None
    embedder: EmbedderLike | None = None
    threshold: float | None = None
    max_edges: int | None = DEFAULT_MAX_EDGES
    max_degree: int | None = None
    graph_cache: bool | str | os.PathLike = True
    phi: str = "pow"
    phi_a: float = 1e-6
    phi_b: float = 0.8
    phi_alpha: float = 1.0
    prop_weight: float = 1.0
    norm: bool = False
    gain: str = "gradient"
    labels_column: str = "labels"
    score_column: str = "score"
    vocabulary: Collection[str] | None = None
    min_coverage: float = 0.5
    record_gains: bool = False
    overwrite_gain_columns: bool = False
    explain: int = 0
    engine: str = "auto"
    epsilon: float = 0.01
    seed: int = 42
    budget: float | None = None
    cost_column: str = "num_tokens"
    quotas: dict[str, tuple[Bound, Bound]] | None = None
    quota_column: str = "source"
    progress: bool | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def objective(self) -> Objective:
        return Objective(self.phi, self.phi_a, self.phi_b, self.phi_alpha)

    def _check_options(self, dataset: Dataset) -> float:
        """Options and the pool's columns that can be checked before reading any data."""
        check_bool("norm", self.norm)
        check_epsilon(self.epsilon)
        check_int("seed", self.seed, minimum=0)
        floor = self._min_coverage()
        cache = self.graph_cache
        if not (isinstance(cache, (bool, str, os.PathLike)) and cache != ""):
            raise TypeError(
                "graph_cache must be True (the hf-mig cache), False (no cache) or a folder, got "
                f"{cache!r}"
            )
        columns = dataset.column_names or []  # None: a stream with no rows to tell them
        if self.budget is not None:
            check_budget(self.budget)
            check_choice("engine (with a budget)", self.engine, ("auto", "lazy"))
            if dataset.column_names is not None and self.cost_column not in columns:
                raise ValueError(
                    f"cost_column {self.cost_column!r} not found; the pool has columns "
                    f"{dataset.column_names}. A budget needs a numeric cost per row (e.g. "
                    "token counts); set cost_column=..."
                )
        if self.quotas is not None:
            self._quota_groups(dataset)
        check_bool("record_gains", self.record_gains)
        check_bool("overwrite_gain_columns", self.overwrite_gain_columns)
        check_int("explain", self.explain, minimum=0)
        if not self.overwrite_gain_columns:
            taken = [c for c in self._gain_columns() if c in columns]
            if taken:
                raise ValueError(
                    f"{self._gain_option()} would replace the pool's existing column(s) "
                    f"{taken}; rename or remove them first, or pass overwrite_gain_columns=True "
                    "to replace them in the selection"
                )
        return floor

    def _graph_or_labels(
        self, table: pa.Table | Callable[[], list[str]]
    ) -> tuple[LabelGraph | None, list[str]]:
        """The given label graph (restricted to ``vocabulary``) and its labels, or ``None`` and
        the pool's own labels (those of ``table``, or what ``table()`` returns) when the graph
        has to be built."""
        graph = self.label_graph
        if isinstance(graph, (str, os.PathLike)):
            graph = LabelGraph.load(graph)
        if graph is None:
            labels = table() if callable(table) else unique_labels(table, self.labels_column)
            if self.vocabulary is not None:
                allowed = set(self.vocabulary)
                labels = [label for label in labels if label in allowed]
            return None, labels
        if not isinstance(graph, LabelGraph):
            raise TypeError(f"label_graph must be a LabelGraph or a path, got {type(graph)}")
        if self.vocabulary is not None:
            allowed = set(self.vocabulary)
            keep = [label for label in graph.labels if label in allowed]
            if len(keep) != graph.num_labels:
                graph = graph.subgraph(keep)
        return graph, graph.labels

    def _build_graph(self, labels: list[str]) -> LabelGraph:
        threshold = self.threshold
        if threshold is None:
            threshold = default_threshold(self.embedder)
        logger.info(
            "Label graph over the pool's %d labels (embedder %s, T=%s)",
            len(labels),
            embedder_name(self.embedder),
            threshold,
        )
        return LabelGraph.from_labels(
            labels,
            embedder=self.embedder,
            threshold=threshold,
            max_edges=self.max_edges,
            max_degree=self.max_degree,
            progress=self.progress,
            cache=self.graph_cache,
        )

    def encode(self, dataset: Dataset) -> tuple[PoolEncoding, LabelGraph]:
        """Validate and encode the pool's columns against the label graph's vocabulary.

        The pool is checked (:meth:`check_encoding`) before a missing graph is built.
        """
        table = arrow_columns(dataset, [self.labels_column, self.score_column])
        graph, labels = self._graph_or_labels(table)
        encoding = encode_pool(
            table, labels, labels_column=self.labels_column, score_column=self.score_column
        )
        self.check_encoding(encoding, given_graph=graph is not None)
        if graph is None:
            graph = self._build_graph(labels)
        return encoding, graph

    def check_encoding(self, encoding: PoolEncoding, *, given_graph: bool = True) -> None:
        """Refuse a pool that leaves MIG nothing to decide by (see the class docstring); add
        ``rows_with_information`` to the report and warn when it is below ``k``."""
        report = encoding.report
        column = self.labels_column
        floor = self._min_coverage()
        n = encoding.num_rows
        if n == 0:
            raise DegeneratePoolError("the pool has no rows: there is nothing to select")
        where = "the label graph" if given_graph else "the vocabulary"
        outside = report.get("examples_outside_vocabulary") or []
        examples = f" (pool labels not in it, e.g. {outside[:3]})" if outside else ""
        if report["rows_with_labels"] == 0:
            if report["label_occurrences"] == 0:
                raise DegeneratePoolError(
                    f"no row of the pool has a label (column {column!r} holds only empty "
                    "lists): MIG has nothing to select by and would return the first k rows in "
                    "file order. Tag the pool first (hf-mig tag)."
                )
            raise DegeneratePoolError(
                f"no row of the pool has a label in {where} ({len(encoding.vocabulary):,} labels): "
                f"{report['label_occurrences']:,} label occurrences, none known{examples}. "
                "MIG would return the first k rows in file order. Use a label graph built over "
                "the pool's labels (hf-mig graph), or tag the pool with the graph's vocabulary."
            )
        coverage = report["row_coverage"]
        if coverage < floor:
            raise DegeneratePoolError(
                f"only {report['rows_with_labels']:,} of {n:,} rows ({coverage:.1%}) have a label "
                f"in {where}, below min_coverage={floor:g}; the label occurrences it covers: "
                f"{report['occurrence_coverage']:.1%}{examples}. Rows without such a label are "
                "picked last in file order. Use a graph over the pool's own labels, or pass a "
                "lower min_coverage (0 disables the check) to select anyway."
            )
        weights = encoding.weights(self.norm)
        informative = (encoding.label_counts() > 0) & (weights > 0)
        report["rows_with_information"] = int(informative.sum())
        if not informative.any():
            raise DegeneratePoolError(
                f"every row with a label in {where} has score 0 (column "
                f"{self.score_column!r}): every gain is 0 and MIG would return the first k rows "
                "in file order. Score the pool first (hf-mig score), or check the score column."
            )
        k = self._k(encoding.num_rows)
        if self.budget is None and report["rows_with_information"] < k:
            logger.warning(
                "MIG: only %d rows have a label in %s and a score above 0; the other %d of "
                "k=%d picks carry no information and follow file order",
                report["rows_with_information"],
                where,
                k - report["rows_with_information"],
                k,
            )

    def _check_k(self, dataset: Dataset) -> int:
        n = len(as_dataset(dataset))
        if n == 0:
            raise DegeneratePoolError("the pool has no rows: there is nothing to select")
        return self._k(n)

    def _k(self, n: int) -> int:
        """``k`` checked against a pool of ``n`` rows; ``n`` when ``k`` is ``None`` with a
        budget (the budget alone binds)."""
        if self.k is None:
            if self.budget is None:
                raise TypeError(
                    "k must be an integer (the number of rows to select); it may be left out "
                    "only with a budget"
                )
            return n
        return check_k(self.k, n)

    def _min_coverage(self) -> float:
        return check_number("min_coverage", self.min_coverage, 0, 1, hint=" (0 disables the check)")

    def _check_bounds(self, info: LabelInformation, frontier: Frontier | None = None) -> None:
        """Refuse scores that overflow the objective; the rows ``frontier`` covers (a run over
        the same first rows) are not read again."""
        known = None
        if frontier is not None and np.isfinite(frontier.row_gain):
            known = (frontier.rows, frontier.row_gain)
        bounds = info.bounds(self.objective, known=known)
        encoding = info.encoding
        if not all(np.isfinite(v) for v in bounds.values()):
            top = int(np.argmax(encoding.scores))
            raise DegeneratePoolError(
                f"scores too large: the MIG objective would overflow float64 (largest score "
                f"{encoding.scores[top]:.6g} in row {top} of column {self.score_column!r}, sum "
                f"of weights {bounds['weight_total']:.3g}, bound on a gain "
                f"{bounds['gain']:.3g}). Rescale the scores, e.g. divide the column by its "
                "maximum."
            )

    # ------------------------------------------------------------------ work
    @_accepts_pool_on_disk
    def select_indices(self, dataset: Dataset | StreamingPool) -> np.ndarray:
        """Row indices of the ``k`` picks, in pick order.

        ``dataset``: a ``Dataset`` (or a ``DatasetDict`` with one split), or the path of a pool
        read in batches without loading it, a Parquet file or a folder of Parquet files (see
        :meth:`select_streaming`, which also reads a ``datasets.IterableDataset``).
        """
        if isinstance(dataset, StreamingPool):
            return self.select_streaming(dataset)
        k = self._check_k(dataset)
        self._check_options(dataset)
        costs = self._checked_costs(dataset) if self.budget is not None else None
        encoding, graph = self.encode(dataset)
        return self._select_encoded(dataset, encoding, graph, k, costs)

    def _select_encoded(
        self,
        dataset: Dataset | StreamingPool,
        encoding: PoolEncoding,
        graph: LabelGraph,
        k: int,
        costs: np.ndarray | None = None,
    ) -> np.ndarray:
        """The selection from a checked encoding; sets the fitted attributes."""
        objective = self.objective
        message = describe_report(encoding.report)
        if encoding.report.get("labels_outside_vocabulary") or encoding.report.get(
            "rows_without_labels"
        ):
            logger.warning("MIG: %s", message)
        else:
            logger.info("MIG: %s", message)
        collapse = score_collapse(encoding.scores)
        if collapse is not None:
            logger.warning(
                "MIG: the scores in column %r have collapsed (%s): %s",
                self.score_column,
                collapse["reason"],
                collapse["message"],
            )
        info = LabelInformation.build(
            encoding, graph.propagation_matrix(self.prop_weight), norm=self.norm
        )
        self._check_bounds(info)
        if self.quotas is not None:
            result = self._quota_select(dataset, encoding, info, k, costs)
        elif self.budget is not None:
            result = self._budget_select(dataset, encoding, info, k, costs)
        else:
            arrays = (encoding.indptr, encoding.label_ids, info.weights, info.propagation, k)
            if self.engine == "stochastic":
                result = stochastic_select(
                    *arrays, objective, epsilon=self.epsilon, seed=self.seed, gain=self.gain,
                    progress=self.progress,
                )
            else:
                result = greedy_select(
                    *arrays, objective, gain=self.gain, engine=self.engine, progress=self.progress
                )
        self.result_: GreedyResult = result
        self.label_graph_: LabelGraph = graph
        self.encoding_report_: dict = encoding.report
        self.score_collapse_: dict | None = collapse
        self._encoding = encoding
        self._frontier_settings = self._greedy_settings()
        self._label_graph_option = self.label_graph
        return result.indices

    def _greedy_settings(self) -> tuple:
        """What ``result_.frontier`` depends on besides the pool: a frontier left under other
        settings is not reused by :meth:`extend`. The graph is held, not its ``id``, so that a
        copied or unpickled selector (whose graph is copied with it) still matches."""
        graph = getattr(self, "label_graph_", None)
        return (self.objective, self.gain, self.norm, self.prop_weight, graph)

    def _same_greedy_settings(self) -> bool:
        """Whether ``result_.frontier`` was left under this selector's current settings."""
        then, now = getattr(self, "_frontier_settings", None), self._greedy_settings()
        return then is not None and then[:-1] == now[:-1] and then[-1] is now[-1]

    def _costs(self, dataset: Dataset) -> np.ndarray:
        """The rows' costs in ``cost_column`` (errors name the first bad row)."""
        return read_scores(
            dataset, self.cost_column, what="budgeted MIG selection", name_rows="column"
        )

    def _checked_costs(self, dataset: Dataset, costs: np.ndarray | None = None) -> np.ndarray:
        """The rows' costs (``costs``, else read from ``dataset``) once each is finite and
        ``> 0`` and some row the quotas allow fits the budget, so that bad costs are found
        before the encoding and the label graph are built."""
        costs = self._costs(dataset) if costs is None else costs
        costs = check_costs(costs, len(costs), self.cost_column)
        allowed = None if self.quotas is None else self._quota_groups(dataset)[1]
        check_some_row_fits(costs, self.budget, self.cost_column, allowed=allowed)
        return costs

    def _budget_select(
        self,
        dataset: Dataset,
        encoding: PoolEncoding,
        info: LabelInformation,
        k: int,
        costs: np.ndarray | None = None,
    ) -> GreedyResult:
        arrays = (encoding.indptr, encoding.label_ids, info.weights, info.propagation)
        costs = self._costs(dataset) if costs is None else costs
        return budget_select(
            *arrays, self.budget, costs, k, self.objective, gain=self.gain,
            progress=self.progress, cost_column=self.cost_column,
        )

    def _quota_groups(self, dataset: Dataset) -> tuple[pa.ChunkedArray, np.ndarray]:
        """Each row's group in ``quota_column`` and whether the quotas allow picking it (its
        group's maximum is above 0), once ``quotas`` can be met (``ValueError`` saying why
        otherwise: see :func:`hf_mig.core.quotas.quota_bounds`)."""
        check_choice("engine (with quotas)", self.engine, ("auto", "lazy"))
        if self.quota_column not in dataset.column_names:
            raise ValueError(
                f"quota_column {self.quota_column!r} not found; the pool has columns "
                f"{dataset.column_names}. Quotas need each row's group; set quota_column=..."
            )
        groups = arrow_columns(dataset, [self.quota_column]).column(0)
        names, codes = group_codes(groups, self.quota_column)
        sizes = np.bincount(codes, minlength=len(names))
        k, column = self._k(len(groups)), self.quota_column
        if self.k is None and isinstance(self.quotas, dict):
            shares = [
                f"{group}: {bound!r}"
                for group, bounds in self.quotas.items()
                for bound in (bounds if isinstance(bounds, (tuple, list)) else ())
                if isinstance(bound, (float, np.floating))
            ]
            if shares:
                raise ValueError(
                    f"quotas given as shares of k ({', '.join(shares)}) need k; with a budget "
                    "alone give the bounds as counts, or pass k"
                )
        _, upper = quota_bounds(self.quotas, names, sizes, k, column, fill_k=self.budget is None)
        return groups, upper[codes] > 0

    def _quota_select(
        self,
        dataset: Dataset,
        encoding: PoolEncoding,
        info: LabelInformation,
        k: int,
        costs: np.ndarray | None = None,
    ) -> GreedyResult:
        if self.budget is not None and costs is None:
            costs = self._costs(dataset)
        arrays = (encoding.indptr, encoding.label_ids, info.weights, info.propagation)
        return quota_select(
            *arrays, k, self._quota_groups(dataset)[0], self.quotas, self.objective,
            gain=self.gain, budget=self.budget, costs=costs, progress=self.progress,
            quota_column=self.quota_column, cost_column=self.cost_column,
        )

    # ------------------------------------------------------------------ pools on disk
    def select_streaming(
        self, pool: StreamingPool | str | os.PathLike | IterableDataset
    ) -> np.ndarray:
        """:meth:`select_indices` for a pool read in batches, never loaded whole.

        ``pool``: a Parquet file, a folder of Parquet files (its ``train`` split,
        read as ``datasets.load_dataset`` reads it; ``StreamingPool(folder, split=...)`` for
        another split) or a ``datasets.IterableDataset``, or a :class:`StreamingPool` of one. The
        label and score columns (and ``cost_column`` with a budget) are read in Arrow batches
        and encoded into memory-mapped ``.npy`` files (:func:`hf_mig.data.streaming.pool_encoding`),
        cached by content in ``$HF_MIG_CACHE/encodings`` (not with ``graph_cache=False``); when
        no label graph is given, a first pass collects the pool's labels. The picks, the report
        and every check are those of the same pool loaded as a ``Dataset``; errors name the
        row's position in the whole pool. ``quotas`` need the pool in memory.
        """
        if not isinstance(pool, StreamingPool):
            pool = StreamingPool(pool)
        if self.quotas is not None:
            raise ValueError(
                "quotas read every row's group in memory: select with quotas from a loaded "
                "Dataset; a pool on disk is selected without them"
            )
        if pool.num_rows is not None:
            k = self._k(pool.num_rows)
        else:  # the size is known after the encoding pass: check all but the upper bound now
            k = None
            if self.k is not None or self.budget is None:
                self._k(np.iinfo(np.int64).max)
        self._check_options(pool)
        pool.check_columns([self.labels_column, self.score_column])
        cache = self.graph_cache is not False
        graph, labels = self._graph_or_labels(
            lambda: pool_labels(pool, self.labels_column, cache=cache, progress=self.progress)
        )
        encoding, costs = pool_encoding(
            pool,
            labels,
            labels_column=self.labels_column,
            score_column=self.score_column,
            cost_column=self.cost_column if self.budget is not None else None,
            cache=cache,
            progress=self.progress,
        )
        self.check_encoding(encoding, given_graph=graph is not None)
        if costs is not None:
            costs = self._checked_costs(pool, costs)
        k = self._k(encoding.num_rows) if k is None else k
        if graph is None:
            graph = self._build_graph(labels)
        return self._select_encoded(pool, encoding, graph, k, costs)

    def select_to_file(
        self,
        pool: Dataset | StreamingPool | str | os.PathLike | IterableDataset,
        out: str | os.PathLike,
        *,
        overwrite: bool = False,
    ) -> np.ndarray:
        """Select from ``pool`` (a ``Dataset``, a Parquet file or folder, or an
        ``IterableDataset``) and write the picked rows, in pick order, to ``out`` (any
        format of :func:`hf_mig.data.io.save_dataset`: ``.parquet``, ``.jsonl``, ``.json``,
        ``.csv`` or a folder), with the columns :meth:`rows` adds; return the picks.

        A pool on disk (see :meth:`select_streaming`) is never loaded: a second pass gathers the
        picked rows (:func:`hf_mig.data.streaming.write_rows`). ``out`` is checked before the
        work, written beside itself and renamed; an existing ``out`` is refused unless
        ``overwrite``.
        """
        from hf_mig.data.io import check_output, save_dataset

        check_output(out, overwrite=overwrite)
        if isinstance(pool, (str, os.PathLike, IterableDataset)):
            pool = StreamingPool(pool)
        if isinstance(pool, StreamingPool):
            indices = self.select_streaming(pool)
        else:
            pool = as_dataset(pool, what="mig selection")
            indices = self.select_indices(pool)
        if isinstance(pool, StreamingPool):
            write_rows(
                pool, indices, out, overwrite=overwrite, finish=self.rows, progress=self.progress
            )
        else:
            save_dataset(self.rows(pool, indices), out, overwrite=overwrite)
        return indices

    def extend(self, pool: Dataset, k_more: int) -> Dataset:
        """Add ``k_more`` picks to the last selection, continuing its greedy over a grown pool.

        ``pool``: the pool of the last :meth:`select` (or :meth:`extend`) with rows appended
        (same columns); its first rows must hold the same labels and scores, else
        :class:`hf_mig.core.encoding.PoolValidationError` names the first row that differs.
        The rows already picked stay picked, first and in order; ``k_more`` (between 1 and
        the rows not picked yet) more are picked among all the others, old and new, by the
        same greedy from the current ``x(S)`` (:func:`hf_mig.core.incremental.greedy_extend`),
        over the same label graph (labels it does not know are ignored and counted in
        ``encoding_report_``). The lazy engines start from the bounds the last run left
        (``result_.frontier``), so only the appended rows are evaluated up front. Returns the
        whole selection as :meth:`select` does and updates the fitted attributes, so ``extend``
        can be called again. Selections made with a
        ``budget``, ``quotas`` or the ``"stochastic"`` engine cannot be extended: run
        :meth:`select`.
        """
        pool = as_dataset(pool)
        if getattr(self, "result_", None) is None:
            raise RuntimeError("extend continues a selection: call select first")
        if self.budget is not None or self.quotas is not None or self.engine == "stochastic":
            raise ValueError(
                "extend continues the greedy by rows; a selection made with a budget, quotas or "
                f"engine={self.engine!r} cannot be extended: run select on the new pool"
            )
        given = getattr(self, "_label_graph_option", self.label_graph)
        now = self.label_graph
        paths = all(isinstance(g, (str, os.PathLike)) for g in (given, now))
        if not (given is now or (paths and os.fspath(given) == os.fspath(now))):
            raise ValueError(
                "label_graph was changed since the selection: extend continues over the graph "
                "of the selection it extends (label_graph_); run select with the new graph"
            )
        old = self._encoding
        table = arrow_columns(pool, [self.labels_column, self.score_column])
        columns = {"labels_column": self.labels_column, "score_column": self.score_column}
        encoding = encode_appended(old, table, **columns)
        if encoding is None:  # the first rows are not the same data: compare them row by row
            encoding = encode_pool(table, old.vocabulary, **columns)
            check_same_prefix(old, encoding, **columns)
        self.check_encoding(encoding, given_graph=self.label_graph is not None)
        info = LabelInformation.build(
            encoding, self.label_graph_.propagation_matrix(self.prop_weight), norm=self.norm
        )
        before = self.result_
        frontier = before.frontier if self._same_greedy_settings() else None  # else: replay
        self._check_bounds(info, frontier)
        arrays = (encoding.indptr, encoding.label_ids, info.weights, info.propagation)
        more, state = greedy_extend(
            *arrays,
            k_more,
            before.indices,
            self.objective,
            gain=self.gain,
            engine=self.engine,
            progress=self.progress,
            frontier=frontier,
        )
        self.result_ = GreedyResult(
            state.picks,
            np.concatenate([before.gains, more.gains]),
            np.concatenate([before.objective_trace, more.objective_trace]),
            before.initial_objective,
            {**more.stats, "extended_from": int(before.indices.size)},
            state.frontier,
        )
        self._encoding = encoding
        self.encoding_report_ = encoding.report
        self._frontier_settings = self._greedy_settings()
        return self.rows(pool, self.result_.indices)

    @property
    def objective_trace_(self) -> np.ndarray:
        """E(S) after each pick of the last run (for plots)."""
        return self.result_.objective_trace

    def _gain_columns(self) -> tuple[str, ...]:
        """The columns :meth:`rows` adds: ``GAIN_COLUMNS`` with ``record_gains``, ``mig_why``
        with ``explain``."""
        return (GAIN_COLUMNS if self.record_gains else ()) + ((WHY_COLUMN,) if self.explain else ())

    def _gain_option(self) -> str:
        given = [f"record_gains={self.record_gains}", f"explain={self.explain}"]
        return " and ".join(given[i] for i in (0, 1) if (self.record_gains, self.explain)[i])

    def explanations(self, n: int | None = None, top: int | None = 3) -> list[PickExplanation]:
        """Why the first ``n`` picks of the last run (``None``: all) were picked: each gain split
        by label, the ``top`` labels (:func:`hf_mig.core.information.explain_picks`, with this
        selector's graph, ``prop_weight``, ``norm``, phi and ``gain``)."""
        info = LabelInformation.build(
            self._encoding, self.label_graph_.propagation_matrix(self.prop_weight), norm=self.norm
        )
        picks = self.result_.indices if n is None else self.result_.indices[:n]
        return explain_picks(info, picks, self.objective, gain=self.gain, top=top)

    def rows(self, dataset: Dataset, indices: np.ndarray) -> Dataset:
        """``dataset.select(indices)`` with ``mig_rank`` / ``mig_gain`` when ``record_gains`` and
        ``mig_why`` when ``explain`` (``indices``: what :meth:`select_indices` just returned for
        ``dataset``). Existing columns of those names are replaced only with
        ``overwrite_gain_columns=True``."""
        subset = dataset.select(indices)
        columns = self._gain_columns()
        taken = [name for name in columns if name in subset.column_names]
        if taken and not self.overwrite_gain_columns:
            raise ValueError(
                f"{self._gain_option()} would replace the pool's existing column(s) {taken}; "
                "pass overwrite_gain_columns=True to replace them"
            )
        if taken:
            subset = subset.remove_columns(taken)
        if self.record_gains:
            subset = subset.add_column("mig_rank", np.arange(len(indices), dtype=np.int64))
            subset = subset.add_column("mig_gain", self.result_.gains.astype(np.float64))
        if self.explain:
            why = [
                [{k: d[k] for k in ("label", "contribution", "own")} for d in e.labels]
                for e in self.explanations(top=int(self.explain))
            ]
            feature = Features.from_arrow_schema(pa.schema([(WHY_COLUMN, WHY_TYPE)]))[WHY_COLUMN]
            subset = subset.add_column(WHY_COLUMN, why, feature=feature)
        return subset
