"""Recipes of hf-mig 0.x had nested ``model:`` / ``data:`` / ``callbacks:`` sections; a recipe is
flat now. :func:`refuse_sections` names the flat key of every nested key of a file, and
:func:`legacy_flags` rewrites the dotted command-line flags of the nested format
(``--data.dataset X``) to their flat names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NONE_WORDS", "NESTED_KEYS", "legacy_flags", "refuse_sections"]

#: Words that mean "unset" in an optional text field (and in ``--data.selection null``).
NONE_WORDS = ("", "null", "none", "~")
#: Nested keys that hold a mapping of the selector's own (not further sections).
_MAPPING_KEYS = ("data.selection.options", "data.selection.quotas")


#: Keys of the nested recipe sections of hf-mig 0.x, with their flat names.
NESTED_KEYS: dict[str, str | None] = {
    "model.name_or_path": "model_name_or_path",
    "model.chat_template": "chat_template_name",
    "model.pad_token": "tokenizer_pad_token",
    "model.dtype": "dtype",
    "model.attn_implementation": "attn_implementation",
    "model.revision": "model_revision",
    "model.trust_remote_code": "trust_remote_code",
    "model.lora": "use_peft: true",
    "model.lora.r": "lora_r",
    "model.lora.alpha": "lora_alpha",
    "model.lora.dropout": "lora_dropout",
    "model.lora.target_modules": "lora_target_modules",
    "data.dataset": "dataset_name",
    "data.pool": "pool",
    "data.split": "pool_split (or dataset_train_split for dataset_name)",
    "data.pool_format": "pool_format",
    "data.vocabulary": "vocabulary",
    "data.score_reduce": "score_reduce",
    "data.labels_column": "labels_column",
    "data.score_column": "score_column",
    "data.selection": None,
    "data.selection.method": "selection_method",
    "data.selection.k": "selection_k",
    "data.selection.options": "selection_options",
    "data.selection.budget": "selection_budget",
    "data.selection.cost_column": "selection_cost_column",
    "data.selection.quotas": "selection_quotas",
    "data.selection.quota_column": "selection_quota_column",
    "data.shape": "conversation_shape",
    "data.eval_size": "eval_size",
    "data.eval_dataset": "eval_dataset_name",
    "data.eval_split": "eval_dataset_split",
    "data.seed": "seed",
    "data.cache_dir": "selection_cache_dir",
    "data.skip_bad_lines": "skip_bad_lines",
    "callbacks.selection_manifest": "selection_manifest",
    "callbacks.label_loss.enabled": "label_loss",
    "callbacks.generation_preview.enabled": "generation_preview",
}
for _name in ("group_by", "num_groups", "rows_per_group", "every_n_steps", "max_length"):
    NESTED_KEYS[f"callbacks.label_loss.{_name}"] = f"label_loss_{_name}"
for _name in ("prompts", "prompts_file", "max_new_tokens", "at"):
    NESTED_KEYS[f"callbacks.generation_preview.{_name}"] = f"generation_preview_{_name}"
_SECTIONS = ("model", "data", "callbacks")


def _nested_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in _MAPPING_KEYS:
            out += _nested_keys(value, dotted + ".") or [dotted]
        else:
            out.append(dotted)
    return out


def refuse_sections(raw: Mapping[str, Any], where: str) -> None:
    """Name the flat key of every key of a nested ``model:``/``data:``/``callbacks:`` section."""
    nested = {k: v for k, v in raw.items() if k in _SECTIONS and isinstance(v, Mapping)}
    if not nested:
        return
    lines = []
    for dotted in _nested_keys(nested):
        flat = NESTED_KEYS.get(dotted)
        lines.append(f"  {dotted} -> {flat}" if flat else f"  {dotted} -> (no flat key)")
    raise ValueError(
        f"{where}: the sections {sorted(nested)} are nested; a recipe is flat, every key a field "
        "of trl.SFTConfig, trl.ModelConfig, trl.ScriptArguments or "
        "hf_mig.train.HfMigArguments (so TRL's parser reads it). Move the keys to the top level:\n"
        + "\n".join(lines)
    )


def legacy_flags(cli: Sequence[str]) -> list[str]:
    """Rewrite dotted flags of the nested format (``--data.dataset X``) to their flat names.

    ``--data.selection null`` (drop the selection) is dropped: without a pool no selection is
    used. A dotted flag without a flat name raises ``ValueError`` naming it.
    """
    out: list[str] = []
    items = list(cli)
    i = 0
    while i < len(items):
        item = items[i]
        name = item[2:].split("=", 1)[0] if item.startswith("--") else ""
        if "." not in name or name.split(".", 1)[0] not in _SECTIONS:
            out.append(item)
            i += 1
            continue
        if "=" in item:
            value, step = item.split("=", 1)[1], 1
        elif i + 1 < len(items):
            value, step = items[i + 1], 2
        else:
            raise ValueError(f"--{name} needs a value")
        i += step
        if name == "data.selection" and value.strip().lower() in NONE_WORDS:
            continue
        flat = NESTED_KEYS.get(name)
        if flat is None or " " in flat or ":" in flat:
            raise ValueError(
                f"--{name}: recipes are flat now; see hf_mig.train.config for the field names"
            )
        out += [f"--{flat}", value]
    return out
