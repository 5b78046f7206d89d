"""A recipe's SFT as a folder that TRL's own ``trl sft`` trains on.

``trl sft --config RECIPE`` refuses an hf-mig recipe (``trl`` hands the keys its dataclasses do
not define to ``accelerate launch``; see :mod:`hf_mig.train.config`). :func:`export_trl_config`
runs the recipe's data step (the selection, cached as for training) and writes a new folder::

    python -m hf_mig.train --config RECIPE --export_trl_config DIR
    trl sft --config DIR/sft.yaml            # TRL's launcher, TRL's script, the same rows

``DIR`` holds:

* ``data/train.jsonl`` (and ``data/test.jsonl`` when the recipe evaluates): one
  ``{"messages": [...]}`` per line, exactly the rows hf-mig's launcher gives ``SFTTrainer``;
* ``chat_template.jinja``: the recipe's template (``chat_template_name``), which the config
  names as TRL's ``chat_template_path``;
* ``selection_manifest.json``: the selection's manifest;
* ``sft.yaml``: TRL's keys only: the recipe's ``SFTConfig`` and ``ModelConfig`` settings that
  differ from TRL's defaults, ``eos_token`` from the template, the pad token hf-mig's launcher
  would set (TRL's ``pad_token``), ``model_name_or_path`` resolved (``hf-mig:tiny-llama`` becomes
  its built folder), ``dataset_name`` = ``DIR/data``, and ``env``. Paths in it are absolute.

The TRL run trains the same model on the same rows with the same template; it has none of
hf-mig's callbacks (manifest in checkpoints, per-group loss, generation previews) and no
selection section in the model card. Without evaluation rows, ``eval_strategy`` is set to
``no`` (TRL's script would look for a ``test`` split). ``DIR`` must not exist; it is written
beside its final path and renamed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml

from hf_mig.train.config import Recipe, _plain

__all__ = ["export_trl_config"]

#: SFTConfig fields the export sets itself.
_OWN = ("chat_template_path", "eos_token", "pad_token")


def _changed(cls: type, values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` for ``cls``'s fields that differ from ``defaults`` (what TRL's
    parser yields without arguments, as ``values`` came from it), in field order."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name in values and values[f.name] != defaults.get(f.name):
            out[f.name] = values[f.name]
    return out


def _jsonl(rows: Any) -> str:
    return "".join(
        json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
        for messages in rows["messages"]
    )


def export_trl_config(recipe: Recipe, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the folder described in the module docstring to ``out``; return ``out/sft.yaml``.

    ``out`` is checked before any work (:func:`hf_mig.data.io.check_output`): an existing folder
    holding files is never replaced, an existing file only with ``overwrite``. Raises
    ``ValueError`` as :func:`hf_mig.train.train` does for a bad recipe, template or data, and
    when a setting cannot be written as YAML.
    """
    from trl import ModelConfig, SFTConfig

    from hf_mig.data.io import atomic_output, check_output
    from hf_mig.train import load_tokenizer, training_changes
    from hf_mig.train.config import make_parser
    from hf_mig.train.data import load_training_data
    from hf_mig.train.templates import get_template
    from hf_mig.train.tiny import resolve_model_path

    final = check_output(out, overwrite=overwrite).resolve()
    hf = recipe.hf_mig
    model_path = resolve_model_path(recipe.model.model_name_or_path)
    tokenizer = load_tokenizer(recipe, model_path)  # checks the template's tokens
    data = load_training_data(recipe.data)

    training = dict(recipe.training)
    training.update(training_changes(recipe))
    namespace, _ = make_parser().parse_known_args([])
    defaults = {k: _plain(v) for k, v in vars(namespace).items()}
    settings = {k: v for k, v in _changed(SFTConfig, training, defaults).items() if k not in _OWN}
    if "eos_token" in training and training["eos_token"] is not None:
        settings["eos_token"] = training["eos_token"]
    if tokenizer.pad_token is not None and tokenizer.pad_token != _base_pad_token(
        recipe, model_path
    ):
        settings["pad_token"] = tokenizer.pad_token
    notes = []
    if data.eval is None and str(training.get("eval_strategy", "no")) != "no":
        settings["eval_strategy"] = "no"
        notes.append("# eval_strategy: no, because the recipe yields no evaluation rows")
    model_values = dataclasses.asdict(recipe.model)
    model_values["model_name_or_path"] = model_path
    model_settings = _changed(ModelConfig, model_values, defaults)
    model_settings["model_name_or_path"] = model_path

    config: dict[str, Any] = {**settings, **model_settings}
    if hf.chat_template_name:
        config["chat_template_path"] = str(final / "chat_template.jinja")
    elif training.get("chat_template_path"):
        config["chat_template_path"] = training["chat_template_path"]
    config["dataset_name"] = str(final / "data")
    if recipe.env:
        config["env"] = dict(recipe.env)
    try:
        body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    except yaml.representer.RepresenterError as err:
        raise ValueError(f"a recipe value cannot be written to sft.yaml: {err}") from None
    source = recipe.path or "a recipe mapping"
    header = [
        f"# TRL-only SFT config written by hf-mig from {source}.",
        f"# Train it with TRL's launcher: trl sft --config {final / 'sft.yaml'}",
        f"# Rows: {final / 'data'} ({len(data.train)} train"
        + ("" if data.eval is None else f", {len(data.eval)} test")
        + "), the recipe's selection; see selection_manifest.json.",
        *notes,
    ]

    with atomic_output(final, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir(parents=True)
        (tmp / "data" / "train.jsonl").write_text(_jsonl(data.train), encoding="utf-8")
        if data.eval is not None:
            (tmp / "data" / "test.jsonl").write_text(_jsonl(data.eval), encoding="utf-8")
        if hf.chat_template_name:
            template = get_template(hf.chat_template_name).template
            (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
        (tmp / "selection_manifest.json").write_text(
            json.dumps(data.manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (tmp / "sft.yaml").write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    return final / "sft.yaml"


def _base_pad_token(recipe: Recipe, model_path: str) -> str | None:
    """The pad token of the model's tokenizer as it ships (what TRL starts from)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_path,
        revision=recipe.model.model_revision,
        trust_remote_code=bool(recipe.training.get("trust_remote_code")),
    )
    return tokenizer.pad_token
