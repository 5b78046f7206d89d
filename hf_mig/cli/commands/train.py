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
            description="Run a training recipe (see recipes/). Any other --FIELD VALUE sets "
            "the recipe key FIELD, a field of trl.SFTConfig, trl.ModelConfig, "
            "trl.ScriptArguments or hf_mig.train.HfMigArguments (e.g. --output_dir DIR, "
            "--selection_k 1000, --label_loss_group_by source).",
        )
    finally:
        subparsers._parser_class = default_class
    p.add_argument("--config", required=True, help="recipe YAML file")
    p.add_argument(
        "--export_trl_config",
        metavar="DIR",
        help="instead of training, write the selected rows and a config that "
        "`trl sft --config DIR/sft.yaml` trains on to DIR (a new folder)",
    )
    p.set_defaults(func=cmd_train, overrides=[])


def cmd_train(args: argparse.Namespace) -> int:
    """Run :func:`hf_mig.train.train` with the recipe and the overrides (or the export)."""
    from hf_mig.train import load_recipe, train

    if args.export_trl_config:
        from hf_mig.train.export import export_trl_config

        path = export_trl_config(load_recipe(args.config, args.overrides), args.export_trl_config)
        print(f"wrote {path.parent}; train it with: trl sft --config {path}")
        return 0
    train(args.config, list(args.overrides))
    return 0
