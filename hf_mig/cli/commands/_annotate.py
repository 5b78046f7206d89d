"""What ``hf-mig tag`` and ``hf-mig score`` share: their pool, output, map, shard and engine
arguments, the checks made before any work, and the run of an annotation step: a sharded
``Dataset.map`` (``--engine local``) or Ray Data actors (``--engine ray``,
:func:`hf_mig.runtime.ray_data.map_on_ray`), which write the same output."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from hf_mig.cli.options import (
    SHARD_OVERWRITE_HELP,
    add_num_proc_argument,
    add_output_arguments,
    add_pool_argument,
    add_skip_bad_lines_argument,
    add_split_argument,
)

POOL_HELP = "pool: .jsonl/.json/.parquet/.csv file, saved folder or Hub id"


def add_run_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """``pool``, ``out`` and ``--overwrite``, ``--split``, ``--skip-bad-lines``,
    ``--messages-column``, ``--map-batch-size``, ``--num-proc`` and ``--shard`` (``verb`` words
    its help: ``score shard I of N only``)."""
    add_pool_argument(parser, POOL_HELP)
    add_output_arguments(parser, overwrite_help=SHARD_OVERWRITE_HELP)
    add_split_argument(parser)
    add_skip_bad_lines_argument(parser)
    parser.add_argument("--messages-column", default="messages")
    parser.add_argument(
        "--map-batch-size", type=int, default=256, help="rows per Dataset.map batch (default 256)"
    )
    add_num_proc_argument(parser)
    parser.add_argument("--shard", default=None, metavar="I/N", help=f"{verb} shard I of N only")
    add_engine_arguments(parser)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine`` (``local``: ``Dataset.map``; ``ray``: Ray Data actors) and the Ray options
    ``--ray-concurrency``, ``--num-gpus-per-worker``, ``--num-cpus-per-worker``,
    ``--ray-address``."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: Dataset.map in this process (default); ray: Ray Data actors, one model "
        'each (pip install "hf-mig[ray]")',
    )
    group.add_argument(
        "--ray-concurrency",
        type=int,
        default=1,
        metavar="N",
        help="ray: actors, each holding one copy of the model (default 1)",
    )
    group.add_argument(
        "--num-gpus-per-worker",
        type=float,
        default=0.0,
        metavar="G",
        help="ray: GPUs of each actor (default 0; fractions share a GPU)",
    )
    group.add_argument(
        "--num-cpus-per-worker",
        type=float,
        default=1.0,
        metavar="C",
        help="ray: CPUs of each actor (default 1)",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        help="ray: cluster address (default: $RAY_ADDRESS, else a new local Ray)",
    )


def check_run(args: argparse.Namespace, positive: Sequence[str]) -> None:
    """Check, before any work: the integer flags ``positive`` (those given) are >= 1, so is
    ``--num-proc``, and OUT may be written (:func:`hf_mig.runtime.sharding.check_run_output`)."""
    from hf_mig.runtime.sharding import check_run_output

    for name in positive:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.num_proc is not None and args.num_proc < 1:
        raise ValueError(f"--num-proc must be >= 1, got {args.num_proc}")
    if args.engine == "ray":
        from hf_mig.runtime.ray_data import import_ray

        if args.num_proc is not None and args.num_proc > 1:
            raise ValueError("--num-proc is for --engine local; with ray use --ray-concurrency")
        if args.ray_concurrency < 1:
            raise ValueError(f"--ray-concurrency must be >= 1, got {args.ray_concurrency}")
        for flag in ("num_gpus_per_worker", "num_cpus_per_worker"):
            if getattr(args, flag) < 0:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 0")
        import_ray()  # ImportError with the install line, before any work
    check_run_output(args.out, args.shard, overwrite=args.overwrite, inputs=[args.pool])


def map_processes(args: argparse.Namespace) -> int | None:
    """``Dataset.map``'s ``num_proc``: ``--num-proc`` when it is above 1, else ``None``."""
    return args.num_proc if args.num_proc and args.num_proc > 1 else None


def run_step(
    args: argparse.Namespace,
    step: Any,
    *,
    desc: str,
    with_indices: bool,
    with_rank: bool,
    load_from_cache_file: bool,
) -> Any:
    """Load the pool, give it a ``messages`` column and map ``step`` over it (batched), into OUT
    or its ``--shard``, with ``--engine``; returns the
    :func:`hf_mig.runtime.sharding.run_sharded` result."""
    if args.engine == "ray":
        from hf_mig.runtime.ray_data import map_on_ray

        return map_on_ray(
            step,
            args.pool,
            args.out,
            concurrency=args.ray_concurrency,
            num_gpus_per_worker=args.num_gpus_per_worker,
            num_cpus_per_worker=args.num_cpus_per_worker,
            batch_size=args.map_batch_size,
            ray_address=args.ray_address,
            shard=args.shard,
            overwrite=args.overwrite,
            split=args.split,
            skip_bad_lines=args.skip_bad_lines,
            messages_column=args.messages_column,
        )
    from hf_mig.data.conversations import with_messages
    from hf_mig.data.io import load_pool
    from hf_mig.runtime.sharding import run_sharded

    pool = load_pool(args.pool, split=args.split, skip_bad_lines=args.skip_bad_lines)

    def process(ds: Any) -> Any:
        ds = with_messages(ds, args.messages_column)
        return ds.map(
            step,
            batched=True,
            batch_size=args.map_batch_size,
            with_indices=with_indices,
            with_rank=with_rank,
            num_proc=map_processes(args),
            load_from_cache_file=load_from_cache_file,
            desc=desc,
        )

    return run_sharded(pool, args.out, process, args.shard, overwrite=args.overwrite)


def shard_prefix(run: Any) -> str:
    """``"shard I/N "`` for a sharded run, else ``""``."""
    return f"shard {run.index}/{run.num_shards} " if run.index is not None else ""
