"""``hf-mig eval BENCHMARK STEP ...``: run one step of a benchmark.

::

    hf-mig eval --help                                   # the registered benchmarks
    hf-mig eval mt_bench --help                          # its steps
    hf-mig eval mt_bench score --judgments judgments.jsonl --out mt_bench.json
    hf-mig eval alpaca_eval all --model M --judge-base-url URL --judge-model J --out-dir D

The same as ``python -m hf_mig.eval.<module> STEP ...``: every benchmark registered in
:data:`hf_mig.eval.base.BENCHMARKS` is a subcommand, with its steps (``generate``, ``judge``,
``score``, ``all`` and its own) and their options.
"""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "run a benchmark's step: generate, judge, score or all (hf_mig.eval)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-subcommand per registered benchmark, with its steps and their options."""
    from hf_mig.eval.base import BENCHMARKS

    benchmarks = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, cls in BENCHMARKS.items():
        summary = " ".join((cls.__doc__ or cls.description).split("\n\n")[0].split())
        sub = benchmarks.add_parser(name, help=summary, description=summary)
        cls().configure(sub, dest="step")


def run(args: argparse.Namespace) -> int:
    """Run the chosen step of the chosen benchmark; its exit status."""
    from hf_mig.eval.base import BENCHMARKS

    return BENCHMARKS[args.benchmark]().run(args.step, args)
