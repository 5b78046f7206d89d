"""Train a model on a MIG selection with TRL's ``SFTTrainer``: ``hf_mig.train.train(recipe)``.

One entry point for every launcher::

    python -m hf_mig.train --config recipes/tiny_cpu.yaml --output_dir runs/tiny
    hf-mig train --config recipes/tiny_cpu.yaml --output_dir runs/tiny
    torchrun --nproc_per_node 8 -m hf_mig.train --config RECIPE.yaml
    accelerate launch --config_file recipes/accelerate/zero3.yaml \
        -m hf_mig.train --config RECIPE.yaml

Recipes are flat YAML files read by TRL's ``TrlParser`` with TRL's ``SFTConfig``,
``ModelConfig`` and ``ScriptArguments`` and hf-mig's :class:`HfMigArguments` (see
:mod:`hf_mig.train.config`, which also says what ``trl sft`` makes of them). Every other
``--FIELD VALUE`` on the command line overrides the recipe. ``--export_trl_config DIR`` writes
the selected rows and a TRL-only config that ``trl sft --config DIR/sft.yaml`` trains on
(:mod:`hf_mig.train.export`) instead of training.

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
5. builds the trainer as TRL's SFT script does (model keyword arguments, quantization and LoRA
   from TRL's ``ModelConfig`` through ``get_quantization_config`` / ``get_peft_config``), as a
   :class:`~hf_mig.train.trainer.SelectionSFTTrainer`, whose model card carries the selection
   section, with the hf-mig callbacks (:mod:`hf_mig.train.callbacks`) placed before the reporters;
6. trains, writes the model card, saves the model and tokenizer to ``output_dir`` (which, with
   ``push_to_hub``, uploads them with the complete card), then ends the run with
   ``trainer.end()`` (finishes the trackers, destroys the process group).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_mig.train.config import (
    DataConfig,
    HfMigArguments,
    Recipe,
    SelectionSpec,
    load_recipe,
    make_parser,
)
from hf_mig.train.data import TrainingData, load_training_data
from hf_mig.train.templates import TEMPLATES, apply_chat_template, get_template
from hf_mig.train.tiny import TINY_MODEL_ID, build_tiny_llama, resolve_model_path

__all__ = [
    "TEMPLATES",
    "TINY_MODEL_ID",
    "DataConfig",
    "HfMigArguments",
    "Recipe",
    "SelectionSpec",
    "TrainResult",
    "TrainingData",
    "add_recipe_arguments",
    "apply_chat_template",
    "build_tiny_llama",
    "load_recipe",
    "load_training_data",
    "main",
    "make_parser",
    "run_recipe",
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
    from hf_mig.train.data import _main_first as main_first

    return main_first()


def _preview_prompts(hf: HfMigArguments) -> list[str] | None:
    if not hf.generation_preview_prompts_file:
        return hf.generation_preview_prompts
    path = Path(hf.generation_preview_prompts_file)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        import json

        try:
            prompts = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}: not a JSON list of prompts: {err}") from None
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"{path}: expected a JSON list of strings")
        return prompts
    return [line for line in text.splitlines() if line.strip()]


def _build_callbacks(recipe: Recipe, data: TrainingData, max_length: int | None) -> list[Any]:
    from hf_mig.train.callbacks import (
        GenerationPreviewCallback,
        LabelLossCallback,
        SelectionManifestCallback,
    )

    hf = recipe.hf_mig
    out: list[Any] = []
    if hf.selection_manifest:
        out.append(SelectionManifestCallback(data.manifest))
    if hf.label_loss:
        column = hf.label_loss_column or hf.labels_column
        rows = data.train_rows
        if column not in rows.column_names:
            if hf.label_loss_column:
                raise ValueError(
                    f"label_loss_group_by: the training rows have no column {column!r} "
                    f"(columns: {rows.column_names})"
                )
            logger.warning(
                "label_loss callback skipped: the training rows have no %r column", column
            )
        else:
            graph = None
            if hf.label_loss_group_by == "clusters":
                graph = (hf.selection_options or {}).get("label_graph")
            eval_rows = data.eval_rows
            if eval_rows is not None and column not in eval_rows.column_names:
                logger.warning(
                    "label_loss: the evaluation rows have no %r column; measured on training "
                    "rows only",
                    column,
                )
                eval_rows = None
            out.append(
                LabelLossCallback(
                    rows,
                    eval_rows,
                    labels_column=hf.labels_column,
                    group_by=hf.label_loss_group_by,
                    num_groups=hf.label_loss_num_groups,
                    rows_per_group=hf.label_loss_rows_per_group,
                    label_graph=graph,
                    every_n_steps=hf.label_loss_every_n_steps,
                    max_length=hf.label_loss_max_length or max_length or 1024,
                    seed=int(recipe.training.get("seed", 42)),
                )
            )
    if hf.generation_preview:
        out.append(
            GenerationPreviewCallback(
                _preview_prompts(hf),
                max_new_tokens=hf.generation_preview_max_new_tokens,
                at=hf.generation_preview_at,
            )
        )
    return out


def _model_init_kwargs(recipe: Recipe, args: Any) -> dict[str, Any]:
    """What TRL's SFT script passes to ``from_pretrained``: ModelConfig's revision, attention and
    dtype, SFTConfig's ``trust_remote_code``, then ``model_init_kwargs`` over them."""
    model = recipe.model
    kwargs: dict[str, Any] = {
        "revision": model.model_revision,
        "trust_remote_code": args.trust_remote_code,
        "attn_implementation": model.attn_implementation,
        "dtype": model.dtype,
    }
    kwargs.update(args.model_init_kwargs or {})
    return kwargs


def training_changes(recipe: Recipe) -> dict[str, Any]:
    """``SFTConfig`` values implied by the recipe's template: ``eos_token`` = the template's
    end-of-turn token when the recipe sets no ``eos_token``."""
    name = recipe.hf_mig.chat_template_name
    template = get_template(name) if name else None
    if template is not None and template.end_of_turn and not recipe.training.get("eos_token"):
        return {"eos_token": template.end_of_turn}
    return {}


def load_tokenizer(recipe: Recipe, model_path: str) -> Any:
    """The tokenizer of ``model_path`` with the recipe's template and pad token installed.

    The pad token is ``tokenizer_pad_token``, else the tokenizer's own, else (none) the
    template's suggestion when the vocabulary has it. Raises ``ValueError`` when the template's
    tokens or the pad token are not in the vocabulary.
    """
    from transformers import AutoTokenizer

    hf = recipe.hf_mig
    tokenizer = AutoTokenizer.from_pretrained(
        model_path,
        revision=recipe.model.model_revision,
        trust_remote_code=bool(recipe.training.get("trust_remote_code")),
    )
    template = None
    if hf.chat_template_name:
        template = apply_chat_template(tokenizer, hf.chat_template_name)
    pad = hf.tokenizer_pad_token
    if pad is None and tokenizer.pad_token is None and template is not None:
        pad = template.pad_token if template.pad_token in tokenizer.get_vocab() else None
    if pad is not None:
        if pad not in tokenizer.get_vocab():
            raise ValueError(f"tokenizer_pad_token {pad!r} is not in the tokenizer's vocabulary")
        tokenizer.pad_token = pad
    return tokenizer


def train(
    recipe: Recipe | str | os.PathLike,
    overrides: Sequence[str] | None = None,
    *,
    callbacks: Sequence[Any] | None = None,
) -> TrainResult:
    """Run a recipe end to end and return a :class:`TrainResult`.

    ``recipe``: a :class:`Recipe` or a YAML path; ``overrides``: command-line style flags
    (``["--output_dir", "runs/x", "--selection_k", "1000"]``). ``callbacks``: extra
    ``TrainerCallback`` objects (added after hf-mig's). ``resume_from_checkpoint`` in the recipe
    (a path, or ``true`` for the last checkpoint in ``output_dir``) resumes training.

    The run is finished when this returns: the model, tokenizer, card and manifest are in
    ``output_dir`` (and on the Hub with ``push_to_hub``), and ``trainer.end()`` has finished the
    trackers and destroyed the process group, so the returned trainer is for reading (state,
    model), not for further distributed work.

    Raises ``ValueError`` for an invalid recipe or data, and when the named chat template does
    not fit the tokenizer (missing special tokens).
    """
    from trl import get_peft_config, get_quantization_config

    from hf_mig.train.callbacks import install_callbacks
    from hf_mig.train.trainer import SelectionSFTTrainer

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise ValueError("overrides apply to a recipe path; edit the Recipe object instead")
    for key, value in recipe.env.items():
        os.environ[key] = value
    if "OMP_NUM_THREADS" in recipe.env:
        import torch

        torch.set_num_threads(max(1, int(recipe.env["OMP_NUM_THREADS"])))

    hf = recipe.hf_mig
    args = recipe.sft_config(**training_changes(recipe))
    _setup_logging(logging.INFO)

    with _main_first():
        model_path = resolve_model_path(recipe.model.model_name_or_path)
    tokenizer = load_tokenizer(recipe, model_path)

    data = load_training_data(recipe.data)
    logger.info(
        "training rows: %d (eval: %s); selection cache: %s%s",
        len(data.train),
        "none" if data.eval is None else len(data.eval),
        "not used" if data.cache_path is None else data.cache_path,
        {True: " (hit: selection reused)", False: " (filled now)"}.get(data.cache_hit, "")
        if data.cache_path is not None
        else "",
    )

    args.model_init_kwargs = _model_init_kwargs(recipe, args)
    ours = _build_callbacks(recipe, data, args.max_length)
    trainer = SelectionSFTTrainer(
        model=model_path,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        quantization_config=get_quantization_config(recipe.model),
        peft_config=get_peft_config(recipe.model),
        selection_manifest=data.manifest if hf.selection_manifest else None,
    )
    install_callbacks(trainer, *ours)
    for callback in callbacks or ():
        trainer.add_callback(callback)

    resume = args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "false"):
        resume = resume.lower() == "true"
    train_output = trainer.train(resume_from_checkpoint=resume or None)
    # TRL's card with the selection section (SelectionSFTTrainer); with push_to_hub,
    # save_model then uploads output_dir with a card written the same way
    trainer.create_model_card(model_name=Path(args.output_dir).name)
    trainer.save_model(args.output_dir)
    _end(trainer)
    return TrainResult(
        trainer=trainer,
        train_output=train_output,
        recipe=recipe,
        data=data,
        output_dir=Path(args.output_dir),
        callbacks=ours,
    )


def _release_wrapper(trainer: Any) -> None:
    """Drop the distributed wrapper of the model (DDP) before the process group is destroyed.

    DDP's reducer holds the process group; if it outlives ``destroy_process_group``, the group
    is destroyed whenever the wrapper is collected, under the GIL, and a gloo worker thread that
    is still releasing a collective's tensors (which needs the GIL) then deadlocks with it.
    Released first, the wrapper leaves the group to ``destroy_process_group``, which destroys it
    without holding the GIL.
    """
    import gc

    wrapped = trainer.model_wrapped
    if wrapped is None or wrapped is trainer.model:
        return
    trainer.model_wrapped = trainer.model
    models = getattr(trainer.accelerator, "_models", None)
    if isinstance(models, list):
        models[:] = [trainer.model if m is wrapped else m for m in models]
    del wrapped
    gc.collect()


def _end(trainer: Any) -> None:
    """``trainer.end()`` (transformers >= 5.18), else what it does, after
    :func:`_release_wrapper`."""
    _release_wrapper(trainer)
    end = getattr(trainer, "end", None)
    if callable(end):
        end()
    else:  # pragma: no cover - older transformers
        trainer.accelerator.end_training()


#: What ``--FIELD VALUE`` flags besides the recipe arguments set.
RECIPE_FIELDS = (
    "a field of trl.SFTConfig, trl.ModelConfig, trl.ScriptArguments or hf_mig.train.HfMigArguments"
)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config RECIPE.yaml`` (required) and ``--export_trl_config DIR``: the arguments of
    every launcher of :func:`run_recipe`; every other ``--FIELD VALUE`` overrides the recipe."""
    parser.add_argument("--config", required=True, help="recipe YAML file")
    parser.add_argument(
        "--export_trl_config",
        metavar="DIR",
        help="instead of training, write the selected rows and a config that "
        "`trl sft --config DIR/sft.yaml` trains on to DIR (a new folder)",
    )


def run_recipe(
    config: str | os.PathLike,
    overrides: Sequence[str] = (),
    export_trl_config: str | os.PathLike | None = None,
) -> Path | None:
    """Train on the recipe ``config`` with the command-line ``overrides`` (:func:`train`).

    With ``export_trl_config``, write the TRL-only export there instead of training
    (:func:`hf_mig.train.export.export_trl_config`) and return the path of its ``sft.yaml``.
    """
    if export_trl_config:
        from hf_mig.train.export import export_trl_config as export

        return export(load_recipe(config, list(overrides)), export_trl_config)
    train(config, list(overrides))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hf_mig.train --config RECIPE.yaml [--FIELD VALUE ...]``.

    ``--export_trl_config DIR`` writes the TRL-only export (:mod:`hf_mig.train.export`)
    instead of training. Returns 2 (with one line on stderr) for a bad recipe or data.
    """
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m hf_mig.train",
        description="Train on a MIG selection with TRL's SFTTrainer from a YAML recipe.",
        epilog=f"Any other --FIELD VALUE sets {RECIPE_FIELDS} (the recipe's keys).",
    )
    add_recipe_arguments(parser)
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    from hf_mig.data.io import OutputExistsError

    try:
        run_recipe(args.config, rest, args.export_trl_config)
    except (ValueError, FileNotFoundError, OutputExistsError) as err:
        print(f"hf_mig.train: error: {err}", file=sys.stderr)
        return 2
    return 0
