"""``hf-mig methods``: the registered selection methods, one line each."""

from __future__ import annotations

import argparse
from typing import Any

from hf_mig.cli.options import add_command


def register(subparsers: Any) -> None:
    """Add the ``methods`` subcommand."""
    add_command(subparsers, "methods", cmd_methods, help="list the selection methods")


def cmd_methods(args: argparse.Namespace) -> int:
    """Print each method's name and the first line of its selector's docstring."""
    from hf_mig.selectors import SELECTORS

    for name in sorted(SELECTORS):
        doc = (SELECTORS[name].__doc__ or "").strip().splitlines()
        print(f"{name:<10} {doc[0] if doc else ''}")
    return 0
