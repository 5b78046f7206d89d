"""Benchmarks behind one interface (:class:`Benchmark`) and one registry (:data:`BENCHMARKS`).

A benchmark runs in steps, each a subcommand of its command line (``python -m
hf_mig.eval.<module> STEP ...`` or ``hf-mig eval NAME STEP ...``):

- ``generate``: the model's outputs through the shared generation backends (resumable); exit
  status 1 when some outputs failed (a re-run retries them);
- ``judge``: judge records through :class:`~hf_mig.eval.judge.JudgeClient` (rule-scored
  benchmarks have no judge and say so);
- ``score``: the result file (JSON with a ``benchmark`` field) from judge records;
- ``all``: the three into ``--out-dir``, checking the judge options before generating.

:meth:`Benchmark.table_cells` reads a result file into the columns of the comparison table
(:mod:`hf_mig.eval.compare`). A new benchmark is one module of :mod:`hf_mig.eval` with a
:class:`Benchmark` subclass decorated by :func:`register_benchmark`: the registry finds it, and
so do ``hf-mig eval`` and the table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from pathlib import Path
from typing import Any, ClassVar

from hf_mig.core.registry import Registry

__all__ = [
    "BENCHMARKS",
    "MODES",
    "Benchmark",
    "add_all_step",
    "add_generate_step",
    "add_mode_arg",
    "add_no_judge_step",
    "is_number",
    "iter_jsonl",
    "read_jsonl",
    "register_benchmark",
    "write_result",
]

#: Scoring modes: the benchmark's own protocol, or what the MIG paper ran.
MODES = ("official", "paper")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSON-lines file; ``ValueError``
    naming the file and line of a line that is not JSON."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {lineno}: {err}") from err


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines skipped); ``ValueError`` naming the file
    and line of a line that is not JSON."""
    return [value for _, value in iter_jsonl(path)]


def write_result(path: str | Path, result: Any) -> None:
    """Write a result as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def add_mode_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--mode official|paper`` (default official)."""
    p.add_argument("--mode", choices=MODES, default="official", help=help)


#: Adds a benchmark's data options (its input files, ``--limit``) to a step's parser.
DataArgs = Callable[[argparse.ArgumentParser], None]


def _generating_step(
    sub: argparse._SubParsersAction, step: str, help: str, data_args: DataArgs
) -> argparse.ArgumentParser:
    from hf_mig.eval.generate import add_generation_args

    p = sub.add_parser(step, help=help)
    add_generation_args(p)
    data_args(p)
    return p


def add_generate_step(
    sub: argparse._SubParsersAction, help: str, data_args: DataArgs
) -> argparse.ArgumentParser:
    """The ``generate`` step's parser: the generation options, then ``data_args``."""
    return _generating_step(sub, "generate", help, data_args)


def add_all_step(
    sub: argparse._SubParsersAction, help: str, data_args: DataArgs
) -> argparse.ArgumentParser:
    """The ``all`` step's parser: the generation options, ``data_args``, the judge options,
    ``--mode`` and ``--out-dir`` (required)."""
    from hf_mig.eval.judge import add_judge_args

    p = _generating_step(sub, "all", help, data_args)
    add_judge_args(p)
    add_mode_arg(p)
    p.add_argument("--out-dir", required=True)
    return p


def add_no_judge_step(sub: argparse._SubParsersAction, help: str) -> None:
    """The ``judge`` step of a rule-scored benchmark: it takes (and ignores) any arguments."""
    sub.add_parser("judge", help=help).add_argument("rest", nargs="*")


class Benchmark:
    """One benchmark's steps and its table cells.

    Subclasses set the class attributes, add their subcommands in :meth:`add_steps` and
    implement :meth:`score` and :meth:`table_cells`; judged benchmarks also
    :meth:`generate_outputs`, :meth:`judge_inputs` and :meth:`judge_outputs`, and the hooks
    :meth:`chain_judge` / :meth:`chain_score` that let ``all`` feed each step's file to the next.
    ``__init__`` takes no arguments: every option comes from the command line.
    """

    #: registry name (``hf-mig eval NAME``), set by :func:`register_benchmark`
    name: ClassVar[str] = ""
    #: one line for ``--help``
    description: ClassVar[str] = ""
    #: ``prog`` of the module's own parser
    prog: ClassVar[str] = ""
    #: the ``benchmark`` field of the result files its ``score`` writes
    result_benchmark: ClassVar[str] = ""
    #: whether the benchmark has a judge step
    judged: ClassVar[bool] = True
    #: ``all``: the files written into ``--out-dir`` (outputs, judge records, result)
    all_files: ClassVar[tuple[str, str, str]] = ("outputs.json", "judgments.json", "result.json")
    #: what a re-run of an incomplete generation retries (``all``'s message)
    items: ClassVar[str] = "items"

    # ---------------------------------------------------------------- command line

    def add_steps(self, sub: argparse._SubParsersAction) -> None:
        """Add one subparser per step to ``sub``."""
        raise NotImplementedError

    def configure(self, parser: argparse.ArgumentParser, dest: str = "command") -> None:
        """Give ``parser`` the steps as subcommands, the chosen one stored in ``dest``."""
        self.add_steps(parser.add_subparsers(dest=dest, required=True))

    def build_parser(self) -> argparse.ArgumentParser:
        """The module's own argument parser (``python -m hf_mig.eval.<module>``)."""
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        self.configure(parser)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv`` and run the step; returns the exit status."""
        args = self.build_parser().parse_args(argv)
        return self.run(args.command, args)

    def extra_steps(self) -> dict[str, Callable[[argparse.Namespace], int]]:
        """Steps besides generate / judge / score / all: ``{subcommand: handler -> status}``."""
        return {}

    def run(self, step: str, args: argparse.Namespace) -> int:
        """Run one step with parsed ``args``; returns the exit status."""
        extra = self.extra_steps()
        if step in extra:
            return extra[step](args)
        if step == "generate":
            return 1 if getattr(self.generate(args), "failed", 0) else 0
        if step == "judge":
            self.judge(args)
        elif step == "score":
            self.score(args)
        elif step == "all":
            return self.run_all(args)
        else:
            raise ValueError(f"{self.name}: unknown step {step!r}")
        return 0

    # ---------------------------------------------------------------- steps

    def generate(self, args: argparse.Namespace) -> Any:
        """Generate the model's outputs (backend from the generation options); returns the
        :class:`~hf_mig.eval.generate.GenerationReport`."""
        from hf_mig.eval.generate import backend_from_args, generator_name

        report = self.generate_outputs(backend_from_args(args), args, generator_name(args))
        print(f"generation: {report.summary()}")
        return report

    def generate_outputs(self, backend: Any, args: argparse.Namespace, model_id: str) -> Any:
        """Generate into ``args.out`` with ``backend``; returns the generation report."""
        raise NotImplementedError

    def judge(self, args: argparse.Namespace) -> Any:
        """Judge into ``args.out`` with the client of the judge options (judgments cached in
        ``judge_cache.sqlite`` beside ``args.out`` unless ``--judge-cache``)."""
        if not self.judged:
            print(f"{self.name}: scored by rules; there is no judge step")
            return None
        from hf_mig.eval.judge import client_from_args

        data = self.judge_inputs(args)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        client = client_from_args(args, out.parent / "judge_cache.sqlite")
        judged = self.judge_outputs(client, data, args)
        print(f"judge: {client.stats.summary()}")
        return judged

    def judge_inputs(self, args: argparse.Namespace) -> Any:
        """What :meth:`judge_outputs` judges, read from the files ``args`` names."""
        raise NotImplementedError

    def judge_outputs(self, client: Any, data: Any, args: argparse.Namespace) -> Any:
        """Judge ``data`` with ``client`` and write the records to ``args.out``."""
        raise NotImplementedError

    def score(self, args: argparse.Namespace) -> Any:
        """Print the scores and, with ``args.out``, write the result file; returns the result."""
        raise NotImplementedError

    def table_cells(self, result: Mapping[str, Any]) -> dict[str, float]:
        """The comparison-table cells of one result file; empty when it is not this
        benchmark's."""
        raise NotImplementedError

    def chain_judge(self, args: argparse.Namespace) -> None:
        """``all``: point the judge options at the outputs just written to ``args.out``."""

    def chain_score(self, args: argparse.Namespace, judged: Any) -> None:
        """``all``: point the score options at the judge records ``judged`` (in ``args.out``)."""

    def run_all(self, args: argparse.Namespace) -> int:
        """Generate, judge and score into ``args.out_dir``; 1 (nothing judged) when some outputs
        failed. The judge options are checked before any generation."""
        from hf_mig.eval.judge import check_judge_args

        check_judge_args(args)
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs, judgments, result = self.all_files
        args.out = str(out_dir / outputs)
        if getattr(self.generate(args), "failed", 0):
            print(f"generation incomplete; re-run to retry the failed {self.items}")
            return 1
        self.chain_judge(args)
        args.out = str(out_dir / judgments)
        judged = self.judge(args)
        self.chain_score(args, judged)
        args.out = str(out_dir / result)
        self.score(args)
        return 0


#: Modules kept for their old import path only (they warn when imported).
_DEPRECATED_MODULES = frozenset({"objective"})


def _import_benchmark_modules() -> None:
    package = importlib.import_module("hf_mig.eval")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _DEPRECATED_MODULES:
            importlib.import_module(f"hf_mig.eval.{info.name}")


class _BenchmarkRegistry(Registry):
    """``{name: Benchmark subclass}`` that imports the modules of :mod:`hf_mig.eval` on the first
    read (item, iteration, length, views), so every registered benchmark is there. Iteration is by
    name; an unknown name is a ``KeyError`` listing the known ones. A membership test (``in``)
    sees only the benchmarks imported so far."""

    def __getitem__(self, name: str) -> type[Benchmark]:
        if not dict.__contains__(self, name):
            self.load()
        try:
            return super().__getitem__(name)
        except KeyError:
            raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(self)}") from None

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(sorted(dict.__iter__(self)))

    def __len__(self) -> int:
        self.load()
        return super().__len__()

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return KeysView(self)

    def values(self) -> ValuesView[type[Benchmark]]:  # type: ignore[override]
        return ValuesView(self)

    def items(self) -> ItemsView[str, type[Benchmark]]:  # type: ignore[override]
        return ItemsView(self)


#: Every benchmark by name (``alpaca_eval``, ``ifeval``, ``mt_bench``, ``tasks``, ``wildbench``).
BENCHMARKS = _BenchmarkRegistry("benchmark", loader=_import_benchmark_modules)


def register_benchmark(name: str) -> Callable[[type[Benchmark]], type[Benchmark]]:
    """Class decorator adding a :class:`Benchmark` subclass to :data:`BENCHMARKS` as ``name``.

    A module run as a script (``__main__``) registers nothing: the registry imports the module
    under its package name."""

    def deco(cls: type[Benchmark]) -> type[Benchmark]:
        if cls.__module__ == "__main__":
            cls.name = name
            return cls
        return BENCHMARKS.register(name)(cls)

    return deco
