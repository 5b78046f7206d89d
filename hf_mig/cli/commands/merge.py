"""``hf-mig merge SHARDS_DIR OUT``: join the shards written by ``--shard I/N`` runs.

::

    hf-mig score pool.jsonl scored/ --scorer deita --shard 0/4     # ... and 1/4, 2/4, 3/4
    hf-mig merge scored/ scored.parquet

The complete ``shard-I-of-N`` folders (those holding ``hf_mig_shard.json``) are concatenated in
index order, which gives the pool's rows back in order. Fails, naming them, when shards are
missing or unfinished, or when the folder holds shards of several ``N`` (pick one with
``--num-shards``). Every file of every shard is checked against the size and sha256 recorded in
its marker before anything is written; a mismatch names the shard folder and the file. OUT is
written beside its final name and renamed, so a failed merge leaves no output; an existing OUT
is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hf_mig.cli.options import add_output_arguments

NAME = "merge"
HELP = "concatenate shard-I-of-N folders in order"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``SHARDS_DIR``, ``OUT``, ``--overwrite`` and ``--num-shards``."""
    parser.add_argument("shards_dir", help="folder holding shard-I-of-N folders")
    add_output_arguments(
        parser,
        overwrite_help="replace an existing OUT written by hf-mig (a file, or a folder holding "
        "only a saved dataset)",
    )
    parser.add_argument(
        "--num-shards", type=int, default=None, help="N, when the folder holds several splits"
    )


def merge_shards(shards_dir: str | Path, num_shards: int | None = None) -> Any:
    """Concatenate the complete shards of ``shards_dir`` in index order; returns a ``Dataset``.

    Every shard is checked with :func:`hf_mig.runtime.sharding.verify_shard` (each file's size and
    sha256 against its marker) before it is loaded, and its row count against the marker after.

    Raises ``FileNotFoundError`` when the folder does not exist, ``ValueError`` when it holds no
    complete shard, shards of several counts (without ``num_shards``), missing or unfinished
    shards (named, with their expected folders), shards whose row ranges do not tile the pool,
    or a shard whose files are missing, truncated or changed (naming the folder and the file).
    """
    import datasets

    from hf_mig.runtime.sharding import SHARD_MARKER, list_shards, shard_path, verify_shard

    root = Path(shards_dir)
    shards = list_shards(root)
    if num_shards is not None:
        shards = [s for s in shards if s.num_shards == num_shards]
    counts = sorted({s.num_shards for s in shards})
    if not counts:
        wanted = f" of {num_shards}" if num_shards is not None else ""
        raise ValueError(f"{root}: no complete shard{wanted} (shard-I-of-N with hf_mig_shard.json)")
    if len(counts) > 1:
        raise ValueError(
            f"{root} holds shards of {', '.join(map(str, counts))} splits; choose with --num-shards"
        )
    n = counts[0]
    have = {s.index for s in shards}
    missing = [i for i in range(n) if i not in have]
    if missing:
        unfinished = [i for i in missing if shard_path(root, i, n).exists()]
        names = ", ".join(shard_path(root, i, n).name for i in missing[:20])
        more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
        note = (
            f"; unfinished (no hf_mig_shard.json): {', '.join(map(str, unfinished))}"
            if unfinished
            else ""
        )
        raise ValueError(
            f"{root}: {len(missing)} of {n} shards missing: {names}{more}{note}; run them "
            f"(--shard I/{n}) and merge again"
        )
    ordered = sorted(shards, key=lambda s: s.index)
    expected = 0
    for info in ordered:
        if info.start != expected or info.stop - info.start != info.rows:
            raise ValueError(
                f"{info.path}: rows {info.start}..{info.stop} ({info.rows} rows) do not follow "
                f"the previous shard (expected a start of {expected}); were the shards made from "
                "the same pool?"
            )
        expected = info.stop
    sources = {info.source_rows for info in ordered}
    if len(sources) != 1 or expected != sources.pop():
        raise ValueError(f"{root}: the shards disagree on the pool's size; same pool?")
    for info in ordered:
        verify_shard(info)
    parts = []
    for info in ordered:
        part = datasets.load_from_disk(str(info.path))
        if not isinstance(part, datasets.Dataset) or len(part) != info.rows:
            found = len(part) if isinstance(part, datasets.Dataset) else type(part).__name__
            raise ValueError(
                f"{info.path}: holds {found} rows, its {SHARD_MARKER} says {info.rows}"
            )
        parts.append(part)
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig merge``: OUT is checked first, every shard verified, then OUT written
    atomically (an OUT that may not be written raises :class:`hf_mig.data.io.OutputExistsError`)."""
    from hf_mig.data.io import check_output, save_dataset
    from hf_mig.runtime.sharding import check_output_format

    out = check_output(check_output_format(args.out), overwrite=args.overwrite)
    merged = merge_shards(args.shards_dir, args.num_shards)
    save_dataset(merged, out, overwrite=args.overwrite)
    print(f"merged the shards of {args.shards_dir}: wrote {len(merged):,} rows to {out}")
    return 0
