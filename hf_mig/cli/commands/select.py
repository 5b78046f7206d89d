"""``hf-mig select POOL -k K -o OUT``: select rows of a pool with a method and write them out.

The method's options are flags read from the selectors' signatures
(:mod:`hf_mig.cli.selector_flags`); ``--option KEY=VALUE`` sets any option by name.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from hf_mig.cli.options import (
    add_label_graph_arguments,
    add_output_argument,
    add_overwrite_argument,
    add_pool_arguments,
    parse_pair,
    parse_value,
)
from hf_mig.cli.selector_flags import add_selector_arguments, remember_defaults, selector_flags

logger = logging.getLogger("hf_mig")

NAME = "select"
HELP = "select rows of a pool and write them out"
DESCRIPTION = None

#: Help of the selector options that have their own wording (others: generated, or none).
OPTION_HELP = {
    "seed": "random method: seed",
    "phi": None,
    "phi_a": None,
    "phi_b": None,
    "phi_alpha": None,
    "prop_weight": None,
    "norm": "divide scores by the number of labels",
    "gain": None,
    "engine": None,
    "record_gains": "add mig_rank and mig_gain columns",
    "overwrite_gain_columns": "with --record-gains, replace mig_rank/mig_gain columns the pool "
    "already has",
    "min_coverage": "mig: least share of rows with a label in the graph (default 0.5; 0 disables)",
    "budget": "mig: most total cost (--cost-column, e.g. tokens) the picks may use; --num, when "
    "given, also caps the rows",
    "cost_column": "mig: per-row cost column read with --budget (default num_tokens)",
    "quota_column": "mig: column holding each row's group, read with --quota (default source)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pool, ``-k``, ``--out``, the method and its options, the label graph, the reports."""
    add_pool_arguments(parser)
    parser.add_argument(
        "--num",
        "-k",
        type=int,
        default=None,
        help="number of rows to select (with --budget: the most rows; may be left out)",
    )
    add_output_argument(parser, "output file (.jsonl/.json/.parquet/.csv) or folder", flag=True)
    parser.add_argument("--method", default="mig", help="selection method (see 'hf-mig methods')")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra selector option (repeatable); VALUE is parsed as JSON when it can be",
    )
    parser.add_argument("--graph", help="label graph saved by 'hf-mig graph' / LabelGraph.save")
    add_label_graph_arguments(parser)
    parser.add_argument("--save-graph", help="also save the label graph built from the pool here")
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="mig: read POOL (a Parquet file or a folder of them) in batches, never loading it: "
        "labels and scores are encoded into memory-mapped files cached by content, and a "
        "second pass writes the picks (pools larger than memory; the pool must hold the label "
        "and score columns; no --quota, no dataset card)",
    )
    flags = selector_flags()
    method_options = parser.add_argument_group(
        "options of the selection methods",
        "each applies to the methods it names and, unset, leaves their default; "
        "--option KEY=VALUE sets any option by name",
    )
    add_selector_arguments(
        method_options,
        flags,
        skip=("label_graph", "explain", "quotas"),
        help=OPTION_HELP,
        defaults={"min_coverage": None},
    )
    method_options.add_argument(
        "--quota",
        dest="quotas",
        action="append",
        default=[],
        metavar="NAME=MIN:MAX",
        help="mig: picks from group NAME of --quota-column between MIN and MAX (repeatable): "
        "counts, or shares of --num with a '.' (e.g. 0.25); an empty side is unbounded "
        "(a=2: means at least 2); groups not named are unbounded. The minimums are met first",
    )
    remember_defaults(parser, flags)
    _add_report_arguments(parser)
    add_overwrite_argument(parser)


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``select`` writes besides the subset: summary, positions, card, Hub upload."""
    parser.add_argument(
        "--explain",
        dest="explain_picks",
        type=int,
        default=0,
        metavar="N",
        help="mig: also print why the first N picks were picked: each gain and the labels that "
        "contributed most to it (the row's own labels, or neighbours in the label graph); "
        "'--option explain=M' instead adds a mig_why column with the top M labels",
    )
    parser.add_argument("--summary-json", help="write the selection summary (JSON) here")
    parser.add_argument(
        "--indices-out",
        help="also write the selected rows' 0-based positions in the pool, in pick order: "
        'JSON {"positions": [...], "pool_rows": N, "method": M} (\'hf-mig report --selection '
        "NAME=FILE' reads it; works for pools without an id column)",
    )
    parser.add_argument(
        "--no-card",
        dest="card",
        action="store_false",
        help="do not write the selection's dataset card beside --out (OUT with .README.md "
        "appended, e.g. subset.jsonl.README.md: the pool's fingerprint and hash, method and "
        "options, coverage, the command that reproduces it)",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="also upload the selection, with its dataset card, as the train split of the Hub "
        "dataset REPO ('user/name'), after every local output is written; a failed upload "
        "exits with status 3 and keeps the local outputs. An existing repository is refused "
        "unless --overwrite",
    )
    parser.add_argument(
        "--private", action="store_true", help="--push-to-hub: create the repository private"
    )
    parser.add_argument(
        "--token-env",
        metavar="NAME",
        help="--push-to-hub: read the Hub token from environment variable NAME (default: "
        "HF_TOKEN or the login of 'hf auth login'); the token is never printed or written",
    )


def parse_options(items: Sequence[str]) -> dict:
    """``["alpha=0.7", "column=ifd"]`` -> ``{"alpha": 0.7, "column": "ifd"}``."""
    options = {}
    for item in items:
        key, value = parse_pair(item, "--option")
        options[key.replace("-", "_")] = parse_value(value)
    return options


def parse_quotas(items: Sequence[str]) -> dict | None:
    """``["a=2:5", "b=:0.3"]`` -> ``{"a": (2, 5), "b": (None, 0.3)}``; ``None`` when empty."""
    if not items:
        return None
    quotas: dict = {}
    for item in items:
        name, bounds = parse_pair(item, "--quota", form="NAME=MIN:MAX")
        low, found, high = bounds.partition(":")
        if not found or name in quotas:
            why = "a second time" if found else "without MIN:MAX"
            raise ValueError(f"--quota names group {name!r} {why}: {item!r}")
        quotas[name] = (_quota_bound(low, item), _quota_bound(high, item))
    return quotas


def _quota_bound(text: str, item: str) -> int | float | None:
    """One side of ``--quota``: empty -> ``None``, a count, or a share (with a ``.``)."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise ValueError(
            f"--quota expects NAME=MIN:MAX with counts or shares (e.g. a=2:5, b=0.1:0.5), got "
            f"{item!r}"
        ) from None


def load_prepared(args: argparse.Namespace, identity: dict | None = None) -> tuple[Any, Any]:
    """The pool, loaded and prepared (:func:`hf_mig.train.data.load_prepared_pool`), and the
    vocabulary; ``identity``, when given, receives :func:`hf_mig.data.hub.pool_identity` of the
    pool as loaded (before preparation)."""
    from hf_mig.train.config import POOL_FIELDS, DataConfig
    from hf_mig.train.data import load_prepared_pool

    config = DataConfig(**{name: getattr(args, name) for name in POOL_FIELDS})
    strict = getattr(args, "method", "mig") == "mig"
    raw, pool, vocabulary = load_prepared_pool(config, num_proc=args.num_proc, strict=strict)
    if identity is not None:
        from hf_mig.data.hub import pool_identity

        identity.update(pool_identity(raw, args.pool))
    return pool, vocabulary


def select_outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
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


def check_outputs(outputs: Sequence[tuple[str, str]], overwrite: bool) -> None:
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


def _hub_token(args: argparse.Namespace) -> str | None:
    """Check the ``--push-to-hub`` arguments before any work; the token to upload with."""
    if not args.push_to_hub:
        if args.private or args.token_env:
            raise ValueError("--private and --token-env apply to --push-to-hub, which is not given")
        return None
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
    return token


def _selector(args: argparse.Namespace, vocabulary: Any) -> Any:
    """The selector the arguments ask for: the method's flags set on the command line, the
    loaded label graph and vocabulary, then ``--option`` values."""
    from hf_mig.annotate.graph import LabelGraph
    from hf_mig.cli.selector_flags import method_parameters, selector_options
    from hf_mig.selectors import get_selector

    given = {"vocabulary": vocabulary, "quotas": parse_quotas(getattr(args, "quotas", []))}
    if given["quotas"] and "quotas" not in method_parameters(args.method):
        raise ValueError(f"--quota applies to --method mig, not {args.method!r}")
    if args.graph and "label_graph" in method_parameters(args.method):
        given["label_graph"] = LabelGraph.load(args.graph)
    options = selector_options(args, args.method, given)
    options.update(parse_options(args.option))
    try:
        return get_selector(args.method, args.num, **options)
    except TypeError as err:
        raise ValueError(f"method {args.method!r}: {err}") from err


def _check_method_flags(args: argparse.Namespace) -> None:
    """Refuse, before any work, selector flags set on the command line that ``--method`` does
    not take (they would be ignored)."""
    from hf_mig.cli.selector_flags import flags_not_taken
    from hf_mig.selectors import SELECTORS
    from hf_mig.train.config import POOL_FIELDS

    known = args.method in SELECTORS
    ignored = flags_not_taken(args, args.method, skip=POOL_FIELDS) if known else []
    if ignored:
        raise ValueError(
            "; ".join(
                f"{flag.option} applies to --method {' or '.join(flag.methods)}, not "
                f"{args.method!r}"
                for flag in ignored
            )
            + ": drop the flag or pick a method that takes it"
        )


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig select``: 0, or 3 when only the Hub upload failed."""
    import numpy as np

    from hf_mig.core.summary import format_summary, selection_summary
    from hf_mig.data.io import save_dataset

    start = time.perf_counter()
    if args.num is None and getattr(args, "budget", None) is None:
        raise ValueError("-k/--num is required (it may be left out only with --budget)")
    _check_method_flags(args)
    if getattr(args, "streaming", False):
        return run_streaming(args, start)
    token = _hub_token(args)
    check_outputs(select_outputs(args), args.overwrite)
    pool_info: dict = {}
    pool, vocabulary = load_prepared(args, pool_info if args.card or args.push_to_hub else None)
    selector = _selector(args, vocabulary)
    explain = _check_explain(args, selector)
    select_start = time.perf_counter()
    indices = np.asarray(selector.select_indices(pool), dtype=np.int64)
    select_seconds = time.perf_counter() - select_start
    subset = selector.rows(pool, indices)
    save_dataset(subset, args.out, overwrite=args.overwrite)
    _write_side_outputs(args, selector, indices, len(pool))
    summary = selection_summary(
        pool, indices, labels_column=args.labels_column, score_column=args.score_column
    )
    summary["method"] = args.method
    summary["select_seconds"] = round(select_seconds, 3)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    summary.update(_greedy_facts(selector))
    print(format_summary(summary))
    explained = ""
    if explain:
        from hf_mig.report.selections import detect_id_column

        explained = explain_table(selector.explanations(explain), pool, detect_id_column(pool))
    _report(args, summary, explained)
    card = None
    if args.card or args.push_to_hub:
        card = _selection_card(args, pool_info, pool, indices, selector, summary, token)
    return _write_card_and_push(args, subset, card, token)


def _check_streaming(args: argparse.Namespace) -> None:
    """Refuse, before any work, what ``--streaming`` cannot do."""
    refused = {
        "--method other than mig": args.method != "mig",
        "--format mig-authors": args.pool_format == "mig-authors",
        "--skip-bad-lines": bool(args.skip_bad_lines),
        "--quota": bool(getattr(args, "quotas", None)),
        "--push-to-hub": bool(args.push_to_hub),
    }
    given = [name for name, on in refused.items() if on]
    if given:
        raise ValueError(
            f"--streaming reads a Parquet pool in batches with MIG; it does not take {given[0]} "
            "(load the pool in memory instead: leave out --streaming)"
        )


def run_streaming(args: argparse.Namespace, start: float) -> int:
    """``hf-mig select --streaming``: MIG over a Parquet pool that is never loaded whole."""
    from hf_mig.data.resources import load_vocabulary
    from hf_mig.data.streaming import StreamingPool, write_rows

    _check_streaming(args)
    args.card = False
    check_outputs(select_outputs(args), args.overwrite)
    pool = StreamingPool(args.pool, split=args.split)
    vocabulary = load_vocabulary(args.vocabulary) if args.vocabulary else None
    selector = _selector(args, vocabulary)
    explain = _check_explain(args, selector)
    select_start = time.perf_counter()
    indices = selector.select_streaming(pool)
    select_seconds = time.perf_counter() - select_start
    write_rows(pool, indices, args.out, overwrite=args.overwrite, finish=selector.rows)
    rows = selector.encoding_report_["rows"]
    _write_side_outputs(args, selector, indices, rows)
    summary = {
        "pool_rows": rows,
        "selected_rows": int(indices.size),
        "method": args.method,
        "streaming": True,
        "select_seconds": round(select_seconds, 3),
        "seconds": round(time.perf_counter() - start, 3),
        **_greedy_facts(selector),
        "score_collapse": selector.score_collapse_,
    }
    print(f"selected {summary['selected_rows']:,} of {rows:,} rows (streaming; no dataset card)")
    _report(args, summary, explain_table(selector.explanations(explain)) if explain else "")
    return 0


def _write_side_outputs(args: argparse.Namespace, selector: Any, indices: Any, rows: int) -> None:
    """``--indices-out`` (the picks' positions among the pool's ``rows``) and ``--save-graph``
    (the label graph the selector used, when it has one), each written beside and renamed."""
    from hf_mig.data.io import atomic_output, write_text_atomic

    if args.indices_out:
        record = {"positions": indices.tolist(), "pool_rows": rows, "method": args.method}
        write_text_atomic(args.indices_out, json.dumps(record) + "\n", overwrite=args.overwrite)
    if args.save_graph and getattr(selector, "label_graph_", None) is not None:
        with atomic_output(args.save_graph, overwrite=args.overwrite) as tmp:
            selector.label_graph_.save(tmp)


def _greedy_facts(selector: Any) -> dict[str, Any]:
    """What a MIG run adds to the summary (the greedy's stats, the graph's, the encoding
    report); nothing for methods without a greedy."""
    if not hasattr(selector, "result_"):
        return {}
    graph = selector.label_graph_.stats()
    return {
        "lazy_greedy": selector.result_.stats,
        "label_graph": {k: v for k, v in graph.items() if k != "degree_histogram"},
        "encoding": selector.encoding_report_,
    }


def _report(args: argparse.Namespace, summary: dict, explained: str) -> None:
    """Print where the selection went, the ``--explain`` table when there is one, and write
    ``--summary-json``."""
    from hf_mig.data.io import write_text_atomic

    print(f"wrote {args.out} in {summary['seconds']:.1f} s")
    if explained:
        print(explained)
    if args.summary_json:
        text = json.dumps(summary, indent=2, default=str) + "\n"
        write_text_atomic(args.summary_json, text, overwrite=args.overwrite)


def _check_explain(args: argparse.Namespace, selector: Any) -> int:
    """``--explain N``, checked before any work: ``N``, or 0 when not asked."""
    n = getattr(args, "explain_picks", 0)
    if n < 0:
        raise ValueError(f"--explain must be an integer >= 0, got {n}")
    if n and not hasattr(selector, "explanations"):
        raise ValueError(f"--explain applies to --method mig, not {args.method!r}")
    return n


def explain_table(
    explanations: Sequence[Any], pool: Any = None, id_column: str | None = None
) -> str:
    """Why each pick was picked, as text: rank (1-based), pool row, id (with ``id_column``),
    gain and the top labels with their contribution and share of the gain; ``*`` marks the
    row's own labels, the others are neighbours reached through the label graph."""
    lines = [
        "why these picks (gain split by label; * = the row's own label, else a neighbour):",
        f"{'rank':>5}  {'row':>7}  {'id':<16}  {'gain':>10}  top labels",
    ]
    for e in explanations:
        row_id = str(pool[e.row][id_column]) if pool is not None and id_column else ""
        labels = ", ".join(
            f"{d['label']}{'*' if d['own'] else ''} {d['contribution']:.4g} ({d['share']:.0%})"
            for d in e.labels
        )
        lines.append(
            f"{e.rank + 1:>5}  {e.row:>7}  {row_id[:16]:<16}  {e.gain:>10.4g}  {labels or '-'}"
        )
    return "\n".join(lines)


def _write_card_and_push(args: argparse.Namespace, subset: Any, card: Any, token: Any) -> int:
    """Write the dataset card beside ``--out`` and upload (``--push-to-hub``); 3 when the
    upload fails (the local outputs are kept), else 0."""
    from hf_mig.data.hub import HubPushError, card_path, push_selection
    from hf_mig.data.io import write_text_atomic

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
            kept = ", ".join(path for _, path in select_outputs(args))
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
