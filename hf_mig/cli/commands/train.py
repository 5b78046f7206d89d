"""``hf-mig train --config RECIPE.yaml [--FIELD VALUE ...]``: run a training recipe.

The same as ``python -m hf_mig.train``: the recipe is parsed by TRL's ``TrlParser``
(:mod:`hf_mig.train.config`), every other ``--FIELD VALUE`` overrides one of its keys, and
``--export_trl_config DIR`` writes the selected rows and a config ``trl sft`` trains on instead
of training (:mod:`hf_mig.train.export`).
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
    """``--config`` and ``--export_trl_config``; flags other than these override recipe
    fields."""
    add_recipe_arguments(parser)
    parser.set_defaults(overrides=[])


def run(args: argparse.Namespace) -> int:
    """Run :func:`hf_mig.train.run_recipe` with the recipe and the overrides."""
    from hf_mig.train import run_recipe

    path = run_recipe(args.config, args.overrides, args.export_trl_config)
    if path is not None:
        print(f"wrote {path.parent}; train it with: trl sft --config {path}")
    return 0
