"""``hf-mig demo``: tag, score, build the graph and select on the bundled pool
(:mod:`hf_mig.cli.demo`)."""

from __future__ import annotations

import argparse

from hf_mig.cli.options import add_output_argument

NAME = "demo"
HELP = "tag, score, build the graph and select on a bundled pool"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--num`` and ``--out``."""
    parser.add_argument("--num", "-k", type=int, default=40, help="rows to select (default 40)")
    add_output_argument(parser, "folder for the subset and the graph", flag=True, required=False)


def run(args: argparse.Namespace) -> int:
    """Run :func:`hf_mig.cli.demo.run_demo`."""
    from hf_mig.cli.demo import run_demo

    run_demo(k=args.num, out_dir=args.out)
    return 0
