"""``hf-mig graph [POOL] -o GRAPH.npz``: build and save a label graph over a pool's labels
and/or a vocabulary."""

from __future__ import annotations

import argparse
from typing import Any

from hf_mig.cli import options


def register(subparsers: Any) -> None:
    """Add the ``graph`` subcommand."""
    g = options.add_command(subparsers, "graph", cmd_graph, help="build and save a label graph")
    options.add_pool_argument(
        g, "pool whose distinct labels become the nodes (see 'select')", nargs="?"
    )
    options.add_output_argument(g, "output .npz", flag=True)
    g.add_argument("--vocabulary", help="labels file: nodes (no pool) or filter (with a pool)")
    options.add_column_arguments(g, score=False)
    options.add_split_argument(g, help=None)
    options.add_label_graph_arguments(g)
    options.add_overwrite_argument(g)


def cmd_graph(args: argparse.Namespace) -> int:
    """Run ``hf-mig graph``."""
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
        **options.graph_limits(args),
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
