"""``hf-mig demo``: tag, score, build the graph and select on the bundled pool
(:mod:`hf_mig.cli.demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from hf_mig.cli.options import add_command, add_output_argument


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    d = add_command(
        subparsers,
        "demo",
        cmd_demo,
        help="tag, score, build the graph and select on a bundled pool",
    )
    d.add_argument("--num", "-k", type=int, default=40, help="rows to select (default 40)")
    add_output_argument(d, "folder for the subset and the graph", flag=True, required=False)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run :func:`hf_mig.cli.demo.run_demo`."""
    from hf_mig.cli.demo import run_demo

    run_demo(k=args.num, out_dir=args.out)
    return 0
