"""``hf-mig vocab POOL --out vocab.json``: build a tag vocabulary from a tagged pool.

::

    hf-mig vocab tagged.jsonl --out vocab.json --min-count 2 --merge-threshold 0.9 --top-k 5000
    hf-mig vocab tagged.jsonl --out vocab.json --labels-out labels.json   # + a plain list
    hf-mig select tagged.jsonl --vocabulary labels.json ...

Normalises the raw tags of ``--labels-column`` (lower-case, noun lemmas), drops those seen in
fewer than ``--min-count`` rows, merges near-duplicates (cosine >= ``--merge-threshold`` with
``--embedder``; connected components, most frequent member kept) and keeps the ``--top-k`` most
frequent (see :class:`hf_mig.annotate.vocabulary.TagVocabulary`). Prints the size after each stage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hf_mig.annotate.vocabulary import LEMMATIZERS
from hf_mig.cli.options import (
    add_output_argument,
    add_pool_argument,
    add_skip_bad_lines_argument,
    add_split_argument,
)

NAME = "vocab"
HELP = "build a tag vocabulary (normalise, filter, merge, top-k) from a tagged pool"
#: The ``TagVocabulary.build`` options set by flags of the same name.
BUILD_OPTIONS = ("min_count", "merge_threshold", "top_k", "embedder", "lemmatizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pool, ``--out``, the :data:`BUILD_OPTIONS` and the extra outputs."""
    add_pool_argument(parser, "pool with a labels column (file, saved folder or Hub id)")
    add_output_argument(parser, "vocabulary JSON to write", flag=True)
    parser.add_argument(
        "--labels-column",
        default="labels",
        help="column of raw tags (a dotted path such as annotation.instag.content works)",
    )
    parser.add_argument(
        "--min-count", type=int, default=2, help="keep tags seen in >= this many rows"
    )
    parser.add_argument(
        "--merge-threshold",
        type=float,
        default=None,
        help="merge tags whose embedding cosine is >= this (default: no merging)",
    )
    parser.add_argument("--top-k", type=int, default=None, help="keep the K most frequent tags")
    parser.add_argument("--embedder", default=None, help="embedder for merging (default MiniLM)")
    parser.add_argument(
        "--lemmatizer",
        default="auto",
        choices=list(LEMMATIZERS),
        help="auto: lemminflect when installed, else the built-in plural rules",
    )
    parser.add_argument("--labels-out", default=None, help="also write the tags as a JSON list")
    parser.add_argument("--report-json", default=None, help="also write the stage sizes as JSON")
    add_split_argument(parser, None)
    add_skip_bad_lines_argument(parser, None)


def _labels(pool: Any, column: str) -> list[Any]:
    """The rows of ``column`` (a dotted path into nested structs works too)."""
    if column in pool.column_names:
        return pool[column]
    flat = pool.flatten()
    if column in flat.column_names:
        return flat[column]
    raise ValueError(
        f"the pool has no {column!r} column (columns: {pool.column_names}); set --labels-column"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig vocab``."""
    from hf_mig.annotate.vocabulary import TagVocabulary
    from hf_mig.data.io import load_pool

    pool = load_pool(args.pool, split=args.split, skip_bad_lines=args.skip_bad_lines)
    options = {name: getattr(args, name) for name in BUILD_OPTIONS}
    vocab = TagVocabulary.build(_labels(pool, args.labels_column), progress=True, **options)
    vocab.save(args.out)
    print(vocab.format_report())
    print(f"wrote {len(vocab):,} tags -> {args.out}")
    if args.labels_out:
        Path(args.labels_out).write_text(
            json.dumps(vocab.labels, ensure_ascii=False, indent=0), encoding="utf-8"
        )
        print(f"wrote the tag list -> {args.labels_out}")
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(vocab.report(), indent=1), encoding="utf-8")
    return 0
