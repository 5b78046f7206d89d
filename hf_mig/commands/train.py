"""``hf-mig train --config RECIPE.yaml [--FIELD VALUE ...]``: run a training recipe."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class _RecipeParser(argparse.ArgumentParser):
    """A sub-parser that keeps every flag it does not know in ``overrides`` (recipe fields)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        parsed.overrides = list(getattr(parsed, "overrides", None) or []) + list(extras)
        return parsed, []


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand (flags other than ``--config`` override recipe fields)."""
    default_class = subparsers._parser_class
    subparsers._parser_class = _RecipeParser
    try:
        p = subparsers.add_parser(
            "train",
            help="fine-tune a model on a MIG selection from a YAML recipe (TRL SFTTrainer)",
            description="Run a training recipe (see recipes/). Any other --FIELD VALUE sets an "
            "SFTConfig field (e.g. --output_dir DIR); --model.X, --data.X, --callbacks.X set "
            "recipe section fields (VALUE read as YAML, e.g. --data.selection.k 1000).",
        )
    finally:
        subparsers._parser_class = default_class
    p.add_argument("--config", required=True, help="recipe YAML file")
    p.set_defaults(func=cmd_train, overrides=[])


def cmd_train(args: argparse.Namespace) -> int:
    """Run :func:`hf_mig.train.train` with the recipe and the overrides."""
    from ..train import train

    train(args.config, list(args.overrides))
    return 0
