"""The ``hf-mig`` command line.

Every module of :mod:`hf_mig.cli.commands` that defines ``register(subparsers)`` adds its own
subcommand, whose handler (``func``, set with :func:`hf_mig.cli.options.add_command`) returns
the exit status. A handler's ``ValueError``, ``FileNotFoundError`` or ``FileExistsError`` is
printed as one line, ``hf-mig COMMAND: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from hf_mig import __version__

logger = logging.getLogger("hf_mig")

#: Subcommands listed first in ``hf-mig --help``, in pipeline order; the others follow by name.
LISTED_FIRST = ("select", "graph", "demo", "methods")
#: Exceptions a command reports as ``hf-mig COMMAND: error: ...`` with exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


def _command_modules() -> list[str]:
    """Names of the modules of :mod:`hf_mig.cli.commands`, in ``--help`` order."""
    from hf_mig.cli import commands

    names = [info.name for info in pkgutil.iter_modules(commands.__path__)]
    first = [name for name in LISTED_FIRST if name in names]
    return first + sorted(name for name in names if name not in first)


def build_parser() -> argparse.ArgumentParser:
    """The ``hf-mig`` parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hf-mig", description="MIG data selection for Hugging Face datasets."
    )
    parser.add_argument("--version", action="version", version=f"hf-mig {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _command_modules():
        module = importlib.import_module(f"hf_mig.cli.commands.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hf-mig`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"hf-mig {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
