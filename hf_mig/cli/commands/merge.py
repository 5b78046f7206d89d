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

Response caches: each shard of ``hf-mig tag --shard I/N`` writes its own cache file
(``SHARDS_DIR/_cache/responses.shard-I-of-N.sqlite`` by default). Once OUT is written, merge
folds the files of the merged shards into the base cache (``SHARDS_DIR/_cache/responses.sqlite``;
``--cache PATH`` when the shards were given ``--cache PATH``), so any later run with that cache,
sharded or not, gets their responses back without asking again. The fold only adds results the
base lacks (keyed by content: folding twice adds nothing), in one transaction; the shard files
are kept (remove them once folded if you like). Files that Ray actors of a shard (or of a run on
the base cache) wrote and that their run did not fold, because its driver was killed
(``NAME.actor-TAG.sqlite`` beside the shard files), are folded as well, and kept.
``--no-fold-caches`` leaves the caches alone.
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
    parser.add_argument(
        "--cache",
        default=None,
        help="the response cache (folder or .sqlite file) the shards were given with --cache: "
        f"its shard files are folded into it (default: SHARDS_DIR/{CACHE_FOLDER})",
    )
    parser.add_argument(
        "--no-fold-caches",
        action="store_true",
        help="do not fold the shards' response cache files into the base cache",
    )


#: The cache folder ``hf-mig tag --shard`` uses inside the folder of shards by default.
CACHE_FOLDER = "_cache"


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

    from hf_mig.runtime.sharding import SHARD_MARKER, verify_shard

    ordered = complete_shards(shards_dir, num_shards)
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


def complete_shards(shards_dir: str | Path, num_shards: int | None = None) -> list[Any]:
    """The :class:`~hf_mig.runtime.sharding.ShardInfo` of every shard of one split of
    ``shards_dir``, in index order, after checking that they tile the pool (the errors of
    :func:`merge_shards`, the file checks excepted)."""
    from hf_mig.runtime.sharding import list_shards, shard_path

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
    return ordered


def shard_caches(args: argparse.Namespace, num_shards: int) -> tuple[Path, list[Path]]:
    """The base cache file and the cache files to fold into it (none with
    ``--no-fold-caches``): those of the ``num_shards`` shards, then the Ray actors' files of
    those shards and of the base; ``ValueError`` when ``--cache`` names a cache without any."""
    from hf_mig.models.generation.cache import (
        cache_file,
        shard_cache_files,
        shard_cache_path,
        worker_cache_files,
    )

    base = cache_file(args.cache or Path(args.shards_dir) / CACHE_FOLDER)
    if args.no_fold_caches:
        return base, []
    shards = [shard_cache_path(base, i, num_shards) for i in range(num_shards)]
    found = shard_cache_files(base, num_shards) + worker_cache_files([base, *shards])
    if args.cache and not found:
        raise ValueError(
            f"--cache {args.cache}: no shard cache files of {num_shards} shards beside {base} "
            f"({base.stem}.shard-I-of-{num_shards}{base.suffix})"
        )
    return base, found


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig merge``: OUT is checked first, every shard verified, then OUT written
    atomically (an OUT that may not be written raises :class:`hf_mig.data.io.OutputExistsError`),
    then the shards' response caches folded into the base cache."""
    from hf_mig.data.io import check_output, save_dataset
    from hf_mig.models.generation.cache import fold_caches, shard_cache_files
    from hf_mig.runtime.sharding import check_output_format

    out = check_output(check_output_format(args.out), overwrite=args.overwrite)
    num_shards = complete_shards(args.shards_dir, args.num_shards)[0].num_shards
    base, caches = shard_caches(args, num_shards)
    merged = merge_shards(args.shards_dir, num_shards)
    save_dataset(merged, out, overwrite=args.overwrite)
    print(f"merged the shards of {args.shards_dir}: wrote {len(merged):,} rows to {out}")
    if caches:
        added = fold_caches(base, caches)
        actors = len(set(caches) - set(shard_cache_files(base, num_shards)))
        left = f", {actors} of them left by Ray actors" if actors else ""
        print(
            f"folded {len(caches)} shard response cache(s) into {base}{left}: {added:,} new "
            "response(s) (the shard files are kept)"
        )
    return 0
