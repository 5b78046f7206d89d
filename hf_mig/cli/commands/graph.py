"""``hf-mig graph [POOL] -o GRAPH.npz``: build and save a label graph over a pool's labels
and/or a vocabulary."""

from __future__ import annotations

import argparse

from hf_mig.cli import options

NAME = "graph"
HELP = "build and save a label graph"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pool and/or ``--vocabulary``, ``--out``, the label graph's options."""
    options.add_pool_argument(
        parser, "pool whose distinct labels become the nodes (see 'select')", nargs="?"
    )
    options.add_output_argument(parser, "output .npz", flag=True)
    parser.add_argument("--vocabulary", help="labels file: nodes (no pool) or filter (with a pool)")
    options.add_column_arguments(parser, score=False)
    options.add_split_argument(parser, help=None)
    options.add_label_graph_arguments(parser)
    options.add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig graph``."""
    from hf_mig.annotate.graph import LabelGraph
    from hf_mig.core.encoding import unique_labels
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
