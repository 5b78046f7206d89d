"""The ``hf-mig`` command line.

Every command module of :mod:`hf_mig.cli.commands` (``NAME``, ``HELP``, ``add_arguments`` and
``run``; see that package) is one subcommand, created by :func:`add_command_parser`; its
``run(args)`` returns the exit status. A ``ValueError``, ``FileNotFoundError`` or
``FileExistsError`` raised by ``run`` is printed as one line, ``hf-mig COMMAND: error: ...``,
with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from hf_mig import __version__
from hf_mig.cli.options import doc_description

logger = logging.getLogger("hf_mig")

#: The package whose modules are the subcommands.
COMMANDS_PACKAGE = "hf_mig.cli.commands"
#: Subcommands listed first in ``hf-mig --help``, in pipeline order; the others follow by name.
LISTED_FIRST = ("select", "graph", "demo", "methods")
#: Exceptions a command reports as ``hf-mig COMMAND: error: ...`` with exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
#: What every command module defines (see :mod:`hf_mig.cli.commands`).
CONTRACT = {"NAME": str, "HELP": str, "add_arguments": callable, "run": callable}


def _check_contract(module: ModuleType) -> None:
    """Raise ``TypeError`` naming ``module`` and what it lacks of :data:`CONTRACT`."""
    wrong = []
    for name, kind in CONTRACT.items():
        value = getattr(module, name, None)
        if not (callable(value) if kind is callable else isinstance(value, kind)):
            wrong.append(name)
    if wrong:
        raise TypeError(
            f"command module {module.__name__} must define NAME and HELP (str), "
            f"add_arguments(parser) and run(args) -> int; missing or wrong: {', '.join(wrong)}"
        )


def command_modules(package: str = COMMANDS_PACKAGE) -> list[ModuleType]:
    """The command modules of ``package`` (those not starting with ``_``), each checked against
    the contract, in ``--help`` order: :data:`LISTED_FIRST`, then the others by ``NAME``."""
    path = importlib.import_module(package).__path__
    modules = []
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{package}.{info.name}")
            _check_contract(module)
            modules.append(module)
    rank = {name: i for i, name in enumerate(LISTED_FIRST)}
    return sorted(modules, key=lambda m: (rank.get(m.NAME, len(rank)), m.NAME))


def add_command_parser(subparsers: Any, module: ModuleType) -> argparse.ArgumentParser:
    """Create the sub-parser of command ``module``: ``NAME``, ``HELP``, the optional
    ``DESCRIPTION``, ``EPILOG``, ``FORMATTER_CLASS`` and ``PARSER_CLASS``, its arguments
    (``add_arguments``) and ``func`` = its ``run``."""
    options = {
        "help": module.HELP,
        "description": getattr(module, "DESCRIPTION", doc_description(module.__doc__)),
        "epilog": getattr(module, "EPILOG", None),
        "formatter_class": getattr(module, "FORMATTER_CLASS", argparse.HelpFormatter),
    }
    default_class = subparsers._parser_class
    subparsers._parser_class = getattr(module, "PARSER_CLASS", default_class)
    try:
        parser = subparsers.add_parser(module.NAME, **options)
    finally:
        subparsers._parser_class = default_class
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)
    return parser


def build_parser(package: str = COMMANDS_PACKAGE) -> argparse.ArgumentParser:
    """The ``hf-mig`` parser with a subcommand for every command module of ``package``."""
    parser = argparse.ArgumentParser(
        prog="hf-mig", description="MIG data selection for Hugging Face datasets."
    )
    parser.add_argument("--version", action="version", version=f"hf-mig {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in command_modules(package):
        add_command_parser(sub, module)
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
