"""Train a model on a MIG selection with TRL's ``SFTTrainer``: ``hf_mig.train.train(recipe)``.

One entry point for every launcher::

    python -m hf_mig.train --config recipes/tiny_cpu.yaml --output_dir runs/tiny
    hf-mig train --config recipes/tiny_cpu.yaml --output_dir runs/tiny
    torchrun --nproc_per_node 8 -m hf_mig.train --config RECIPE.yaml
    accelerate launch --config_file recipes/accelerate/zero3.yaml \
        -m hf_mig.train --config RECIPE.yaml

What :func:`train` does, in order:

1. reads the recipe (:func:`~hf_mig.train.config.load_recipe`; command-line flags override it)
   and exports its ``env:`` section;
2. builds the ``SFTConfig``; when the recipe names a chat template whose end-of-turn token
   differs from the tokenizer's eos (``<|eot_id|>``, ``<|im_end|>``) and ``eos_token`` is unset,
   sets ``eos_token`` to it, so that generation stops at the end of a turn;
3. resolves the model (``hf-mig:tiny-llama`` is built offline once), loads the tokenizer and
   installs the named training-compatible template (:mod:`hf_mig.train.templates`);
4. loads the data (:func:`~hf_mig.train.data.load_training_data`): the selection runs once on
   the main process and is cached; other ranks and re-runs reuse it;
5. builds ``SFTTrainer`` (LoRA via ``peft`` when ``model.lora`` is set) with the hf-mig callbacks
   (:mod:`hf_mig.callbacks`) placed before the reporters, trains, saves the model and tokenizer
   to ``output_dir`` and writes the model card with the selection section.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import (
    CallbacksConfig,
    DataConfig,
    GenerationPreviewSettings,
    LabelLossSettings,
    LoraSpec,
    ModelConfig,
    Recipe,
    SelectionSpec,
    load_recipe,
)
from .data import TrainingData, load_training_data
from .templates import TEMPLATES, apply_chat_template, get_template
from .tiny import TINY_MODEL_ID, build_tiny_llama, resolve_model_path

__all__ = [
    "TEMPLATES",
    "TINY_MODEL_ID",
    "CallbacksConfig",
    "DataConfig",
    "GenerationPreviewSettings",
    "LabelLossSettings",
    "LoraSpec",
    "ModelConfig",
    "Recipe",
    "SelectionSpec",
    "TrainResult",
    "TrainingData",
    "apply_chat_template",
    "build_tiny_llama",
    "load_recipe",
    "load_training_data",
    "main",
    "train",
]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trainer (``trainer.state.log_history`` holds every log),
    ``trainer.train()``'s output, the recipe as run, the data and the output folder."""

    trainer: Any
    train_output: Any
    recipe: Recipe
    data: TrainingData
    output_dir: Path
    callbacks: list[Any]


def _setup_logging(level: int) -> None:
    """Make hf-mig's INFO lines visible, each prefixed with the process rank.

    A handler is added to the ``hf_mig`` logger only when nothing configured logging (no handler
    on the root logger, as under ``python -m hf_mig.train`` or ``torchrun``); records still
    propagate, so an application's or pytest's handlers see them too.
    """
    rank = int(os.environ.get("RANK", "0"))
    package = logging.getLogger("hf_mig")
    if package.level == logging.NOTSET or package.level > level:
        package.setLevel(level)
    if logging.getLogger().handlers:
        return
    if not any(getattr(h, "_hf_mig_train", False) for h in package.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
        )
        handler._hf_mig_train = True  # type: ignore[attr-defined]
        package.addHandler(handler)


def _main_first():
    from .data import _main_first as main_first

    return main_first()


def _peft_config(spec: LoraSpec) -> Any:
    try:
        from peft import LoraConfig
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("model.lora needs the 'peft' package: pip install peft") from err
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        task_type="CAUSAL_LM",
    )


def _build_callbacks(recipe: Recipe, data: TrainingData, max_length: int | None) -> list[Any]:
    from ..callbacks import (
        GenerationPreviewCallback,
        LabelLossCallback,
        SelectionManifestCallback,
    )

    cfg = recipe.callbacks
    out: list[Any] = []
    if cfg.selection_manifest:
        out.append(SelectionManifestCallback(data.manifest))
    ll = cfg.label_loss
    labels_column = recipe.data.labels_column
    if ll.enabled:
        if labels_column not in data.train_rows.column_names:
            logger.warning(
                "label_loss callback skipped: the training rows have no %r column", labels_column
            )
        else:
            graph = None
            if ll.group_by == "clusters":
                options = recipe.data.selection.options if recipe.data.selection else {}
                graph = options.get("label_graph")
            out.append(
                LabelLossCallback(
                    data.train_rows,
                    data.eval_rows,
                    labels_column=labels_column,
                    group_by=ll.group_by,
                    num_groups=ll.num_groups,
                    rows_per_group=ll.rows_per_group,
                    label_graph=graph,
                    every_n_steps=ll.every_n_steps,
                    max_length=ll.max_length or max_length or 1024,
                    seed=recipe.data.seed,
                )
            )
    gp = cfg.generation_preview
    if gp.enabled:
        prompts = gp.prompts
        if gp.prompts_file:
            text = Path(gp.prompts_file).read_text(encoding="utf-8")
            if text.lstrip().startswith("["):
                import json

                prompts = json.loads(text)
            else:
                prompts = [line for line in text.splitlines() if line.strip()]
        out.append(GenerationPreviewCallback(prompts, max_new_tokens=gp.max_new_tokens, at=gp.at))
    return out


def train(
    recipe: Recipe | str | os.PathLike,
    overrides: Sequence[str] | None = None,
    *,
    callbacks: Sequence[Any] | None = None,
) -> TrainResult:
    """Run a recipe end to end and return a :class:`TrainResult`.

    ``recipe``: a :class:`Recipe` or a YAML path; ``overrides``: command-line style flags
    (``["--output_dir", "runs/x", "--data.selection.k", "1000"]``). ``callbacks``: extra
    ``TrainerCallback`` objects (added after hf-mig's). ``resume_from_checkpoint`` in the recipe
    (a path, or ``true`` for the last checkpoint in ``output_dir``) resumes training.

    Raises ``ValueError`` for an invalid recipe or data, and when the named chat template does
    not fit the tokenizer (missing special tokens).
    """
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from ..callbacks import install_callbacks

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise ValueError("overrides apply to a recipe path; edit the Recipe object instead")
    for key, value in recipe.env.items():
        os.environ[key] = value
    if "OMP_NUM_THREADS" in recipe.env:
        import torch

        torch.set_num_threads(max(1, int(recipe.env["OMP_NUM_THREADS"])))

    training_changes: dict[str, Any] = {}
    template = get_template(recipe.model.chat_template) if recipe.model.chat_template else None
    if template is not None and template.end_of_turn and not recipe.training.get("eos_token"):
        training_changes["eos_token"] = template.end_of_turn
    args = recipe.sft_config(**training_changes)
    _setup_logging(logging.INFO)

    with _main_first():
        model_path = resolve_model_path(recipe.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_path,
        revision=recipe.model.revision,
        trust_remote_code=recipe.model.trust_remote_code,
    )
    if template is not None:
        apply_chat_template(tokenizer, recipe.model.chat_template)
    pad = recipe.model.pad_token
    if pad is None and tokenizer.pad_token is None and template is not None:
        pad = template.pad_token if template.pad_token in tokenizer.get_vocab() else None
    if pad is not None:
        if pad not in tokenizer.get_vocab():
            raise ValueError(f"model.pad_token {pad!r} is not in the tokenizer's vocabulary")
        tokenizer.pad_token = pad

    data = load_training_data(recipe.data)
    logger.info(
        "training rows: %d (eval: %s); selection cache: %s%s",
        len(data.train),
        "none" if data.eval is None else len(data.eval),
        data.cache_path,
        {True: " (hit: selection reused)", False: " (filled now)"}.get(data.cache_hit, ""),
    )

    init_kwargs = dict(args.model_init_kwargs or {})
    if recipe.model.dtype != "auto" or "dtype" not in init_kwargs:
        init_kwargs["dtype"] = recipe.model.dtype
    if recipe.model.attn_implementation:
        init_kwargs["attn_implementation"] = recipe.model.attn_implementation
    if recipe.model.revision:
        init_kwargs["revision"] = recipe.model.revision
    args.model_init_kwargs = init_kwargs
    if recipe.model.trust_remote_code:
        args.trust_remote_code = True

    ours = _build_callbacks(recipe, data, args.max_length)
    trainer = SFTTrainer(
        model=model_path,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=_peft_config(recipe.model.lora) if recipe.model.lora else None,
    )
    install_callbacks(trainer, *ours)
    for callback in callbacks or ():
        trainer.add_callback(callback)

    resume = args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "false"):
        resume = resume.lower() == "true"
    train_output = trainer.train(resume_from_checkpoint=resume or None)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        trainer.create_model_card(model_name=Path(args.output_dir).name)
        for callback in ours:
            if hasattr(callback, "manifest") and hasattr(callback, "write"):
                callback.write(args.output_dir)
    return TrainResult(
        trainer=trainer,
        train_output=train_output,
        recipe=recipe,
        data=data,
        output_dir=Path(args.output_dir),
        callbacks=ours,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hf_mig.train --config RECIPE.yaml [--FIELD VALUE ...]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m hf_mig.train",
        description="Train on a MIG selection with TRL's SFTTrainer from a YAML recipe.",
        epilog="Any other --FIELD VALUE sets an SFTConfig field; --model.X / --data.X / "
        "--callbacks.X set a recipe section field (VALUE read as YAML).",
    )
    parser.add_argument("--config", required=True, help="recipe YAML")
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        train(args.config, rest)
    except (ValueError, FileNotFoundError) as err:
        print(f"hf_mig.train: error: {err}", file=sys.stderr)
        return 2
    return 0
