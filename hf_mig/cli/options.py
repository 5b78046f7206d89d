"""Arguments shared by the ``hf-mig`` subcommands, one function per group.

Every ``add_*`` function adds its arguments to a sub-parser with the flag names, types and
defaults all commands share; a ``help`` argument words the help for one command where it
differs. :func:`doc_description` is a command module's default ``DESCRIPTION`` (see
:mod:`hf_mig.cli.commands`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

POOL_HELP = "pool: .jsonl/.json/.parquet/.csv file, saved dataset folder, or Hub id"
SPLIT_HELP = "split of a Hub dataset or DatasetDict"
OUT_HELP = "output file (.jsonl/.json/.parquet/.csv) or folder"
OVERWRITE_HELP = (
    "replace outputs that exist (files, or folders holding only a saved dataset); "
    "without it an existing output is an error, found before any work"
)
#: ``--overwrite`` of the commands that write one ``OUT`` and may write it in shards.
SHARD_OVERWRITE_HELP = (
    "replace an existing OUT written by hf-mig (a file, or a folder holding only a "
    "saved dataset); with --shard, redo a complete shard"
)
POOL_FORMATS = ("auto", "labels", "mig-authors")
POOL_FORMAT_HELP = (
    "pool schema: 'labels' (has labels + score columns), 'mig-authors' (the MIG "
    "authors' annotated records), or auto-detect"
)


def doc_description(doc: str | None) -> str | None:
    """A command module's docstring up to its first ``::`` example block (``None`` stays)."""
    return doc.split("::")[0].strip() if doc else None


def add_pool_argument(
    parser: argparse.ArgumentParser, help: str = POOL_HELP, **kwargs: Any
) -> None:
    """The positional ``pool`` (``kwargs``: e.g. ``nargs="?"``)."""
    parser.add_argument("pool", help=help, **kwargs)


def add_split_argument(parser: argparse.ArgumentParser, help: str | None = SPLIT_HELP) -> None:
    """``--split`` (default ``train``)."""
    parser.add_argument("--split", default="train", help=help)


def add_skip_bad_lines_argument(
    parser: argparse.ArgumentParser, help: str | None = "skip malformed JSON lines"
) -> None:
    """``--skip-bad-lines``."""
    parser.add_argument("--skip-bad-lines", action="store_true", help=help)


def add_num_proc_argument(
    parser: argparse.ArgumentParser, help: str = "processes for Dataset.map"
) -> None:
    """``--num-proc`` (default: one process)."""
    parser.add_argument("--num-proc", type=int, default=None, help=help)


def add_output_argument(
    parser: argparse.ArgumentParser,
    help: str = OUT_HELP,
    *,
    flag: bool = False,
    required: bool = True,
    short: bool = True,
) -> None:
    """The output: positional ``out``, or with ``flag`` the option ``--out`` (and ``-o``
    unless ``short=False``)."""
    if flag:
        names = ["--out", "-o"] if short else ["--out"]
        parser.add_argument(*names, required=required, help=help)
    else:
        parser.add_argument("out", help=help)


def add_overwrite_argument(parser: argparse.ArgumentParser, help: str = OVERWRITE_HELP) -> None:
    """``--overwrite``: replace outputs that exist (refused, before any work, without it)."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_output_arguments(
    parser: argparse.ArgumentParser,
    help: str = OUT_HELP,
    *,
    flag: bool = False,
    overwrite_help: str = OVERWRITE_HELP,
) -> None:
    """The output (:func:`add_output_argument`) followed by ``--overwrite``."""
    add_output_argument(parser, help, flag=flag)
    add_overwrite_argument(parser, overwrite_help)


def add_pool_format_argument(parser: argparse.ArgumentParser, help: str = POOL_FORMAT_HELP) -> None:
    """``--format`` (dest ``pool_format``): the pool schema for
    :func:`hf_mig.data.pool.prepare_pool`."""
    parser.add_argument(
        "--format", dest="pool_format", default="auto", choices=list(POOL_FORMATS), help=help
    )


def add_column_arguments(
    parser: argparse.ArgumentParser, *, labels: bool = True, score: bool = True
) -> None:
    """``--labels-column`` (default ``labels``) and ``--score-column`` (default ``score``)."""
    if labels:
        parser.add_argument("--labels-column", default="labels")
    if score:
        parser.add_argument("--score-column", default="score")


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """A pool to prepare for selection: ``pool``, ``--split``, ``--format``, the columns,
    ``--vocabulary``, ``--score-reduce``, ``--skip-bad-lines`` and ``--num-proc``."""
    add_pool_argument(parser)
    add_split_argument(parser)
    add_pool_format_argument(parser)
    add_column_arguments(parser)
    parser.add_argument(
        "--vocabulary", help="JSON list or text file of labels to keep (others are ignored)"
    )
    parser.add_argument(
        "--score-reduce",
        default="mean",
        choices=["mean", "sum"],
        help="mig-authors format: combine per-turn quality x complexity by mean or sum",
    )
    add_skip_bad_lines_argument(
        parser, "JSON Lines pools: skip malformed lines (reported) instead of failing"
    )
    add_num_proc_argument(parser, "processes for Dataset.map steps")


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """How a label graph is built: ``--embedder`` and ``--threshold``."""
    parser.add_argument(
        "--embedder",
        default=None,
        help="sentence-transformers model id or local path for label embeddings "
        "(default: sentence-transformers/all-MiniLM-L6-v2)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine threshold for label edges (default: calibrated for the embedder)",
    )


def add_graph_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-edges`` and ``--max-degree`` (read back with :func:`graph_limits`)."""
    parser.add_argument(
        "--max-edges",
        type=int,
        default=None,
        help="refuse, before building it, a label graph estimated to hold more edges "
        "(default: hf_mig.annotate.graph.DEFAULT_MAX_EDGES, 20M, ~2.4 GB)",
    )
    parser.add_argument(
        "--max-degree",
        type=int,
        default=None,
        help="keep only each label's closest MAX_DEGREE neighbours (default: all)",
    )


def graph_limits(args: argparse.Namespace) -> dict[str, int]:
    """``max_edges``/``max_degree`` given on the command line (the library defaults otherwise)."""
    limits = {"max_edges": args.max_edges, "max_degree": args.max_degree}
    return {key: value for key, value in limits.items() if value is not None}


def add_graph_cache_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-graph-cache`` (dest ``graph_cache``, default ``True``)."""
    parser.add_argument(
        "--no-graph-cache",
        dest="graph_cache",
        action="store_false",
        help="build the label graph even when the graph cache ($HF_MIG_CACHE/label_graphs, "
        "keyed by labels, embedder content and threshold) holds it",
    )


def add_label_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything about building a label graph: :func:`add_graph_arguments`,
    :func:`add_graph_limit_arguments` and :func:`add_graph_cache_argument`."""
    add_graph_arguments(parser)
    add_graph_limit_arguments(parser)
    add_graph_cache_argument(parser)


def parse_value(text: str) -> Any:
    """``text`` read as JSON when it is JSON (``0.7``, ``true``, ``null``, ``[1, 2]``), else
    the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_pair(item: str, flag: str, sep: str = "=", form: str = "KEY=VALUE") -> tuple[str, str]:
    """``"KEY=VALUE"`` -> ``("KEY", "VALUE")``; an item without ``sep`` or with an empty key
    is a ``ValueError`` naming ``flag`` and the expected ``form``."""
    key, found, value = item.partition(sep)
    if not found or not key:
        raise ValueError(f"{flag} expects {form}, got {item!r}")
    return key, value
