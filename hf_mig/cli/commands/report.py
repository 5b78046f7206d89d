"""``hf-mig report POOL --out DIR``: an HTML report of what one or more selections cover.

::

    hf-mig report pool.jsonl --selection mig=mig.jsonl --selection deita=deita_ids.txt \\
        --out report/ --graph graph.npz
    hf-mig report pool.jsonl --method mig:200 --method random:200 --graph graph.npz --out report/

``--selection NAME=FILE`` reads a selected subset (any format ``hf-mig select`` writes, matched to
the pool on the id column), a file of ids (one per line, or a JSON list), or the row positions
``hf-mig select --indices-out`` writes (pools without ids). ``--method NAME:K``
selects ``K`` rows with that method on the fly; for ``mig`` the greedy trace is reported too.
``DIR`` receives ``report.html`` (figures embedded), the PNG figures and ``report.json``; report
files already there are replaced only with ``--overwrite``. A positions file must come from this
pool: its ``pool_rows`` must equal the pool's length and its positions be distinct rows of it.

MIG's information per label (``x(S)`` and ``E(S)``) is computed with ``--graph`` (or, without
it, the graph an on-the-fly ``mig`` built; with neither: no propagation) and the MIG options
``--prop-weight``, ``--norm`` and ``--phi*``, which an on-the-fly ``mig`` also runs with.

The page lists each selection's first ``--first-picks`` rows (default 10) with their request,
labels, score and MIG gain (known for an on-the-fly ``mig`` and for subsets written with
``hf-mig select --record-gains``), and where the label and score columns, the graph and each
selection came from: ``--tagger`` / ``--scorer`` state how the pool was annotated (otherwise
what its columns show, else "unknown").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from hf_mig.cli.options import (
    add_column_arguments,
    add_output_argument,
    add_overwrite_argument,
    add_pool_argument,
    add_pool_format_argument,
    add_split_argument,
)
from hf_mig.cli.selector_flags import add_selector_arguments, method_parameters, selector_flags

NAME = "report"
HELP = "HTML report (with PNGs and JSON) of what selections cover of a pool"
#: The MIG options ``report`` measures the information with (and ``--method`` selects with).
MIG_OPTIONS = ("seed", "phi", "phi_a", "phi_b", "phi_alpha", "prop_weight", "norm")
MIG_OPTION_HELP = {
    "seed": "seed of methods that take one",
    "phi": "MIG's phi",
    "phi_a": None,
    "phi_b": None,
    "phi_alpha": None,
    "prop_weight": "weight of graph edges in P",
    "norm": "divide scores by the number of labels",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pool, the selections (files and methods run now), the output and the MIG options."""
    add_pool_argument(parser, "pool: .jsonl/.json/.parquet/.csv file, dataset folder or Hub id")
    add_split_argument(parser)
    add_pool_format_argument(parser, "pool schema (as for 'hf-mig select')")
    parser.add_argument(
        "--selection",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a selected subset or a file of ids; repeat for several",
    )
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="NAME:K",
        help="select K rows with this method now (e.g. mig:200, random:200); repeatable",
    )
    add_output_argument(
        parser, "folder for report.html, the PNGs and report.json", flag=True, short=False
    )
    parser.add_argument("--graph", help="label graph (LabelGraph.save / 'hf-mig graph')")
    add_column_arguments(parser)
    parser.add_argument("--id-column", default=None, help="column matching selections to the pool")
    add_selector_arguments(parser, selector_flags(), only=MIG_OPTIONS, help=MIG_OPTION_HELP)
    parser.add_argument("--title", default="hf-mig selection report")
    parser.add_argument(
        "--first-picks",
        type=int,
        default=10,
        metavar="N",
        help="picks of each selection listed with their text (default 10; 0: none)",
    )
    for name, made in (("tagger", "labels column"), ("scorer", "score column")):
        parser.add_argument(
            f"--{name}",
            default=None,
            metavar="TEXT",
            help=f"how the {made} was made, shown in the report (default: what the pool's "
            "columns show, else unknown)",
        )
    add_overwrite_argument(parser, "replace the report files already in --out (refused otherwise)")


def parse_selection(item: str) -> tuple[str, str]:
    """``NAME=FILE`` -> ``(NAME, FILE)``; a bare ``FILE`` is named after its stem."""
    name, sep, path = item.partition("=")
    if not sep:
        return Path(item).stem, item
    if not name or not path:
        raise ValueError(f"--selection expects NAME=FILE, got {item!r}")
    return name, path


def parse_method(item: str) -> tuple[str, int]:
    """``NAME:K`` -> ``(NAME, K)``."""
    name, sep, k = item.partition(":")
    try:
        num = int(k)
    except ValueError:
        num = -1
    if not sep or not name or num <= 0:
        raise ValueError(f"--method expects NAME:K with K > 0, e.g. mig:200; got {item!r}")
    return name, num


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig report``."""
    from hf_mig.annotate.graph import LabelGraph
    from hf_mig.core.objective import Objective
    from hf_mig.data.io import check_output
    from hf_mig.report import REPORT_FILES

    selections_in, methods = _parse_requests(args)
    for name in REPORT_FILES:
        check_output(Path(args.out) / name, overwrite=args.overwrite)
    start = time.perf_counter()
    # every selection file is read (and checked) before the pool, then matched to it
    selections, constraints = _read_selection_files(selections_in)
    pool = _load_report_pool(args, methods)
    gains, described = _match_selection_files(pool, selections_in, selections, args.id_column)
    graph = LabelGraph.load(args.graph) if args.graph else None
    graph_source = f"file {args.graph}" if args.graph else None
    objective = Objective(args.phi, args.phi_a, args.phi_b, args.phi_alpha)
    mig_result, graph, graph_source = _select_now(
        pool, methods, selections, described, args, graph, graph_source
    )
    page = _write_report(
        args,
        pool,
        selections,
        label_graph=graph,
        mig_result=mig_result,
        objective=objective,
        gains=gains,
        constraints=constraints,
        provenance={
            "tagger": args.tagger,
            "scorer": args.scorer,
            "graph": graph_source,
            "selections": described,
        },
    )
    print(f"report of {', '.join(selections)} -> {page} ({time.perf_counter() - start:.1f}s)")
    return 0


def _parse_requests(
    args: argparse.Namespace,
) -> tuple[list[tuple[str, str]], list[tuple[str, int]]]:
    """The ``--selection`` files as ``(NAME, FILE)`` and the ``--method`` runs as ``(NAME, K)``;
    ``ValueError`` when there is neither or ``--first-picks`` is negative."""
    if not args.selection and not args.method:
        raise ValueError("nothing to report on: give --selection NAME=FILE and/or --method NAME:K")
    if args.first_picks < 0:
        raise ValueError(f"--first-picks must be >= 0, got {args.first_picks}")
    return [parse_selection(s) for s in args.selection], [parse_method(m) for m in args.method]


def _claim_name(selections: dict[str, Any], name: str) -> None:
    """``ValueError`` when ``name`` already names a selection."""
    if name in selections:
        raise ValueError(f"selection name {name!r} given twice")


def _read_selection_files(
    selections_in: list[tuple[str, str]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each ``(NAME, FILE)`` read as :func:`hf_mig.report.read_selection_file` reads it, by
    name, and the facts its card records (:func:`hf_mig.report.read_selection_facts`), by name;
    ``ValueError`` for a name given twice."""
    from hf_mig.report import read_selection_facts, read_selection_file

    selections: dict[str, Any] = {}
    for name, path in selections_in:
        _claim_name(selections, name)
        selections[name] = read_selection_file(path)
    constraints = {name: read_selection_facts(path) for name, path in selections_in}
    return selections, constraints


def _load_report_pool(args: argparse.Namespace, methods: list[tuple[str, int]]) -> Any:
    """The pool in its ``--pool-format``, checked strictly when ``mig`` is run on it now."""
    from hf_mig.data.io import load_pool
    from hf_mig.data.pool import prepare_pool

    pool = load_pool(args.pool, split=args.split)
    return prepare_pool(
        pool,
        args.pool_format,
        labels_column=args.labels_column,
        score_column=args.score_column,
        strict=any(name == "mig" for name, _ in methods),
    )


def _match_selection_files(
    pool: Any,
    selections_in: list[tuple[str, str]],
    selections: dict[str, Any],
    id_column: str | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Replaces each file's selection in ``selections`` by its rows of ``pool`` (a positions
    file is read again, checked against the pool's length); returns the gains the files
    record, by name, and how each selection was made (``file PATH``). A selection that does
    not match the pool raises ``ValueError`` naming its file."""
    import numpy as np

    from hf_mig.report import read_selection_file, resolve_selection, selection_gains

    gains: dict[str, Any] = {}
    described: dict[str, str] = {}
    for name, path in selections_in:
        if isinstance(selections[name], np.ndarray):  # positions: written for this pool?
            selections[name] = read_selection_file(path, pool_rows=len(pool))
        described[name] = f"file {path}"
        picked_gains = selection_gains(selections[name])
        if picked_gains is not None:
            gains[name] = picked_gains
        try:
            selections[name] = resolve_selection(
                pool, selections[name], id_column=id_column, name=name
            )
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
    return gains, described


def _method_options(method: str, args: argparse.Namespace, graph: Any) -> dict[str, Any]:
    """The options ``--method METHOD`` selects with: for ``mig`` the graph, the columns and
    the MIG options; for another method the seed and columns it accepts."""
    if method == "mig":
        return dict(
            label_graph=graph,
            labels_column=args.labels_column,
            score_column=args.score_column,
            **{key: getattr(args, key) for key in MIG_OPTIONS if key != "seed"},
        )
    accepted = method_parameters(method)
    common = dict(seed=args.seed, labels_column=args.labels_column, score_column=args.score_column)
    return {key: v for key, v in common.items() if key in accepted}


def _select_now(
    pool: Any,
    methods: list[tuple[str, int]],
    selections: dict[str, Any],
    described: dict[str, str],
    args: argparse.Namespace,
    graph: Any,
    graph_source: str | None,
) -> tuple[Any, Any, str | None]:
    """Runs each ``--method NAME:K`` on ``pool``, adding its picks to ``selections`` (named
    ``NAME``, or ``NAME-K`` when ``NAME`` is taken) and how it was made to ``described``.
    Returns the first ``mig`` run's result (or ``None``) and the graph the report measures
    with and its source: ``graph``, or, when that is ``None``, the graph the first ``mig`` run
    built from the pool (which later ``mig`` runs then select with)."""
    from hf_mig.selectors import get_selector

    mig_result = None
    for method, k in methods:
        name = method if method not in selections else f"{method}-{k}"
        _claim_name(selections, name)
        options = _method_options(method, args, graph)
        selector = get_selector(method, k, **options)
        selections[name] = selector.select_indices(pool)
        shown = {key: v for key, v in options.items() if key not in ("label_graph",)}
        described[name] = (
            f"--method {method}:{k}, selected now ("
            + ", ".join(f"{key}={v}" for key, v in shown.items())
            + ")"
        )
        if method == "mig" and mig_result is None:
            mig_result = selector.result_
            if graph is None:
                graph = selector.label_graph_
                graph_source = f"built by --method {method}:{k} from the pool's labels"
    return mig_result, graph, graph_source


def _write_report(
    args: argparse.Namespace, pool: Any, selections: dict[str, Any], **measured: Any
) -> Path:
    """:func:`hf_mig.report.build_report` into ``--out`` with the command's columns, MIG
    options, title, ``--first-picks`` and ``--overwrite``, and ``measured`` (the graph, the MIG
    run, the objective, gains, constraints and provenance); returns the page's path."""
    from hf_mig.report import build_report

    return build_report(
        pool,
        selections,
        args.out,
        labels_column=args.labels_column,
        score_column=args.score_column,
        id_column=args.id_column,
        prop_weight=args.prop_weight,
        norm=args.norm,
        title=args.title,
        overwrite=args.overwrite,
        first_picks=args.first_picks,
        **measured,
    )
