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


def register(subparsers: Any) -> None:
    """Add the ``vocab`` subcommand."""
    p = subparsers.add_parser(
        "vocab",
        help="build a tag vocabulary (normalise, filter, merge, top-k) from a tagged pool",
        description=__doc__.split("::")[0].strip() if __doc__ else None,
    )
    p.add_argument("pool", help="pool with a labels column (file, saved folder or Hub id)")
    p.add_argument("--out", "-o", required=True, help="vocabulary JSON to write")
    p.add_argument(
        "--labels-column",
        default="labels",
        help="column of raw tags (a dotted path such as annotation.instag.content works)",
    )
    p.add_argument("--min-count", type=int, default=2, help="keep tags seen in >= this many rows")
    p.add_argument(
        "--merge-threshold",
        type=float,
        default=None,
        help="merge tags whose embedding cosine is >= this (default: no merging)",
    )
    p.add_argument("--top-k", type=int, default=None, help="keep the K most frequent tags")
    p.add_argument("--embedder", default=None, help="embedder for merging (default MiniLM)")
    p.add_argument(
        "--lemmatizer",
        default="auto",
        choices=["auto", "lemminflect", "rules", "none"],
        help="auto: lemminflect when installed, else the built-in plural rules",
    )
    p.add_argument("--labels-out", default=None, help="also write the tags as a JSON list")
    p.add_argument("--report-json", default=None, help="also write the stage sizes as JSON")
    p.add_argument("--split", default="train")
    p.add_argument("--skip-bad-lines", action="store_true")
    p.set_defaults(func=cmd_vocab)


def _labels(pool: Any, column: str) -> list[Any]:
    if column in pool.column_names:
        return pool[column]
    flat = pool.flatten()
    if column in flat.column_names:
        return flat[column]
    raise ValueError(
        f"the pool has no {column!r} column (columns: {pool.column_names}); set --labels-column"
    )


def cmd_vocab(args: argparse.Namespace) -> int:
    """Run ``hf-mig vocab``."""
    from hf_mig.annotate.vocabulary import TagVocabulary
    from hf_mig.data.io import load_pool

    pool = load_pool(args.pool, split=args.split, skip_bad_lines=args.skip_bad_lines)
    vocab = TagVocabulary.build(
        _labels(pool, args.labels_column),
        min_count=args.min_count,
        merge_threshold=args.merge_threshold,
        top_k=args.top_k,
        embedder=args.embedder,
        lemmatizer=args.lemmatizer,
        progress=True,
    )
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
