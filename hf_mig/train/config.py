"""Training recipes: one YAML = TRL ``SFTConfig`` fields + ``model:``, ``data:``, ``callbacks:``.

A recipe looks like::

    # top level: any field of trl.SFTConfig (TRL's own `trl sft --config` convention)
    output_dir: runs/llama31-8b-tulu3-mig50k
    learning_rate: 5.0e-6
    assistant_only_loss: true
    model:                      # ModelConfig
      name_or_path: meta-llama/Llama-3.1-8B
      chat_template: llama3     # a name from hf_mig.train.templates or a .jinja file
    data:                       # DataConfig: a ready subset OR a pool + a selection spec
      pool: pools/tulu3.jsonl
      selection: {method: mig, k: 50000, options: {label_graph: graphs/tulu3_t0.9.npz}}
    callbacks:                  # CallbacksConfig (all on by default)
      label_loss: {num_groups: 8}
    env: {TOKENIZERS_PARALLELISM: "false"}   # optional, exported before training

Command-line overrides (:func:`load_recipe` ``overrides``): ``--FIELD VALUE`` or
``--FIELD=VALUE`` sets an ``SFTConfig`` field (parsed by ``transformers.HfArgumentParser``, so
types and choices are checked); ``--model.X``, ``--data.X``, ``--data.selection.k``,
``--data.selection.options.threshold``, ``--callbacks.label_loss.num_groups`` ... set a field of a
section; their VALUE is read as YAML (``null``, ``true``, ``3``, ``[a, b]``).

Paths: ``${VAR}`` and ``${VAR:-default}`` are expanded in every string of the file. A relative
path in ``model:`` / ``data:`` / ``callbacks:`` (model folder, template file, pool, dataset,
vocabulary, label graph, prompts file, cache folder) is resolved against the *recipe file's
folder* first, then the current directory; if neither exists it is kept as is (a Hub id). Paths
given on the command line are resolved against the current directory. ``output_dir`` and other
``SFTConfig`` paths are relative to the current directory, as in TRL. A bundled data id
(``hf-mig:demo-annotated``, ``hf-mig:demo-graph``, ``hf-mig:instag``, ...; see
:mod:`hf_mig.resources`) in any of those fields becomes the path of the file shipped with hf-mig.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "CallbacksConfig",
    "DataConfig",
    "GenerationPreviewSettings",
    "LabelLossSettings",
    "LoraSpec",
    "ModelConfig",
    "Recipe",
    "SECTIONS",
    "SelectionSpec",
    "load_recipe",
    "sft_config_fields",
]

#: Top-level keys of a recipe that are not ``SFTConfig`` fields.
SECTIONS = ("model", "data", "callbacks", "env")


# --------------------------------------------------------------------------------------------
# sections


@dataclass
class SelectionSpec:
    """Which rows of the pool to train on: ``method`` (a name in ``hf_mig.SELECTORS``), ``k``
    and the selector's options (``hf_mig.get_selector(method, k, **options)``)."""

    method: str = "mig"
    k: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"data.selection.method must be a method name, got {self.method!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"data.selection.k must be an integer >= 1, got {self.k!r}")
        if not isinstance(self.options, dict):
            raise ValueError(f"data.selection.options must be a mapping, got {self.options!r}")


@dataclass
class DataConfig:
    """Training data: either ``dataset`` (a ready subset) or ``pool`` + ``selection``.

    ``dataset`` / ``pool`` / ``eval_dataset``: a ``.jsonl``/``.json``/``.parquet``/``.csv`` file, a
    folder written by ``save_to_disk``, or a Hub dataset id (:func:`hf_mig.load_pool`).
    ``pool_format``: ``auto`` | ``labels`` | ``mig-authors`` (:func:`hf_mig.prepare_pool`; only
    when selecting). ``vocabulary``: labels file, or ``hf-mig:instag`` for the bundled 4,531
    InsTag tags (filters the authors' tags; also passed to the selector when it accepts
    ``vocabulary``). ``shape``: conversation shape for :func:`hf_mig.to_messages` (``auto``
    detects it). ``eval_size``: rows split off the selected subset (seeded by ``seed``) for
    evaluation. ``cache_dir``: where selections are cached
    (default ``$HF_MIG_CACHE/selections`` or ``~/.cache/hf_mig/selections``).
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

    def validate(self) -> None:
        if (self.dataset is None) == (self.pool is None):
            raise ValueError(
                "data: give exactly one of 'dataset' (a ready subset) or 'pool' (+ 'selection'); "
                f"got dataset={self.dataset!r}, pool={self.pool!r}"
            )
        if self.pool is not None and self.selection is None:
            raise ValueError("data: a 'pool' needs a 'selection' spec (method, k, options)")
        if self.dataset is not None and self.selection is not None:
            raise ValueError("data: 'selection' applies to a 'pool', not to a ready 'dataset'")
        if self.selection is not None:
            self.selection.validate()
        if self.pool_format not in ("auto", "labels", "mig-authors"):
            raise ValueError(
                f"data.pool_format: auto, labels or mig-authors, got {self.pool_format!r}"
            )
        if self.score_reduce not in ("mean", "sum"):
            raise ValueError(f"data.score_reduce: mean or sum, got {self.score_reduce!r}")
        if self.shape not in ("auto", "messages", "conversations", "alpaca", "dialogs"):
            raise ValueError(f"data.shape: unknown conversation shape {self.shape!r}")
        if isinstance(self.eval_size, bool) or not isinstance(self.eval_size, int):
            raise ValueError(f"data.eval_size must be an integer, got {self.eval_size!r}")
        if self.eval_size < 0:
            raise ValueError(f"data.eval_size must be >= 0, got {self.eval_size}")
        if self.eval_size and self.eval_dataset:
            raise ValueError("data: give 'eval_size' or 'eval_dataset', not both")


@dataclass
class LoraSpec:
    """LoRA adapters (``peft.LoraConfig``); ``target_modules="all-linear"`` adapts every linear
    layer but the output head."""

    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class ModelConfig:
    """The base model: a Hub id, a local folder, or ``hf-mig:tiny-llama`` (built offline).

    ``chat_template``: a name from :data:`hf_mig.train.templates.TEMPLATES` (``llama3``,
    ``qwen2.5``, ``mistral-v0.3``, ``chatml``) or a ``.jinja`` file; ``None`` keeps the tokenizer's
    own template. ``pad_token``: set on the tokenizer (default: keep the tokenizer's, or, when it
    has none, the template's suggestion, e.g. ``<|finetune_right_pad_id|>`` for llama3).
    ``dtype``: ``auto`` | ``bfloat16`` | ``float16`` | ``float32``. ``lora``: train LoRA adapters
    instead of all weights (needs ``peft``).
    """

    name_or_path: str = ""
    chat_template: str | None = None
    pad_token: str | None = None
    dtype: str = "auto"
    attn_implementation: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    lora: LoraSpec | None = None

    def validate(self) -> None:
        if not self.name_or_path:
            raise ValueError("model.name_or_path is required")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"model.dtype: auto, bfloat16, float16 or float32, got {self.dtype!r}")


@dataclass
class LabelLossSettings:
    """:class:`hf_mig.callbacks.LabelLossCallback` settings (``group_by``: ``top_labels`` or
    ``clusters`` of the selection's label graph; ``every_n_steps``: ``None`` = at every log)."""

    enabled: bool = True
    group_by: str = "top_labels"
    num_groups: int = 8
    rows_per_group: int = 8
    every_n_steps: int | None = None
    max_length: int | None = None


@dataclass
class GenerationPreviewSettings:
    """:class:`hf_mig.callbacks.GenerationPreviewCallback` settings (``at``: ``save``,
    ``evaluate`` or ``both``; ``prompts`` or ``prompts_file`` (one prompt per line or a JSON
    list); default: the callback's built-in prompts)."""

    enabled: bool = True
    prompts: list[str] | None = None
    prompts_file: str | None = None
    max_new_tokens: int = 128
    at: str = "save"

    def validate(self) -> None:
        if self.at not in ("save", "evaluate", "both"):
            raise ValueError(
                f"callbacks.generation_preview.at: save, evaluate or both, got {self.at!r}"
            )


@dataclass
class CallbacksConfig:
    """Which hf-mig callbacks :func:`hf_mig.train.train` installs."""

    selection_manifest: bool = True
    label_loss: LabelLossSettings = field(default_factory=LabelLossSettings)
    generation_preview: GenerationPreviewSettings = field(default_factory=GenerationPreviewSettings)


@dataclass
class Recipe:
    """A parsed recipe. ``training`` holds the ``SFTConfig`` keyword arguments (types checked);
    :meth:`sft_config` builds the ``SFTConfig`` (which also checks the hardware, e.g. bf16)."""

    model: ModelConfig
    data: DataConfig
    callbacks: CallbacksConfig
    training: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def sft_config(self, **changes: Any):
        """``trl.SFTConfig(**self.training, **changes)``."""
        from trl import SFTConfig

        return SFTConfig(**{**self.training, **changes})

    @property
    def global_batch_size_per_gpu(self) -> int:
        """``per_device_train_batch_size x gradient_accumulation_steps``."""
        return int(self.training["per_device_train_batch_size"]) * int(
            self.training["gradient_accumulation_steps"]
        )


# --------------------------------------------------------------------------------------------
# parsing helpers

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML value."""
    if isinstance(value, str):

        def repl(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ValueError(f"environment variable {name!r} is not set (used as ${{{name}}})")

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) is not None and len(args) == 1 and _is_dataclass_type(args[0]):
        return args[0]
    return tp


def _from_dict(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys raise ``ValueError`` naming them."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}: {values!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid fields: {names}")
    kwargs = {}
    for key, value in values.items():
        tp = _unwrap_optional(hints[key])
        if _is_dataclass_type(tp) and (value is None or isinstance(value, Mapping)):
            kwargs[key] = None if value is None else _from_dict(tp, value, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def sft_config_fields() -> list[str]:
    """Names of the ``trl.SFTConfig`` fields a recipe may set at its top level."""
    from trl import SFTConfig

    return [f.name for f in dataclasses.fields(SFTConfig) if f.init]


def _set_nested(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ValueError(f"--{dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def _split_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Section overrides (``--data.x v``) as {dotted: value}; the rest for HfArgumentParser."""
    section: dict[str, Any] = {}
    rest: list[str] = []
    items = list(overrides)
    i = 0
    while i < len(items):
        item = items[i]
        head = item[2:] if item.startswith("--") else None
        name = head.split("=", 1)[0] if head else None
        if name and name.split(".", 1)[0] in SECTIONS and "." in name:
            if "=" in head:
                raw = head.split("=", 1)[1]
                i += 1
            else:
                if i + 1 >= len(items):
                    raise ValueError(f"--{name} needs a value")
                raw = items[i + 1]
                i += 2
            section[name] = yaml.safe_load(raw) if raw != "" else ""
            continue
        rest.append(item)
        i += 1
    return section, rest


# paths resolved against the recipe folder: (section path, key)
_PATH_FIELDS = (
    ("model", "name_or_path"),
    ("model", "chat_template"),
    ("data", "dataset"),
    ("data", "pool"),
    ("data", "vocabulary"),
    ("data", "eval_dataset"),
    ("data", "cache_dir"),
    ("callbacks.generation_preview", "prompts_file"),
)
#: Selector options holding paths (resolved like the data paths).
PATH_OPTIONS = ("label_graph", "vocabulary", "embeddings", "embedding_path")


def _resolve_path(value: Any, bases: Sequence[Path]) -> Any:
    from ..resources import bundled_path, is_bundled_id

    if is_bundled_id(value):  # hf-mig:demo-annotated, hf-mig:demo-graph, ...
        return str(bundled_path(value))
    if not isinstance(value, str) or not value or ":" in value.split("/")[0]:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    for base in bases:
        candidate = base / path
        if candidate.exists():
            return str(candidate.resolve())
    return value


def _node(tree: dict, dotted: str) -> dict | None:
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, dict) else None


def _resolve_paths(tree: dict, bases: Sequence[Path], only: set[str] | None = None) -> None:
    """Resolve the known path fields of ``tree`` in place (``only``: dotted keys to touch)."""
    for section, key in _PATH_FIELDS:
        node = _node(tree, section)
        if node is not None and key in node and (only is None or f"{section}.{key}" in only):
            node[key] = _resolve_path(node[key], bases)
    options = _node(tree, "data.selection.options")
    if options is not None:
        for key in PATH_OPTIONS:
            if key in options and (only is None or f"data.selection.options.{key}" in only):
                options[key] = _resolve_path(options[key], bases)


def _parse_training(flat: dict[str, Any], cli: Sequence[str]) -> dict[str, Any]:
    """Check ``flat`` (recipe) + ``cli`` (overrides) against ``SFTConfig``; return its kwargs."""
    from transformers import HfArgumentParser
    from trl import SFTConfig

    valid = sft_config_fields()
    unknown = [k for k in flat if k not in valid]
    if unknown:
        raise ValueError(
            f"recipe: unknown top-level key(s) {unknown}: a recipe holds trl.SFTConfig fields "
            f"and the sections {list(SECTIONS)}"
        )
    parser = HfArgumentParser(SFTConfig, exit_on_error=False)
    parser.set_defaults(**flat)
    try:
        namespace, remaining = parser.parse_known_args(list(cli))
    except argparse.ArgumentError as err:
        raise ValueError(f"recipe: {err}") from None
    if remaining:
        raise ValueError(f"unknown command-line option(s) {remaining} (not SFTConfig fields)")
    values = vars(namespace)
    return {name: values[name] for name in valid if name in values}


# --------------------------------------------------------------------------------------------
# public API


def load_recipe(
    source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] | None = None
) -> Recipe:
    """Read a recipe (a YAML path or an already-loaded mapping) and apply ``overrides``.

    Raises ``ValueError`` for unknown keys (naming them and listing the valid ones), values of
    the wrong type, an invalid ``data:`` section (neither or both of ``dataset`` / ``pool``,
    a pool without a selection, ``k < 1``) and a missing ``model.name_or_path``.
    ``FileNotFoundError`` when the YAML file does not exist. No model or data is loaded.
    """
    path: Path | None = None
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        base = Path.cwd()
    else:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"recipe {source}: no such file")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        base = path.parent
        if not isinstance(raw, dict):
            raise ValueError(f"recipe {path}: expected a YAML mapping at the top level")
    raw = _expand(raw)
    cwd = Path.cwd()
    _resolve_paths(raw, [base, cwd])

    section_overrides, cli = _split_overrides(overrides or [])
    for dotted, value in section_overrides.items():
        _set_nested(raw, dotted, _expand(value))
    _resolve_paths(raw, [cwd], only=set(section_overrides))

    env = raw.pop("env", None) or {}
    if not isinstance(env, dict):
        raise ValueError("recipe: 'env' must be a mapping of environment variables")
    model = _from_dict(ModelConfig, raw.pop("model", None), "model")
    data = _from_dict(DataConfig, raw.pop("data", None), "data")
    callbacks = _from_dict(CallbacksConfig, raw.pop("callbacks", None), "callbacks")
    model.validate()
    data.validate()
    callbacks.generation_preview.validate()
    training = _parse_training(raw, cli)
    return Recipe(
        model=model,
        data=data,
        callbacks=callbacks,
        training=training,
        env={str(k): str(v) for k, v in env.items()},
        path=path,
    )
