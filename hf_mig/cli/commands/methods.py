"""``hf-mig methods``: the registered selection methods, one line each."""

from __future__ import annotations

import argparse

NAME = "methods"
HELP = "list the selection methods"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> int:
    """Print each method's name and the first line of its selector's docstring."""
    from hf_mig.selectors import SELECTORS

    for name in sorted(SELECTORS):
        doc = (SELECTORS[name].__doc__ or "").strip().splitlines()
        print(f"{name:<10} {doc[0] if doc else ''}")
    return 0
