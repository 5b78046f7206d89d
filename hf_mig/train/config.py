"""Training recipes: one flat YAML read by TRL's own parser, ``TrlParser``.

Every top-level key of a recipe is a field of one of four dataclasses, the three TRL's SFT script
parses plus hf-mig's:

* ``trl.SFTConfig`` (``output_dir``, ``learning_rate``, ``assistant_only_loss``, ...);
* ``trl.ModelConfig`` (``model_name_or_path``, ``dtype``, ``attn_implementation``, LoRA:
  ``use_peft``, ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``, ...);
* ``trl.ScriptArguments`` (``dataset_name``: a ready subset to train on, ``dataset_train_split``);
* :class:`HfMigArguments` (the pool and its selection, the chat template by name, the callbacks),

plus ``env:`` (environment variables exported before training, as in TRL)::

    output_dir: runs/llama31-8b-tulu3-mig50k
    learning_rate: 5.0e-6
    assistant_only_loss: true
    activation_checkpointing: true
    model_name_or_path: meta-llama/Llama-3.1-8B
    dtype: bfloat16
    chat_template_name: llama3         # a name from hf_mig.train.templates or a .jinja file
    pool: pools/tulu3.jsonl
    selection_method: mig
    selection_k: 50000
    selection_options: {label_graph: graphs/tulu3_t0.9.npz}
    label_loss_num_groups: 8
    env: {TOKENIZERS_PARALLELISM: "false"}

:func:`make_parser` builds ``TrlParser((SFTConfig, ModelConfig, ScriptArguments,
HfMigArguments))``; :func:`load_recipe` feeds it the file through TRL's
``set_defaults_with_config`` and the command line through ``parse_known_args``, so every value is
type-checked by TRL's parser and a command-line ``--FIELD VALUE`` overrides the file, as with
``trl sft``. Unknown keys are refused by name. ``SFTConfig`` itself is built only when training
starts (:meth:`Recipe.sft_config`), because it checks the hardware (``bf16`` needs a GPU).

What TRL's launchers make of a recipe:

* ``python -m hf_mig.train --config RECIPE`` (also under ``accelerate launch`` and ``torchrun``)
  and ``hf-mig train --config RECIPE`` run everything: selection, SFT, callbacks, model card.
* ``trl sft --config RECIPE`` refuses the file: the ``trl`` command hands every config key that
  its four dataclasses do not define to ``accelerate launch``, which exits with
  ``unrecognized arguments: --chat_template_name``, and it cannot be given extra dataclasses.
  TRL's SFT script run directly (``python -m trl.scripts.sft --config RECIPE``) ignores the
  hf-mig keys, so it trains on ``dataset_name`` only and knows neither ``hf-mig:`` ids nor
  template names.
* For a TRL-only run of the same SFT on the same rows, ``python -m hf_mig.train --config RECIPE
  --export_trl_config DIR`` writes the selected rows, the chat template and a config with TRL's
  keys only (:func:`hf_mig.train.export.export_trl_config`); ``trl sft --config DIR/sft.yaml``
  trains on it, without hf-mig's callbacks.

Paths: ``${VAR}`` and ``${VAR:-default}`` are expanded in every string of the file. A relative
path in ``model_name_or_path``, ``dataset_name`` and hf-mig's path fields (pool, vocabulary,
evaluation set, chat template file, prompts file, cache folder, file-valued selection options) is
resolved against the *recipe file's folder* first, then the current directory; if neither exists
it is kept as is (a Hub id). Paths given on the command line are resolved against the current
directory. ``output_dir`` and the other ``SFTConfig`` paths are relative to the current directory,
as in TRL. A bundled data id (``hf-mig:demo-annotated``, ``hf-mig:demo-graph``,
``hf-mig:instag``, ...; see :mod:`hf_mig.data.resources`) in any of those fields becomes the path
of the file shipped with hf-mig.

Activation checkpointing: TRL's ``SFTConfig`` turns it on by default through the deprecated
``gradient_checkpointing`` field; when a recipe sets neither ``activation_checkpointing`` nor
``gradient_checkpointing``, :func:`load_recipe` sets ``activation_checkpointing`` to that
default, so building the config warns about nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from hf_mig.data.conversations import SHAPES
from hf_mig.data.pool import POOL_FORMATS
from hf_mig.train.constraints import check_constraints
from hf_mig.train.legacy import NONE_WORDS, legacy_flags, refuse_sections
from hf_mig.train.recipe_values import PATH_OPTIONS, expand_env, resolve_paths

__all__ = [
    "COLUMN_GROUPING",
    "CONSTRAINT_FIELDS",
    "CONVERSATION_SHAPES",
    "DataConfig",
    "HfMigArguments",
    "PATH_OPTIONS",
    "POOL_FIELDS",
    "Recipe",
    "SCORE_REDUCTIONS",
    "SelectionSpec",
    "hf_mig_fields",
    "load_recipe",
    "make_parser",
    "recipe_fields",
    "sft_config_fields",
]

#: ``label_loss_group_by`` values that group by labels; any other value names a column.
COLUMN_GROUPING = ("top_labels", "clusters")
#: ``score_reduce`` values: how the authors' per-turn scores combine (mean or sum).
SCORE_REDUCTIONS = ("mean", "sum")
#: ``conversation_shape`` values: ``auto`` or a shape :func:`hf_mig.to_messages` reads.
CONVERSATION_SHAPES = ("auto", *SHAPES)


# --------------------------------------------------------------------------------------------
# what the data loader reads (built from a recipe by Recipe.data)


@dataclass
class SelectionSpec:
    """Which rows of the pool to train on: ``method`` (a name in ``hf_mig.SELECTORS``), ``k``
    (``None`` with a ``budget`` alone) and the selector's options
    (``hf_mig.get_selector(method, k, **options)``), among them a token budget and per-group
    quotas (``budget``, ``cost_column``, ``quotas``, ``quota_column``: see
    :mod:`hf_mig.train.constraints`)."""

    method: str = "mig"
    k: int | None = 0
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"selection_method must be a method name, got {self.method!r}")
        if not isinstance(self.options, dict):
            raise ValueError(f"selection_options must be a mapping, got {self.options!r}")
        budget_alone = self.k is None and self.options.get("budget") is not None
        if not budget_alone and (
            isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1
        ):
            raise ValueError(
                f"selection_k must be an integer >= 1, got {self.k!r} (it may be left out only "
                "with selection_budget)"
            )
        check_constraints(
            self.options, k=self.k, method=self.method, name=lambda o: f"selection_options.{o}"
        )


@dataclass
class DataConfig:
    """Training data for :func:`hf_mig.train.data.load_training_data`: either ``dataset`` (a
    ready subset) or ``pool`` + ``selection``.

    ``dataset`` / ``pool`` / ``eval_dataset``: a ``.jsonl``/``.json``/``.parquet``/``.csv`` file, a
    folder written by ``save_to_disk``, or a Hub dataset id (:func:`hf_mig.load_pool`).
    ``pool_format``: ``auto`` | ``labels`` | ``mig-authors`` (:func:`hf_mig.prepare_pool`; only
    when selecting). ``vocabulary``: labels file, or ``hf-mig:instag`` for the bundled 4,531
    InsTag tags (filters the authors' tags; also passed to the selector when it accepts
    ``vocabulary``). ``shape``: conversation shape for :func:`hf_mig.to_messages` (``auto``
    detects it). ``eval_size``: rows split off the selected subset (seeded by ``seed``) for
    evaluation. ``cache_dir``: where selections are cached
    (default ``$HF_MIG_CACHE/selections`` or ``~/.cache/hf_mig/selections``). ``keep_columns``:
    further columns of the rows kept beside ``messages``, the labels and ``pool_index`` in
    ``TrainingData.train_rows`` (e.g. the column a per-group loss is measured by); each must
    exist.
    """

    dataset: str | None = None
    pool: str | None = None
    split: str = "train"
    pool_format: str = "auto"
    vocabulary: str | None = None
    score_reduce: str = "mean"
    labels_column: str = "labels"
    score_column: str = "score"
    selection: SelectionSpec | None = None
    shape: str = "auto"
    eval_size: int = 0
    eval_dataset: str | None = None
    eval_split: str = "train"
    seed: int = 42
    cache_dir: str | None = None
    skip_bad_lines: bool = False
    keep_columns: tuple[str, ...] = ()

    def validate(self) -> None:
        if (self.dataset is None) == (self.pool is None):
            raise ValueError(
                "give exactly one of 'dataset_name' (a ready subset) or 'pool' (a pool to select "
                f"from, with selection_k); got dataset_name={self.dataset!r}, pool={self.pool!r}"
            )
        if self.pool is not None and self.selection is None:
            raise ValueError("a 'pool' needs a selection (selection_method, selection_k)")
        if self.dataset is not None and self.selection is not None:
            raise ValueError("a selection applies to a 'pool', not to a ready 'dataset_name'")
        if self.selection is not None:
            self.selection.validate()
        if self.pool_format not in POOL_FORMATS:
            raise ValueError(f"pool_format: auto, labels or mig-authors, got {self.pool_format!r}")
        if self.score_reduce not in SCORE_REDUCTIONS:
            raise ValueError(f"score_reduce: mean or sum, got {self.score_reduce!r}")
        if self.shape not in CONVERSATION_SHAPES:
            raise ValueError(f"conversation_shape: unknown conversation shape {self.shape!r}")
        if isinstance(self.eval_size, bool) or not isinstance(self.eval_size, int):
            raise ValueError(f"eval_size must be an integer, got {self.eval_size!r}")
        if self.eval_size < 0:
            raise ValueError(f"eval_size must be >= 0, got {self.eval_size}")
        if self.eval_size and self.eval_dataset:
            raise ValueError("give 'eval_size' or 'eval_dataset_name', not both")


#: The :class:`DataConfig` fields that say how a pool is read and brought to the labels / score
#: shape (:func:`hf_mig.train.data.load_prepared_pool`).
POOL_FIELDS = (
    "pool",
    "split",
    "pool_format",
    "vocabulary",
    "score_reduce",
    "labels_column",
    "score_column",
    "skip_bad_lines",
)


# --------------------------------------------------------------------------------------------
# hf-mig's recipe fields

_OPTIONAL_STRINGS = (
    "pool",
    "vocabulary",
    "eval_dataset_name",
    "selection_cache_dir",
    "selection_cost_column",
    "selection_quota_column",
    "chat_template_name",
    "tokenizer_pad_token",
    "generation_preview_prompts_file",
)


def _yaml_mapping(text: str, name: str = "selection_options") -> dict[str, Any]:
    """A mapping field given as text (the command line): one YAML mapping
    (``{label_graph: g.npz}``)."""
    try:
        value = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise ValueError(f"{name}: not a YAML mapping: {err}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping, got {value!r}")
    return value


#: The recipe fields of a selection's budget and quotas, by selector option.
CONSTRAINT_FIELDS = {
    "budget": "selection_budget",
    "cost_column": "selection_cost_column",
    "quotas": "selection_quotas",
    "quota_column": "selection_quota_column",
}


@dataclass
class HfMigArguments:
    """hf-mig's recipe fields, parsed by ``TrlParser`` beside TRL's ``SFTConfig``,
    ``ModelConfig`` and ``ScriptArguments`` (names chosen not to collide with theirs).

    Data (the ready-subset alternative to ``pool`` is TRL's ``dataset_name``):
    ``pool``: the pool to select from (file, ``save_to_disk`` folder, Hub id or ``hf-mig:`` id);
    ``pool_split``; ``pool_format`` (``auto`` | ``labels`` | ``mig-authors``); ``vocabulary``
    (labels file or ``hf-mig:instag``); ``score_reduce`` (``mean`` | ``sum``);
    ``labels_column`` / ``score_column``; ``selection_method`` / ``selection_k`` /
    ``selection_options`` (``hf_mig.get_selector(method, k, **options)``, e.g. ``engine``,
    ``epsilon``, ``seed``; on the command line the options are one YAML mapping,
    ``--selection_options '{label_graph: g.npz}'``; they are not used without a pool);
    a token budget and per-group quotas (methods with those options: ``mig``):
    ``selection_budget`` (the picks' total cost stays within it; ``selection_k``, when given,
    still caps the rows), ``selection_cost_column`` (the per-row cost, default ``num_tokens``, as
    ``hf-mig score --scorer tokens`` writes it), ``selection_quotas`` (``{group: [min, max]}``:
    counts as integers, shares of ``selection_k`` as numbers with a point, ``null`` for no
    bound; on the command line one YAML mapping) and ``selection_quota_column`` (each row's
    group, default ``source``); each may be given here or in ``selection_options``, not both;
    ``conversation_shape`` (``auto`` | ``messages`` |
    ``conversations`` | ``alpaca`` | ``dialogs``); ``eval_size`` (rows split off the selection,
    seeded by ``SFTConfig.seed``) or ``eval_dataset_name`` / ``eval_dataset_split``;
    ``selection_cache_dir``; ``skip_bad_lines``.

    Tokenizer: ``chat_template_name``: a name from :data:`hf_mig.train.templates.TEMPLATES` or a
    ``.jinja`` file (TRL's ``chat_template_path`` is the alternative for a tokenizer folder or an
    unchecked file); ``tokenizer_pad_token``: set as the tokenizer's pad token (default: keep the
    tokenizer's, or, when it has none, the template's suggestion).

    Callbacks (:mod:`hf_mig.train.callbacks`): ``selection_manifest``; ``label_loss`` with
    ``label_loss_group_by`` (``top_labels``, ``clusters`` of the selection's label graph, or the
    name of any other column of the rows, e.g. ``source``: one group per value),
    ``label_loss_num_groups``, ``label_loss_rows_per_group``, ``label_loss_every_n_steps``
    (``None``: at every log), ``label_loss_max_length``; ``generation_preview`` with
    ``generation_preview_prompts`` or ``generation_preview_prompts_file`` (one prompt per line
    or a JSON list), ``generation_preview_max_new_tokens``, ``generation_preview_at``
    (``save`` | ``evaluate`` | ``both``).

    The words ``null`` / ``none`` (and an empty string) in an optional text field mean unset,
    so ``--pool null`` on the command line drops the recipe's pool.
    """

    pool: str | None = None
    pool_split: str = "train"
    pool_format: str = "auto"
    vocabulary: str | None = None
    score_reduce: str = "mean"
    labels_column: str = "labels"
    score_column: str = "score"
    selection_method: str = "mig"
    selection_k: int | None = None
    selection_options: dict[str, Any] | str | None = None
    selection_budget: float | None = None
    selection_cost_column: str | None = None
    selection_quotas: dict[str, Any] | str | None = None
    selection_quota_column: str | None = None
    conversation_shape: str = "auto"
    eval_size: int = 0
    eval_dataset_name: str | None = None
    eval_dataset_split: str = "train"
    selection_cache_dir: str | None = None
    skip_bad_lines: bool = False
    chat_template_name: str | None = None
    tokenizer_pad_token: str | None = None
    selection_manifest: bool = True
    label_loss: bool = True
    label_loss_group_by: str = "top_labels"
    label_loss_num_groups: int = 8
    label_loss_rows_per_group: int = 8
    label_loss_every_n_steps: int | None = None
    label_loss_max_length: int | None = None
    generation_preview: bool = True
    generation_preview_prompts: list[str] | None = None
    generation_preview_prompts_file: str | None = None
    generation_preview_max_new_tokens: int = 128
    generation_preview_at: str = "save"

    def __post_init__(self) -> None:
        for name in _OPTIONAL_STRINGS:
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().lower() in NONE_WORDS:
                setattr(self, name, None)
        options = self.selection_options
        if isinstance(options, str):
            options = _yaml_mapping(options)
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"selection_options must be a mapping, got {options!r}")
        self.selection_options = dict(options or {})
        self._check_constraints()
        choices = {
            "pool_format": POOL_FORMATS,
            "score_reduce": SCORE_REDUCTIONS,
            "conversation_shape": CONVERSATION_SHAPES,
            "generation_preview_at": ("save", "evaluate", "both"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}: one of {', '.join(allowed)}; got {value!r}")
        for name in ("eval_size", "label_loss_num_groups", "label_loss_rows_per_group"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.eval_size < 0:
            raise ValueError(f"eval_size must be >= 0, got {self.eval_size}")
        if self.label_loss_num_groups < 1 or self.label_loss_rows_per_group < 1:
            raise ValueError("label_loss_num_groups and label_loss_rows_per_group must be >= 1")
        every = self.label_loss_every_n_steps
        bad = isinstance(every, bool) or not isinstance(every, int) or every < 1
        if every is not None and bad:
            raise ValueError(f"label_loss_every_n_steps must be an integer >= 1, got {every!r}")
        if not isinstance(self.label_loss_group_by, str) or not self.label_loss_group_by:
            raise ValueError(
                "label_loss_group_by: top_labels, clusters or a column name; "
                f"got {self.label_loss_group_by!r}"
            )

    def _check_constraints(self) -> None:
        """Check the budget and quotas (the fields and those in ``selection_options``), each
        error naming its field; store them as the selector takes them."""
        if isinstance(self.selection_quotas, str):
            self.selection_quotas = _yaml_mapping(self.selection_quotas, "selection_quotas") or None
        k = self.selection_k
        k = k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else None
        method = self.selection_method
        options = check_constraints(
            self.selection_options, k=k, method=method, name=lambda o: f"selection_options.{o}"
        )
        fields = {o: getattr(self, f) for o, f in CONSTRAINT_FIELDS.items()}
        given = check_constraints(fields, k=k, method=method, name=CONSTRAINT_FIELDS.get)
        for option, name in CONSTRAINT_FIELDS.items():
            if fields[option] is not None and options.get(option) is not None:
                raise ValueError(f"give {name} or selection_options.{option}, not both")
            setattr(self, name, given[option])
        self.selection_options = options
        merged = {**options, **{o: v for o, v in fields.items() if v is not None}}
        if self.selection_k is None and merged.get("quotas"):
            shares = [
                g for g, b in merged["quotas"].items() if any(isinstance(x, float) for x in b)
            ]
            if shares:
                field_name = (
                    "selection_quotas" if given.get("quotas") else "selection_options.quotas"
                )
                raise ValueError(
                    f"{field_name}.{shares[0]}: a share of selection_k needs selection_k; with "
                    "selection_budget alone give the bounds as counts"
                )
        for column, needs in (("cost_column", "budget"), ("quota_column", "quotas")):
            if fields[column] is not None and merged.get(needs) is None:
                raise ValueError(
                    f"{CONSTRAINT_FIELDS[column]} is read with {CONSTRAINT_FIELDS[needs]}, "
                    "which is not set"
                )

    def selection_constraints(self) -> dict[str, Any]:
        """The budget and quotas given by their own fields, as selector options."""
        return {o: getattr(self, f) for o, f in CONSTRAINT_FIELDS.items()
                if getattr(self, f) is not None}  # fmt: skip

    @property
    def label_loss_column(self) -> str | None:
        """The column ``label_loss_group_by`` names, or ``None`` when it groups by labels."""
        group_by = self.label_loss_group_by
        return None if group_by in COLUMN_GROUPING else group_by


# --------------------------------------------------------------------------------------------
# the parsed recipe


def _trl_classes() -> tuple[type, type, type]:
    from trl import ModelConfig, ScriptArguments, SFTConfig

    return SFTConfig, ModelConfig, ScriptArguments


def _init_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def sft_config_fields() -> list[str]:
    """Names of the ``trl.SFTConfig`` fields a recipe may set."""
    return _init_fields(_trl_classes()[0])


def hf_mig_fields() -> list[str]:
    """Names of the :class:`HfMigArguments` fields a recipe may set."""
    return _init_fields(HfMigArguments)


def recipe_fields() -> dict[str, list[str]]:
    """Every key a recipe may hold, by dataclass (``SFTConfig``, ``ModelConfig``,
    ``ScriptArguments``, ``HfMigArguments``), plus ``env``."""
    sft, model, script = _trl_classes()
    return {
        "SFTConfig": _init_fields(sft),
        "ModelConfig": _init_fields(model),
        "ScriptArguments": _init_fields(script),
        "HfMigArguments": hf_mig_fields(),
        "env": ["env"],
    }


@dataclass
class Recipe:
    """A parsed recipe.

    ``training``: the ``SFTConfig`` keyword arguments (types checked by ``TrlParser``);
    :meth:`sft_config` builds the ``SFTConfig`` (which also checks the hardware, e.g. bf16).
    ``model``: TRL's ``ModelConfig``; ``script``: TRL's ``ScriptArguments``; ``hf_mig``:
    :class:`HfMigArguments`; ``env``: variables exported before training; ``path``: the file.
    """

    training: dict[str, Any]
    model: Any
    script: Any
    hf_mig: HfMigArguments
    env: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def sft_config(self, **changes: Any):
        """``trl.SFTConfig(**self.training, **changes)``."""
        from trl import SFTConfig

        return SFTConfig(**{**self.training, **changes})

    @property
    def data(self) -> DataConfig:
        """The :class:`DataConfig` of this recipe (``pool`` + selection, or ``dataset_name``)."""
        hf = self.hf_mig
        selection = None
        if hf.pool is not None:
            selection = SelectionSpec(
                method=hf.selection_method,
                k=hf.selection_k,  # None: the budget alone binds (else refused by validate())
                options={**(hf.selection_options or {}), **hf.selection_constraints()},
            )
        keep = (hf.label_loss_column,) if hf.label_loss and hf.label_loss_column else ()
        return DataConfig(
            dataset=self.script.dataset_name,
            pool=hf.pool,
            split=hf.pool_split if hf.pool is not None else self.script.dataset_train_split,
            pool_format=hf.pool_format,
            vocabulary=hf.vocabulary,
            score_reduce=hf.score_reduce,
            labels_column=hf.labels_column,
            score_column=hf.score_column,
            selection=selection,
            shape=hf.conversation_shape,
            eval_size=hf.eval_size,
            eval_dataset=hf.eval_dataset_name,
            eval_split=hf.eval_dataset_split,
            seed=int(self.training.get("seed", 42)),
            cache_dir=hf.selection_cache_dir,
            skip_bad_lines=hf.skip_bad_lines,
            keep_columns=keep,
        )

    @property
    def global_batch_size_per_gpu(self) -> int:
        """``per_device_train_batch_size x gradient_accumulation_steps``."""
        return int(self.training["per_device_train_batch_size"]) * int(
            self.training["gradient_accumulation_steps"]
        )


# --------------------------------------------------------------------------------------------
# parsing helpers


def make_parser(prog: str | None = None, **kwargs: Any) -> Any:
    """``TrlParser((SFTConfig, ModelConfig, ScriptArguments, HfMigArguments))``, as TRL's SFT
    script builds its parser, with hf-mig's fields added."""
    from trl import TrlParser

    sft, model, script = _trl_classes()
    return TrlParser((sft, model, script, HfMigArguments), prog=prog, **kwargs)


def _checkpointing_given(raw: Mapping[str, Any], cli: Sequence[str]) -> bool:
    names = ("activation_checkpointing", "gradient_checkpointing")
    if any(name in raw for name in names):
        return True
    flags = {f"--{n}" for n in names} | {f"--no_{n}" for n in names}
    flags |= {flag.replace("_", "-") for flag in flags}
    return any(item.split("=", 1)[0] in flags for item in cli)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _read_source(
    source: str | os.PathLike | Mapping[str, Any],
) -> tuple[dict[str, Any], Path | None, Path, str]:
    """Read a recipe's top-level mapping.

    Returns ``(raw, path, base, where)``: the mapping (a copy when ``source`` is one), the
    resolved file (``None`` for a mapping), the folder relative paths are resolved against
    first (the file's folder, else the current directory) and the name errors start with.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for invalid YAML or a
    top level that is not a mapping.
    """
    if isinstance(source, Mapping):
        return dict(source), None, Path.cwd(), "recipe"
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"recipe {source}: no such file")
    where = f"recipe {path}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a YAML mapping at the top level")
    return raw, path, path.parent, where


def _pop_env(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Remove and return the recipe's ``env:`` mapping (empty when absent); ``ValueError``
    when it is not a mapping."""
    env = raw.pop("env", None) or {}
    if not isinstance(env, dict):
        raise ValueError(f"{where}: 'env' must be a mapping of environment variables")
    return env


def _parse_values(raw: dict[str, Any], cli: list[str], where: str) -> dict[str, Any]:
    """Parse ``cli`` over the recipe's keys ``raw`` with :func:`make_parser`.

    Returns every field's value (enums as their plain values, ``selection_options`` given on
    the command line read as a YAML mapping, command-line paths resolved against the current
    directory). ``ValueError`` names unknown keys, unknown flags and values of the wrong type.
    """
    parser = make_parser(exit_on_error=False)
    unknown = parser.set_defaults_with_config(**raw)
    if unknown:
        names = [item[2:] for item in unknown[::2]]
        raise ValueError(
            f"{where}: unknown key(s) {names}: a recipe holds fields of trl.SFTConfig, "
            "trl.ModelConfig, trl.ScriptArguments and hf_mig.train.HfMigArguments, and 'env'"
        )
    try:
        namespace, remaining = parser.parse_known_args(cli)
    except argparse.ArgumentError as err:
        raise ValueError(f"{where}: {err}") from None
    if remaining:
        raise ValueError(
            f"unknown command-line option(s) {remaining} (not fields of trl.SFTConfig, "
            "trl.ModelConfig, trl.ScriptArguments or hf_mig.train.HfMigArguments)"
        )
    values = {k: _plain(v) for k, v in vars(namespace).items()}
    if isinstance(values.get("selection_options"), str):  # given on the command line
        values["selection_options"] = _yaml_mapping(values["selection_options"])
    resolve_paths(values, [Path.cwd()])  # command-line paths; resolved file values unchanged
    return values


#: TRL script settings hf-mig's launcher does not read, with what to use instead.
_UNREAD_SCRIPT_SETTINGS = (
    ("dataset_config", "name the configuration's files in dataset_name"),
    ("dataset_test_split", "use eval_dataset_name / eval_dataset_split or eval_size"),
    ("dataset_streaming", "hf-mig reads the whole dataset"),
)


def _check_model_and_script(model: Any, script: Any, where: str) -> None:
    """``ValueError`` for a missing ``model_name_or_path``, an unknown ``dtype`` or a TRL
    script setting left from its default that hf-mig does not read."""
    if not model.model_name_or_path:
        raise ValueError(f"{where}: model_name_or_path is required")
    if model.dtype not in ("auto", "bfloat16", "float16", "float32", None):
        raise ValueError(f"dtype: auto, bfloat16, float16 or float32, got {model.dtype!r}")
    defaults = type(script)()
    for name, hint in _UNREAD_SCRIPT_SETTINGS:
        if getattr(script, name) != getattr(defaults, name):
            raise ValueError(f"{where}: {name} is not read by hf-mig's launcher ({hint})")


def _build_recipe(
    values: Mapping[str, Any], env: Mapping[str, Any], path: Path | None, where: str
) -> Recipe:
    """The :class:`Recipe` of parsed field ``values``, each dataclass given its own fields;
    checked as :func:`load_recipe` documents (``ValueError`` starting with ``where``)."""
    sft, model_cls, script_cls = _trl_classes()

    def pick(cls: type) -> dict[str, Any]:
        return {name: values[name] for name in _init_fields(cls) if name in values}

    try:
        model = model_cls(**pick(model_cls))
        script = script_cls(**pick(script_cls))
        hf = HfMigArguments(**pick(HfMigArguments))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    _check_model_and_script(model, script, where)
    recipe = Recipe(
        training=pick(sft),
        model=model,
        script=script,
        hf_mig=hf,
        env={str(k): str(v) for k, v in env.items()},
        path=path,
    )
    try:
        recipe.data.validate()
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if hf.chat_template_name and recipe.training.get("chat_template_path"):
        raise ValueError(
            f"{where}: give chat_template_name (hf-mig's checked templates) or TRL's "
            "chat_template_path, not both"
        )
    return recipe


# --------------------------------------------------------------------------------------------
# public API


def load_recipe(
    source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] | None = None
) -> Recipe:
    """Read a recipe (a YAML path or an already-loaded mapping) and apply ``overrides``
    (command-line flags, ``["--output_dir", "runs/x", "--selection_k", "1000"]``).

    Parsing is ``TrlParser``'s (:func:`make_parser`): the file's keys become the parser's
    defaults and ``overrides`` are parsed over them. Raises ``ValueError`` for unknown keys or
    flags (naming them), values of the wrong type, nested ``model:``/``data:``/``callbacks:``
    sections (naming the flat key of each of their keys), a data source that is neither a
    ``pool`` with ``selection_k >= 1`` nor a ``dataset_name`` (or both), TRL script settings
    hf-mig does not read (``dataset_config``, ``dataset_test_split``, ``dataset_streaming``) and
    a missing ``model_name_or_path``. ``FileNotFoundError`` when the YAML file does not exist.
    No model or data is loaded.
    """
    raw, path, base, where = _read_source(source)
    refuse_sections(raw, where)
    raw = expand_env(raw)
    env = _pop_env(raw, where)
    resolve_paths(raw, [base, Path.cwd()])
    cli = legacy_flags(list(overrides or []))
    if not _checkpointing_given(raw, cli):
        # TRL's default (on), under the current name: the deprecated alias would warn
        raw["activation_checkpointing"] = True
    values = _parse_values(raw, cli, where)
    return _build_recipe(values, env, path, where)
