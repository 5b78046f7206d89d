"""Subcommands of ``hf-mig``, one module each, all declared the same way.

A command module (every module of this package whose name does not start with ``_``) defines

* ``NAME``: the subcommand, and ``HELP``: its line in ``hf-mig --help``;
* ``add_arguments(parser)``: adds the subcommand's arguments to its sub-parser;
* ``run(args) -> int``: runs the subcommand on the parsed arguments; returns the exit status;

and may define ``DESCRIPTION`` (the text of ``hf-mig NAME --help``; by default the module
docstring up to its first ``::`` example block, ``None`` for none), ``EPILOG``,
``FORMATTER_CLASS`` (an ``argparse`` help formatter) and ``PARSER_CLASS`` (the sub-parser's
class). :func:`hf_mig.cli.main.build_parser` finds the modules and creates their sub-parsers, so
a new subcommand is one new module. Modules whose name starts with ``_`` hold what several
commands share.
"""
