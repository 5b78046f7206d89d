"""The paper's experiments as rows: which pool, method, size and variant each table row trains.

An :class:`Experiment` expands, for a :class:`Scale`, into :class:`Run` rows (one trained model
each). :mod:`hf_mig.reproduce.planner` turns runs into the concrete steps. Two scales:

- ``paper``: the paper's pools, base models, sizes and defaults (SPEC section 4); 8 GPUs per
  training run.
- ``tiny``: the same chain on CPU in minutes: the bundled 427-row self-instruct pool, the offline
  tiny Llama as the base model and as the DEITA / IFD scorer, all-MiniLM-L6-v2 for tags and the
  label graph, k = 64, and SmolLM2-135M-Instruct as the judge. Its ``pools`` experiment runs on
  the bundled annotated copy of that pool (``hf-mig:demo-annotated``: other labels and scores,
  annotated offline when it was made) and, when the project's shared data folder has them, on
  LIMA and the Alpaca-GPT-4 demo pool (not redistributable, so not shipped).

The sweep values of the ablations (thresholds, propagation weights, label counts, sizes) are this
project's grid around the paper's defaults; the paper's own sweep values are not recorded here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hf_mig.reproduce.paper import METHOD_TITLES, MODELS, POOLS

__all__ = ["EXPERIMENTS", "SCALES", "Experiment", "PoolSpec", "Run", "Scale"]

DEFAULT_PROP_WEIGHT = 1.0
TABLE1_METHODS = ("random", "ifd", "instag", "deita", "car", "qdit", "zip", "mig", "full")


@dataclass(frozen=True)
class PoolSpec:
    """A pool at one scale: ``source`` is the raw pool (Hub id, ``hf-mig:`` bundled id,
    ``shared:<path in the shared folder>``, or None if unknown); ``annotated``: the source
    already has ``labels`` and ``score`` (no annotation steps); ``licence``: why the source is
    not shipped, for pools read from the shared folder."""

    key: str
    title: str
    source: str | None
    k: int
    n_rows: int
    mean_tokens: int
    tags: int | None  # vocabulary size (None: every label the tagger produced)
    recipe_pool: str  # pool slug in the recipe file names
    annotated: bool = False
    licence: str = ""


@dataclass(frozen=True)
class Scale:
    """Sizes, models and sweep grids of one scale."""

    name: str
    bases: tuple[str, ...]
    pools: dict[str, PoolSpec]
    main_pool: str
    other_pools: tuple[str, ...]
    embedder: str
    threshold: float
    thresholds: tuple[float, ...]
    prop_weights: tuple[float, ...]
    label_counts: tuple[int | None, ...]
    sizes: tuple[int, ...]


def _paper_pools() -> dict[str, PoolSpec]:
    return {
        key: PoolSpec(key, p.title, p.source, p.k, p.n_rows, p.mean_tokens, p.tags, p.slug)
        for key, p in POOLS.items()
    }


SCALES = {
    "paper": Scale(
        name="paper",
        bases=tuple(m.slug for m in MODELS.values()),
        pools=_paper_pools(),
        main_pool="tulu3",
        other_pools=("openhermes", "deita"),
        embedder="intfloat/e5-mistral-7b-instruct",
        threshold=0.9,
        thresholds=(0.8, 0.85, 0.9, 0.95),
        prop_weights=(0.0, 0.5, 1.0),
        label_counts=(1000, 2000, 3000, None),
        sizes=(10_000, 20_000, 50_000, 100_000),
    ),
    "tiny": Scale(
        name="tiny",
        bases=("tiny-llama",),
        pools={
            "self-instruct": PoolSpec(
                "self-instruct",
                "self-instruct tasks (bundled)",
                "hf-mig:demo",
                64,
                427,
                120,
                None,
                "tiny",
            ),
            "self-instruct-annotated": PoolSpec(
                "self-instruct-annotated",
                "self-instruct tasks, bundled annotation",
                "hf-mig:demo-annotated",
                64,
                427,
                120,
                None,
                "tiny",
                annotated=True,
            ),
            "lima": PoolSpec(
                "lima",
                "LIMA",
                "shared:data/lima/lima.json",
                64,
                1029,
                600,
                None,
                "tiny",
                licence="LIMA is CC BY-NC-SA, so it is not shipped:",
            ),
            "alpaca-gpt4": PoolSpec(
                "alpaca-gpt4",
                "Alpaca-GPT-4 demo",
                "shared:data/llama_factory_demo/alpaca_en_demo.json",
                64,
                999,
                250,
                None,
                "tiny",
                licence="alpaca-gpt4 data is CC BY-NC 4.0, so it is not shipped:",
            ),
        },  # fmt: skip
        main_pool="self-instruct",
        other_pools=("self-instruct-annotated", "lima", "alpaca-gpt4"),
        embedder="sentence-transformers/all-MiniLM-L6-v2",
        threshold=0.8,
        thresholds=(0.7, 0.75, 0.8, 0.85),
        prop_weights=(0.0, 0.5, 1.0),
        label_counts=(100, 200, 400, None),
        sizes=(16, 32, 64, 128),
    ),
}


@dataclass(frozen=True)
class Run:
    """One row of a table: a model trained on one selection.

    ``method`` is a selector name or ``full`` (the whole pool). ``threshold``,
    ``prop_weight`` and ``label_count`` override MIG's defaults for ablation rows (None: the
    default, so a row equal to another experiment's shares its selection, model and results).
    """

    title: str
    base: str
    pool: str
    method: str
    k: int | None
    threshold: float | None = None
    prop_weight: float | None = None
    label_count: int | None = None

    @property
    def selection_name(self) -> str:
        """File stem of the selection (independent of the base model)."""
        if self.method == "full":
            return "full"
        name = f"{self.method}-{_size(self.k or 0)}"
        if self.label_count is not None:
            name += f"-top{self.label_count}"
        if self.threshold is not None:
            name += f"-t{self.threshold:g}"
        if self.prop_weight is not None:
            name += f"-pw{self.prop_weight:g}"
        return name

    @property
    def key(self) -> str:
        """Path-safe identifier: ``<base>/<pool>/<selection>``."""
        return f"{self.base}/{self.pool}/{self.selection_name}"


def _size(k: int) -> str:
    return f"{k // 1000}k" if k >= 1000 and k % 1000 == 0 else str(k)


@dataclass(frozen=True)
class Experiment:
    """A table of the paper: ``rows(scale, bases)`` lists its runs."""

    name: str
    title: str
    description: str
    rows: Callable[[Scale, Sequence[str]], list[Run]]
    #: the published table in ``paper_tables.json``; ``{base}`` is filled with the base slug
    paper_table: str = ""
    multi_base: bool = False


def _title(method: str, base: str, bases: Sequence[str], extra: str = "") -> str:
    title = METHOD_TITLES.get(method, method) + extra
    return f"{title} [{base}]" if len(bases) > 1 else title


def _table1(scale: Scale, bases: Sequence[str]) -> list[Run]:
    pool = scale.pools[scale.main_pool]
    return [
        Run(_title(m, b, bases), b, pool.key, m, None if m == "full" else pool.k)
        for b in bases
        for m in TABLE1_METHODS
    ]


def _pools(scale: Scale, bases: Sequence[str]) -> list[Run]:
    runs = []
    for b in bases:
        for key in scale.other_pools:
            p = scale.pools[key]
            for m in ("mig", "random"):
                runs.append(Run(_title(m, b, bases, f" / {p.title}"), b, key, m, p.k))
    return runs


def _mig_sweep(
    scale: Scale, bases: Sequence[str], option: str, values: Sequence, default: object, label
) -> list[Run]:
    """MIG rows on the main pool with ``option`` set to each value; the default value is left
    unset so that row is the same run as Table 1's MIG row (shared in one work folder)."""
    pool = scale.pools[scale.main_pool]
    return [
        Run(
            _title("mig", b, bases, label(v)),
            b,
            pool.key,
            "mig",
            pool.k,
            **{option: None if v == default else v},
        )
        for b in bases
        for v in values
    ]


def _labels(scale: Scale, bases: Sequence[str]) -> list[Run]:
    return _mig_sweep(
        scale, bases, "label_count", scale.label_counts, None,
        lambda n: f", {n:,} labels" if n is not None else ", all labels",
    )  # fmt: skip


def _thresholds(scale: Scale, bases: Sequence[str]) -> list[Run]:
    return _mig_sweep(
        scale, bases, "threshold", scale.thresholds, scale.threshold, lambda t: f", T = {t:g}"
    )


def _prop_weights(scale: Scale, bases: Sequence[str]) -> list[Run]:
    return _mig_sweep(
        scale, bases, "prop_weight", scale.prop_weights, DEFAULT_PROP_WEIGHT,
        lambda w: f", propagation weight {w:g}",
    )  # fmt: skip


def _scaling(scale: Scale, bases: Sequence[str]) -> list[Run]:
    pool = scale.pools[scale.main_pool]
    return [
        Run(_title(m, b, bases, f" {_size(k).upper()}"), b, pool.key, m, k)
        for b in bases
        for k in scale.sizes
        for m in ("mig", "random")
    ]


EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment(
            "table1",
            "Table 1: MIG against the baselines on Tulu 3 (50K of 939K)",
            "Random, IFD, #InsTag, DEITA, CaR, QDIT, ZIP and MIG at 50K, and the full pool; "
            "one base model (--base), or all three (--base all) for the other-bases tables",
            _table1,
            paper_table="table1/{base}",
            multi_base=True,
        ),
        Experiment(
            "pools",
            "Other pools: OpenHermes 2.5 (1M -> 50K) and the DEITA pool (306K -> 6K)",
            "MIG and Random on each pool (the paper's baseline set for these pools is not "
            "recorded here; add methods with --methods)",
            _pools,
            paper_table="pools",
        ),
        Experiment(
            "labels",
            "Ablation: number of labels",
            "MIG on Tulu 3 with the vocabulary cut to the N most frequent labels",
            _labels,
            paper_table="labels",
        ),
        Experiment(
            "threshold",
            "Ablation: label-graph threshold T",
            "MIG on Tulu 3 with label graphs built at several cosine thresholds",
            _thresholds,
            paper_table="threshold",
        ),
        Experiment(
            "prop-weight",
            "Ablation: propagation weight",
            "MIG on Tulu 3 with the weight of the label graph's off-diagonal edges varied "
            "(0 = no propagation)",
            _prop_weights,
            paper_table="prop-weight",
        ),
        Experiment(
            "scaling",
            "Data-size scaling",
            "MIG and Random on Tulu 3 at several subset sizes",
            _scaling,
            paper_table="scaling",
        ),
    )
}
