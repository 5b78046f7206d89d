"""``hf-mig train --config RECIPE.yaml [--FIELD VALUE ...]``: run a training recipe.

The same as ``python -m hf_mig.train``: the recipe is parsed by TRL's ``TrlParser``
(:mod:`hf_mig.train.config`), every other ``--FIELD VALUE`` overrides one of its keys, and
``--export_trl_config DIR`` writes the selected rows and a config ``trl sft`` trains on instead
of training (:mod:`hf_mig.train.export`).

``--prepare_only`` computes the recipe's selection into its cache (``selection_cache_dir``, else
``$HF_MIG_CACHE/selections``) and stops, loading no model: run it once before a multi-node
launch, so that no rank computes the selection (every rank of every node must then see that
cache folder, or have run the same command on its node).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from hf_mig.train import RECIPE_FIELDS, add_recipe_arguments

NAME = "train"
HELP = "fine-tune a model on a MIG selection from a YAML recipe (TRL SFTTrainer)"
DESCRIPTION = (
    "Run a training recipe (see recipes/). Any other --FIELD VALUE sets "
    f"the recipe key FIELD, {RECIPE_FIELDS} (e.g. --output_dir DIR, "
    "--selection_k 1000, --label_loss_group_by source)."
)


class _RecipeParser(argparse.ArgumentParser):
    """A sub-parser that keeps every flag it does not know in ``overrides`` (recipe fields)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        parsed.overrides = list(getattr(parsed, "overrides", None) or []) + list(extras)
        return parsed, []


PARSER_CLASS = _RecipeParser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--export_trl_config`` and ``--prepare_only``; flags other than these
    override recipe fields."""
    add_recipe_arguments(parser)
    parser.add_argument(
        "--prepare_only",
        action="store_true",
        help="compute the recipe's selection into its cache and stop (no model is loaded): "
        "run once before a multi-node launch",
    )
    parser.set_defaults(overrides=[])


def prepare(config: str, overrides: Sequence[str] = ()) -> Any:
    """Load the training data of recipe ``config`` (with ``overrides``): its selection is
    computed and cached, or found in the cache; returns the
    :class:`~hf_mig.train.data.TrainingData`. The recipe's ``env:`` is exported first, as
    training does."""
    import os

    from hf_mig.train import load_recipe, load_training_data

    recipe = load_recipe(config, list(overrides))
    os.environ.update(recipe.env)
    return load_training_data(recipe.data)


def run(args: argparse.Namespace) -> int:
    """Run :func:`hf_mig.train.run_recipe` with the recipe and the overrides, or only compute
    the selection (``--prepare_only``)."""
    from hf_mig.train import run_recipe

    if args.prepare_only:
        if args.export_trl_config:
            raise ValueError("--prepare_only and --export_trl_config exclude each other")
        data = prepare(args.config, args.overrides)
        if data.cache_hit is None:
            print(f"the recipe trains on a ready dataset: {len(data.train):,} rows, no selection")
        elif data.cache_path is None:
            print(
                f"selection computed, not cached ({len(data.train):,} training rows): an option "
                "has no content identity, so each rank selects again"
            )
        else:
            how = "reused from the cache" if data.cache_hit else "computed"
            print(
                f"selection {how}: {data.cache_path} ({len(data.train):,} training rows); "
                "every rank must see this folder"
            )
        return 0
    path = run_recipe(args.config, args.overrides, args.export_trl_config)
    if path is not None:
        print(f"wrote {path.parent}; train it with: trl sft --config {path}")
    return 0
