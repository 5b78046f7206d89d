"""The ``hf-mig`` command line.

``select``, ``graph`` and ``demo`` live here; every module of :mod:`hf_mig.cli.commands` that defines
``register(subparsers)`` adds its own subcommand (setting ``func`` with ``set_defaults``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import pkgutil
import sys
import time
from collections.abc import Sequence

from hf_mig import __version__

logger = logging.getLogger("hf_mig")


def _add_pool_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "pool", help="pool: .jsonl/.json/.parquet/.csv file, saved dataset folder, or Hub id"
    )
    p.add_argument("--split", default="train", help="split of a Hub dataset or DatasetDict")
    p.add_argument(
        "--format",
        dest="pool_format",
        default="auto",
        choices=["auto", "labels", "mig-authors"],
        help="pool schema: 'labels' (has labels + score columns), 'mig-authors' (the MIG "
        "authors' annotated records), or auto-detect",
    )
    p.add_argument("--labels-column", default="labels")
    p.add_argument("--score-column", default="score")
    p.add_argument(
        "--vocabulary", help="JSON list or text file of labels to keep (others are ignored)"
    )
    p.add_argument(
        "--score-reduce",
        default="mean",
        choices=["mean", "sum"],
        help="mig-authors format: combine per-turn quality x complexity by mean or sum",
    )
    p.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="JSON Lines pools: skip malformed lines (reported) instead of failing",
    )
    p.add_argument("--num-proc", type=int, default=None, help="processes for Dataset.map steps")


def _add_graph_limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-edges",
        type=int,
        default=None,
        help="refuse, before building it, a label graph estimated to hold more edges "
        "(default: hf_mig.core.graph.DEFAULT_MAX_EDGES, 20M, ~2.4 GB)",
    )
    p.add_argument(
        "--max-degree",
        type=int,
        default=None,
        help="keep only each label's closest MAX_DEGREE neighbours (default: all)",
    )


def _add_graph_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-graph-cache",
        dest="graph_cache",
        action="store_false",
        help="build the label graph even when the graph cache ($HF_MIG_CACHE/label_graphs, "
        "keyed by labels, embedder content and threshold) holds it",
    )


def _graph_limits(args) -> dict:
    """``max_edges``/``max_degree`` given on the command line (the library defaults otherwise)."""
    limits = {"max_edges": args.max_edges, "max_degree": args.max_degree}
    return {key: value for key, value in limits.items() if value is not None}


def _add_graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedder",
        default=None,
        help="sentence-transformers model id or local path for label embeddings "
        "(default: sentence-transformers/all-MiniLM-L6-v2)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine threshold for label edges (default: calibrated for the embedder)",
    )


def _add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that exist (files, or folders holding only a saved dataset); "
        "without it an existing output is an error, found before any work",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-mig", description="MIG data selection for Hugging Face datasets."
    )
    parser.add_argument("--version", action="version", version=f"hf-mig {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("select", help="select rows of a pool and write them out")
    _add_pool_args(s)
    s.add_argument("--num", "-k", type=int, required=True, help="number of rows to select")
    s.add_argument(
        "--out", "-o", required=True, help="output file (.jsonl/.json/.parquet/.csv) or folder"
    )
    s.add_argument("--method", default="mig", help="selection method (see 'hf-mig methods')")
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra selector option (repeatable); VALUE is parsed as JSON when it can be",
    )
    s.add_argument("--seed", type=int, default=42, help="random method: seed")
    s.add_argument("--graph", help="label graph saved by 'hf-mig graph' / LabelGraph.save")
    _add_graph_args(s)
    s.add_argument("--save-graph", help="also save the label graph built from the pool here")
    s.add_argument("--phi", default="pow", choices=["pow", "exp"])
    s.add_argument("--phi-a", type=float, default=1e-6)
    s.add_argument("--phi-b", type=float, default=0.8)
    s.add_argument("--phi-alpha", type=float, default=1.0)
    s.add_argument("--prop-weight", type=float, default=1.0)
    s.add_argument("--norm", action="store_true", help="divide scores by the number of labels")
    s.add_argument("--gain", default="gradient", choices=["gradient", "exact"])
    s.add_argument("--engine", default="auto", choices=["auto", "lazy", "scan"])
    s.add_argument("--record-gains", action="store_true", help="add mig_rank and mig_gain columns")
    s.add_argument(
        "--overwrite-gain-columns",
        action="store_true",
        help="with --record-gains, replace mig_rank/mig_gain columns the pool already has",
    )
    s.add_argument(
        "--min-coverage",
        type=float,
        default=None,
        help="mig: least share of rows with a label in the graph (default 0.5; 0 disables)",
    )
    _add_graph_limit_args(s)
    _add_graph_cache_arg(s)
    s.add_argument("--summary-json", help="write the selection summary (JSON) here")
    s.add_argument(
        "--indices-out",
        help="also write the selected rows' 0-based positions in the pool, in pick order: "
        'JSON {"positions": [...], "pool_rows": N, "method": M} (\'hf-mig report --selection '
        "NAME=FILE' reads it; works for pools without an id column)",
    )
    s.add_argument(
        "--no-card",
        dest="card",
        action="store_false",
        help="do not write the selection's dataset card beside --out (OUT with .README.md "
        "appended, e.g. subset.jsonl.README.md: the pool's fingerprint and hash, method and "
        "options, coverage, the command that reproduces it)",
    )
    s.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="also upload the selection, with its dataset card, as the train split of the Hub "
        "dataset REPO ('user/name'), after every local output is written; a failed upload "
        "exits with status 3 and keeps the local outputs. An existing repository is refused "
        "unless --overwrite",
    )
    s.add_argument(
        "--private", action="store_true", help="--push-to-hub: create the repository private"
    )
    s.add_argument(
        "--token-env",
        metavar="NAME",
        help="--push-to-hub: read the Hub token from environment variable NAME (default: "
        "HF_TOKEN or the login of 'hf auth login'); the token is never printed or written",
    )

    _add_overwrite_arg(s)
    s.set_defaults(func=cmd_select)

    g = sub.add_parser("graph", help="build and save a label graph")
    g.add_argument(
        "pool", nargs="?", help="pool whose distinct labels become the nodes (see 'select')"
    )
    g.add_argument("--out", "-o", required=True, help="output .npz")
    g.add_argument("--vocabulary", help="labels file: nodes (no pool) or filter (with a pool)")
    g.add_argument("--labels-column", default="labels")
    g.add_argument("--split", default="train")
    _add_graph_args(g)
    _add_graph_limit_args(g)
    _add_graph_cache_arg(g)
    _add_overwrite_arg(g)
    g.set_defaults(func=cmd_graph)

    d = sub.add_parser("demo", help="tag, score, build the graph and select on a bundled pool")
    d.add_argument("--num", "-k", type=int, default=40, help="rows to select (default 40)")
    d.add_argument("--out", "-o", help="folder for the subset and the graph")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("methods", help="list the selection methods")
    m.set_defaults(func=cmd_methods)

    from hf_mig.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def parse_options(items: Sequence[str]) -> dict:
    """``["alpha=0.7", "column=ifd"]`` -> ``{"alpha": 0.7, "column": "ifd"}``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def _load_prepared(args, identity: dict | None = None):
    """The pool, loaded and prepared, and the vocabulary; ``identity``, when given, receives
    :func:`hf_mig.data.hub.pool_identity` of the pool as loaded (before preparation)."""
    from hf_mig.data.formats import load_vocabulary
    from hf_mig.data.io import load_pool
    from hf_mig.data.pool import prepare_pool

    vocabulary = load_vocabulary(args.vocabulary) if args.vocabulary else None
    pool = load_pool(args.pool, split=args.split, skip_bad_lines=args.skip_bad_lines)
    if identity is not None:
        from hf_mig.data.hub import pool_identity

        identity.update(pool_identity(pool, args.pool))
    pool = prepare_pool(
        pool,
        args.pool_format,
        vocabulary=vocabulary,
        reduce=args.score_reduce,
        labels_column=args.labels_column,
        score_column=args.score_column,
        num_proc=args.num_proc,
        strict=getattr(args, "method", "mig") == "mig",
    )
    return pool, vocabulary


def _select_outputs(args) -> list[tuple[str, str]]:
    """``(flag, path)`` of every file ``select`` will write, in the order it writes them."""
    from hf_mig.data.hub import card_path

    named = [
        ("--out", args.out),
        ("--indices-out", args.indices_out),
        ("--save-graph", args.save_graph),
        ("--summary-json", args.summary_json),
        ("the dataset card", str(card_path(args.out)) if args.card else None),
    ]
    return [(flag, path) for flag, path in named if path]


def _check_outputs(outputs: Sequence[tuple[str, str]], overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist (without ``--overwrite``) or repeat."""
    from pathlib import Path

    from hf_mig.data.io import check_output

    seen: dict = {}
    for flag, path in outputs:
        key = Path(path).expanduser().resolve()
        if key in seen:
            raise ValueError(f"{flag} and {seen[key]} name the same file: {path}")
        seen[key] = flag
        check_output(path, overwrite=overwrite)


def cmd_select(args) -> int:
    import numpy as np

    from hf_mig.core.graph import LabelGraph
    from hf_mig.core.summary import format_summary, selection_summary
    from hf_mig.data.hub import HubPushError, card_path, push_selection
    from hf_mig.data.io import atomic_output, save_dataset, write_text_atomic
    from hf_mig.selectors import get_selector

    start = time.perf_counter()
    token = None
    if args.push_to_hub:
        from huggingface_hub import constants

        from hf_mig.data.hub import check_repo_id, hub_token

        check_repo_id(args.push_to_hub)
        token = hub_token(args.token_env)
        for name in ("httpx", "httpx2"):  # one INFO line per request otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        if constants.HF_HUB_OFFLINE:
            logger.warning(
                "HF_HUB_OFFLINE is set: the selection will be written locally, but the upload "
                "to %s will fail; unset HF_HUB_OFFLINE to upload",
                args.push_to_hub,
            )
    elif args.private or args.token_env:
        raise ValueError("--private and --token-env apply to --push-to-hub, which is not given")
    _check_outputs(_select_outputs(args), args.overwrite)
    pool_info: dict = {}
    pool, vocabulary = _load_prepared(args, pool_info if args.card or args.push_to_hub else None)
    if args.method == "mig":
        options = dict(
            label_graph=LabelGraph.load(args.graph) if args.graph else None,
            embedder=args.embedder,
            threshold=args.threshold,
            phi=args.phi,
            phi_a=args.phi_a,
            phi_b=args.phi_b,
            phi_alpha=args.phi_alpha,
            prop_weight=args.prop_weight,
            norm=args.norm,
            gain=args.gain,
            labels_column=args.labels_column,
            score_column=args.score_column,
            vocabulary=vocabulary,
            record_gains=args.record_gains,
            overwrite_gain_columns=args.overwrite_gain_columns,
            graph_cache=args.graph_cache,
            engine=args.engine,
            **_graph_limits(args),
        )
        if args.min_coverage is not None:
            options["min_coverage"] = args.min_coverage
    else:
        from hf_mig.selectors import SELECTORS

        cls = SELECTORS.get(args.method)
        accepted = inspect.signature(cls.__init__).parameters if cls else {}
        common = dict(
            seed=args.seed,
            labels_column=args.labels_column,
            score_column=args.score_column,
            embedder=args.embedder,
            threshold=args.threshold,
        )
        options = {k: v for k, v in common.items() if k in accepted and v is not None}
    options.update(parse_options(args.option))
    try:
        selector = get_selector(args.method, args.num, **options)
    except TypeError as err:
        raise ValueError(f"method {args.method!r}: {err}") from err
    select_start = time.perf_counter()
    indices = np.asarray(selector.select_indices(pool), dtype=np.int64)
    select_seconds = time.perf_counter() - select_start
    subset = selector.rows(pool, indices)
    save_dataset(subset, args.out, overwrite=args.overwrite)
    if args.indices_out:
        record = {"positions": indices.tolist(), "pool_rows": len(pool), "method": args.method}
        write_text_atomic(args.indices_out, json.dumps(record) + "\n", overwrite=args.overwrite)
    if args.save_graph and getattr(selector, "label_graph_", None) is not None:
        with atomic_output(args.save_graph, overwrite=args.overwrite) as tmp:
            selector.label_graph_.save(tmp)
    summary = selection_summary(
        pool, indices, labels_column=args.labels_column, score_column=args.score_column
    )
    summary["method"] = args.method
    summary["select_seconds"] = round(select_seconds, 3)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    if hasattr(selector, "result_"):
        summary["lazy_greedy"] = selector.result_.stats
        summary["label_graph"] = {
            k: v for k, v in selector.label_graph_.stats().items() if k != "degree_histogram"
        }
        summary["encoding"] = selector.encoding_report_
    print(format_summary(summary))
    print(f"wrote {args.out} in {summary['seconds']:.1f} s")
    if args.summary_json:
        text = json.dumps(summary, indent=2, default=str) + "\n"
        write_text_atomic(args.summary_json, text, overwrite=args.overwrite)
    card = None
    if args.card or args.push_to_hub:
        card = _selection_card(args, pool_info, pool, indices, selector, summary, token)
    if args.card:
        path = card_path(args.out)
        write_text_atomic(path, str(card), overwrite=args.overwrite)
        print(f"wrote the dataset card {path}")
    if args.push_to_hub:
        try:
            url = push_selection(
                subset,
                args.push_to_hub,
                card,
                private=True if args.private else None,
                token=token,
                overwrite=args.overwrite,
            )
        except HubPushError as err:
            kept = ", ".join(path for _, path in _select_outputs(args))
            print(
                f"hf-mig select: error: {err} (the local outputs are kept: {kept})",
                file=sys.stderr,
            )
            return 3
        print(f"pushed to {url}")
    return 0


def _selection_card(args, pool_info: dict, pool, indices, selector, summary: dict, token):
    """The dataset card of this ``select`` run (see :mod:`hf_mig.data.hub`)."""
    import copy
    import shlex

    from hf_mig.data.hub import python_call, selection_card, selection_facts

    argv = getattr(args, "argv", None)
    shown = selector
    if getattr(args, "graph", None) and hasattr(selector, "label_graph"):
        shown = copy.copy(selector)
        shown.label_graph = args.graph  # the file, not the object loaded from it
    facts = selection_facts(
        pool,
        indices,
        selector,
        pool_info=pool_info,
        command=shlex.join(["hf-mig", *argv]) if argv is not None else None,
        python=python_call(shown),
        summary=summary,
    )
    return selection_card(facts, token=token)


def cmd_graph(args) -> int:
    from hf_mig.core.encoding import unique_labels
    from hf_mig.core.graph import LabelGraph
    from hf_mig.data.formats import load_vocabulary
    from hf_mig.data.io import atomic_output, check_output, load_pool
    from hf_mig.selectors.mig import arrow_columns

    check_output(args.out, overwrite=args.overwrite)
    vocabulary = load_vocabulary(args.vocabulary) if args.vocabulary else None
    if args.pool:
        pool = load_pool(args.pool, split=args.split)
        labels = unique_labels(arrow_columns(pool, [args.labels_column]), args.labels_column)
        if vocabulary is not None:
            allowed = set(vocabulary)
            labels = [label for label in labels if label in allowed]
    elif vocabulary is not None:
        labels = sorted(set(vocabulary))
    else:
        raise SystemExit("hf-mig graph: give a POOL, a --vocabulary file, or both")
    graph = LabelGraph.from_labels(
        labels,
        embedder=args.embedder,
        threshold=args.threshold,
        progress=True,
        cache=args.graph_cache,
        **_graph_limits(args),
    )
    with atomic_output(args.out, overwrite=args.overwrite) as tmp:
        graph.save(tmp)
    stats = graph.stats()
    print(
        f"label graph: {stats['num_labels']:,} labels, {stats['num_edges']:,} edges "
        f"(T={graph.threshold}), {stats['isolated_labels']:,} isolated, "
        f"max degree {stats['max_degree']} -> {args.out}"
    )
    return 0


def cmd_demo(args) -> int:
    from hf_mig.cli.demo import run_demo

    run_demo(k=args.num, out_dir=args.out)
    return 0


def cmd_methods(args) -> int:
    from hf_mig.selectors import SELECTORS

    for name in sorted(SELECTORS):
        doc = (SELECTORS[name].__doc__ or "").strip().splitlines()
        print(f"{name:<10} {doc[0] if doc else ''}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"hf-mig {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
