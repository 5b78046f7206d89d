"""Run any tagger or scorer over a pool on Ray Data: one model per actor, parquet parts, one output.

::

    from hf_mig.annotate.base import get_scorer
    from hf_mig.runtime.ray_data import map_on_ray

    map_on_ray(get_scorer("deita", model="smollm2"), "pool.jsonl", "scored.parquet",
               concurrency=4, num_gpus_per_worker=1)

``hf-mig tag|score POOL OUT --engine ray --ray-concurrency N --num-gpus-per-worker G`` runs the
same.

How it runs (:func:`ray_map`):

1. The pool is read with :func:`hf_mig.data.io.load_pool` (the readers of the local engine) and
   given a ``messages`` column (:func:`hf_mig.data.conversations.with_messages`); each row gets
   its position as a hidden id column, and the table goes to Ray in blocks of whole map batches.
2. ``map_batches`` runs the step in a pool of ``concurrency`` actors (:class:`StepActor`), each
   holding one copy of the step (one model, loaded on its first batch) with
   ``num_gpus_per_worker`` GPUs (Ray sets ``CUDA_VISIBLE_DEVICES``, so the model goes to the
   actor's ``cuda:0``). A batch is called as ``Dataset.map(..., batched=True,
   with_indices=True)`` calls it, with the pool positions as indices; its output columns (typed
   by :meth:`~hf_mig.annotate.base.MapStep.output_types`) are written by the actor to one parquet
   part named by the batch's first and last row id (written beside its name, then renamed). The
   driver shows a progress bar over the rows done.
3. Ray restarts an actor that dies and retries its batches (``max_restarts=-1``,
   ``max_task_retries=-1``, Ray Data's defaults for actor pools): a retried batch writes the same
   part again, so nothing is counted twice.
4. The driver reads the parts back, checks that every row id is there exactly once (a missing
   row is an error, a duplicate of a row is dropped), sorts by id and adds the output columns
   to the pool as ``Dataset.map`` does (a column the step returns under an existing name
   replaces it in place, new ones are appended). The result is written like the local engine's
   (:func:`hf_mig.runtime.sharding.run_sharded`: same format by extension, ``--shard``, atomic
   rename, ``--overwrite`` rules), so both engines give the same rows, order, columns and types.

The parquet parts live in a temporary folder beside OUT (or ``work_dir``), removed at the end;
on a cluster of several machines it must be on a file system every node sees.

**Response caches.** A step whose configuration names a response cache (the generative
:class:`~hf_mig.annotate.taggers.instag.InsTagTagger`) gets one SQLite file per actor,
``NAME.actor-RUN-K.SUFFIX`` beside the configured file ``NAME.SUFFIX``
(:func:`hf_mig.models.generation.cache.worker_cache_path`): each actor writes only its own file
and reads the configured file (and, for a shard's file, the base cache behind it) read-only, so
no SQLite file is written by two processes. When the run has finished (or failed), the driver
folds the actors' files into the configured file
(:func:`~hf_mig.models.generation.cache.fold_caches`) and removes them: the next run, local or
on Ray, finds every response there. Files of that cache left by an earlier run whose driver was
killed before folding are folded in when a run starts, so its actors read them too; they are
kept (another run may still be writing them): remove them once no run uses the cache (``hf-mig
merge`` folds them too).

Ray is optional (``pip install "hf-mig[ray]"``); it is imported when a run starts.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from hf_mig.annotate.base import MapStep

logger = logging.getLogger(__name__)

__all__ = [
    "RAY_INSTALL_HINT",
    "ROW_ID",
    "StepActor",
    "import_ray",
    "map_on_ray",
    "ray_map",
    "ray_session",
]

#: What to install for the Ray engine (named in the ImportError).
RAY_INSTALL_HINT = 'the Ray engine needs Ray Data: pip install "hf-mig[ray]" (or "ray[data]")'
#: Hidden column carrying each row's position through Ray.
ROW_ID = "__hf_mig_row_id__"
#: Batches per block handed to one actor task (fewer blocks: less scheduling; more: finer retries).
_BATCHES_PER_BLOCK = 4


def import_ray() -> Any:
    """Import and return ``ray`` with Ray Data; ``ImportError`` naming the extra when missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{RAY_INSTALL_HINT} ({err})") from err
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """``with ray_session(address) as ray:`` a connected Ray: the one already initialised in
    this process, else ``ray.init(address)`` (``None``: ``$RAY_ADDRESS`` when set, else a new
    local Ray), shut down on exit only when this context started it."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=True)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------
# the actor


def _typed_table(step: MapStep, ids: pa.Array, out: Mapping[str, Any]) -> pa.Table:
    """``out`` (a step's batch output) as a table with ``ROW_ID`` first, typed by the step."""
    try:
        types = step.output_types()
    except NotImplementedError:
        types = {}
    columns = {ROW_ID: ids}
    for name, values in out.items():
        kind = types.get(name) or getattr(values, "arrow_type", None)
        columns[name] = pa.array(list(values), type=kind)
    return pa.table(columns)


class StepActor:
    """The ``map_batches`` callable class: one step (one model) per Ray actor.

    ``__call__(batch)`` takes a pyarrow batch holding :data:`ROW_ID`, calls the step on it as
    ``Dataset.map(batched=True, with_indices=True)`` does (the ids are the indices), writes the
    output columns with the ids to ``parts_dir/part-<first>-<last>.parquet`` and returns the
    ids (for the driver's progress bar).
    """

    def __init__(self, step: MapStep, parts_dir: str, run_tag: str) -> None:
        self.step = _with_actor_cache(step, run_tag)
        self.parts_dir = Path(parts_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.parquet as pq

        ids = batch.column(ROW_ID).combine_chunks()
        rows = batch.drop_columns([ROW_ID]).to_pydict()
        out = self.step(rows, ids.to_pylist())
        table = _typed_table(self.step, ids, out)
        first, last = ids[0].as_py(), ids[-1].as_py()
        final = self.parts_dir / f"part-{first:012d}-{last:012d}.parquet"
        tmp = self.parts_dir / f".{final.name}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        return pa.table({ROW_ID: ids})


def _with_actor_cache(step: MapStep, run_tag: str) -> MapStep:
    """``step``, or a copy writing its own response-cache file when its configuration names one
    (see the module docstring); the copy is made through the step's pickled configuration."""
    from hf_mig.models.generation.cache import worker_cache_path

    target = _configured_cache(step)
    if target is None:
        return step
    own = worker_cache_path(target, f"{run_tag}-{uuid.uuid4().hex[:12]}")
    state = step.__getstate__()
    state["config"] = {**state["config"], "cache": str(own)}
    copy = type(step).__new__(type(step))
    copy.__setstate__(state)
    logger.info("this actor writes the response cache %s", own)
    return copy


def _configured_cache(step: MapStep) -> Path | None:
    """The response-cache file ``step``'s configuration names, if any."""
    from hf_mig.models.generation.cache import cache_file

    cache = step.config.get("cache")
    return cache_file(cache) if isinstance(cache, str) and cache else None


def _fold_actor_caches(step: MapStep, run_tag: str) -> None:
    """Fold the response-cache files the actors of run ``run_tag`` wrote into the step's
    configured cache file, then remove them (and their SQLite side files); nothing is removed
    when the fold fails."""
    from hf_mig.models.generation.cache import fold_caches, worker_cache_files

    target = _configured_cache(step)
    if target is None:
        return
    files = worker_cache_files([target], run_tag)
    if not files:
        return
    added = fold_caches(target, files)
    logger.info("folded %d actor response caches into %s (%d new)", len(files), target, added)
    for path in files:
        for each in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
            each.unlink(missing_ok=True)


def _fold_leftover_caches(step: MapStep) -> int:
    """Fold into the step's configured cache file the actor files of that cache that earlier
    runs left (a driver killed before its fold), keeping them; return how many responses were
    added. A file that cannot be read is named in a warning and skipped."""
    from hf_mig.models.generation.cache import fold_caches, worker_cache_files

    target = _configured_cache(step)
    if target is None:
        return 0
    added = 0
    for path in worker_cache_files([target]):
        try:
            added += fold_caches(target, [path])
        except (ValueError, FileNotFoundError, sqlite3.Error) as err:  # unreadable, folded
            # meanwhile, or the cache busy with another run: the next run folds it
            logger.warning("leftover actor response cache not folded: %s", err)
    if added:
        logger.info("folded %d responses of earlier runs' actor caches into %s", added, target)
    return added


def _end_run(step: MapStep, run_tag: str, failed: bool) -> None:
    """Fold run ``run_tag``'s actor caches (:func:`_fold_actor_caches`). After a failed run an
    error of the fold is logged, not raised: the run's own error is the one the caller sees."""
    try:
        _fold_actor_caches(step, run_tag)
    except Exception:
        if not failed:
            raise
        logger.exception(
            "the run failed, and folding its actors' response caches failed too (their files "
            "are kept, and the next run folds them)"
        )


# --------------------------------------------------------------------------------------
# the driver


def _blocks(table: pa.Table, batch_size: int, concurrency: int) -> list[pa.Table]:
    """``table`` cut into blocks of whole batches: ``_BATCHES_PER_BLOCK`` batches each, fewer
    when that leaves an actor without a block."""
    n = table.num_rows
    batches = math.ceil(n / batch_size)
    per_block = max(1, min(_BATCHES_PER_BLOCK, batches // max(1, concurrency)))
    size = per_block * batch_size
    return [table.slice(start, size) for start in range(0, n, size)]


def _read_parts(parts_dir: Path, n: int) -> pa.Table:
    """The parts' rows sorted by id, each id ``0..n-1`` exactly once (``RuntimeError`` when one
    is missing; a duplicate of an id is dropped)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(parts_dir.glob("part-*.parquet"))
    if not files:
        raise RuntimeError(f"{parts_dir}: the Ray run wrote no output part for {n:,} rows")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.sort_by(ROW_ID)
    ids = table.column(ROW_ID).to_numpy()
    keep = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    if len(keep) != len(ids):
        logger.warning("dropping %d rows written twice by retried batches", len(ids) - len(keep))
        table = table.take(pa.array(keep))
    found = table.column(ROW_ID)
    if table.num_rows != n or (n and (pc.min(found).as_py(), pc.max(found).as_py()) != (0, n - 1)):
        raise RuntimeError(
            f"the Ray run returned {table.num_rows:,} distinct rows of {n:,}: rows are missing"
        )
    return table.drop_columns([ROW_ID])


def _with_outputs(ds: datasets.Dataset, outputs: pa.Table) -> datasets.Dataset:
    """``ds`` with the columns of ``outputs`` as ``Dataset.map`` adds them: a column of the same
    name is replaced where it stands, the others are appended in order."""
    table = ds.with_format("arrow")[:]
    for name in outputs.column_names:
        column = outputs.column(name)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return datasets.Dataset(table)


def ray_map(
    step: MapStep,
    ds: datasets.Dataset,
    parts_dir: str | os.PathLike,
    *,
    concurrency: int = 1,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    batch_size: int = 256,
    progress: bool = True,
) -> datasets.Dataset:
    """``ds.map(step, batched=True, with_indices=True, batch_size=batch_size)`` run on Ray
    (batches are cut smaller when that leaves an actor without rows).

    Needs a connected Ray (:class:`ray_session`). ``parts_dir`` is an empty folder (seen by
    every node) for the parquet parts; see the module docstring for how the work is spread and
    put back together. ``concurrency`` actors each hold one step with ``num_gpus_per_worker``
    GPUs (fractions share a GPU) and ``num_cpus_per_worker`` CPUs. Returns the annotated
    dataset (in memory): same rows, order, columns and types as the local ``Dataset.map``.
    Raises ``ValueError`` for bad sizes or a pool holding the column :data:`ROW_ID`, and
    ``RuntimeError`` when rows are missing from the parts.
    """
    from tqdm.auto import tqdm

    for name, value in (("concurrency", concurrency), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_gpus_per_worker < 0 or num_cpus_per_worker < 0:
        raise ValueError("num_gpus_per_worker and num_cpus_per_worker must be >= 0")
    if ROW_ID in ds.column_names:
        raise ValueError(f"the pool has a column {ROW_ID!r}, which the Ray engine uses itself")
    n = len(ds)
    if n == 0:
        return ds.map(step, batched=True, with_indices=True, batch_size=batch_size)
    ray = import_ray()
    batch_size = min(batch_size, math.ceil(n / concurrency))  # every actor gets rows
    table = ds.with_format("arrow")[:]
    table = table.append_column(ROW_ID, pa.array(range(n), type=pa.int64()))
    run_tag = uuid.uuid4().hex[:12]
    _fold_leftover_caches(step)
    mapped = ray.data.from_arrow(_blocks(table, batch_size, concurrency)).map_batches(
        StepActor,
        fn_constructor_args=(step, str(parts_dir), run_tag),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=num_gpus_per_worker or None,
        num_cpus=num_cpus_per_worker,
        zero_copy_batch=True,
    )
    context = ray.data.DataContext.get_current()
    shown, context.enable_progress_bars = context.enable_progress_bars, False
    try:
        with tqdm(total=n, desc=f"{step.name or type(step).__name__} (ray)", unit="row",
                  disable=not progress) as bar:  # fmt: skip
            for done in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
                bar.update(done.num_rows)
    except BaseException:
        context.enable_progress_bars = shown
        _end_run(step, run_tag, failed=True)  # the responses are kept
        raise
    context.enable_progress_bars = shown
    _end_run(step, run_tag, failed=False)
    return _with_outputs(ds, _read_parts(Path(parts_dir), n))


def map_on_ray(
    step: MapStep,
    source: str | os.PathLike | datasets.Dataset,
    out: str | os.PathLike,
    *,
    concurrency: int = 1,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    batch_size: int = 256,
    ray_address: str | None = None,
    shard: str | tuple[int, int] | None = None,
    overwrite: bool = False,
    split: str = "train",
    skip_bad_lines: bool = False,
    messages_column: str = "messages",
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Any:
    """Annotate ``source`` with ``step`` on Ray and write ``out``, as ``hf-mig tag|score
    --engine ray`` does; returns the :class:`hf_mig.runtime.sharding.ShardRun`.

    Args:
        step: any registered tagger or scorer (a :class:`~hf_mig.annotate.base.MapStep`).
        source: a pool as :func:`hf_mig.data.io.load_pool` reads it (``.jsonl``/``.json``/
            ``.parquet``/``.csv`` file, saved folder, Hub id) or a ``datasets.Dataset``.
        out: the output, written like the local engine's (format by extension; with ``shard``,
            the folder of shards).
        concurrency: actors, each with one copy of the step's model.
        num_gpus_per_worker, num_cpus_per_worker: Ray resources of each actor.
        batch_size: rows per step call.
        ray_address: the Ray cluster (``None``: the Ray of this process, else ``$RAY_ADDRESS``,
            else a new local Ray, shut down at the end).
        shard, overwrite: as :func:`hf_mig.runtime.sharding.run_sharded` (``"I/N"``: shard I only).
        split, skip_bad_lines: as :func:`~hf_mig.data.io.load_pool`.
        messages_column: column of the conversations, renamed to ``messages``.
        work_dir: folder of the parquet parts (default: a temporary folder beside OUT, removed
            at the end); on several machines, a file system every node sees.
        progress: show the progress bar.

    OUT is checked before the pool is read (:func:`~hf_mig.runtime.sharding.check_run_output`);
    ``ImportError`` with the install line when Ray is missing, before any work.
    """
    from hf_mig.data.atomic import temporary_folder
    from hf_mig.data.conversations import with_messages
    from hf_mig.data.io import load_pool
    from hf_mig.runtime.sharding import check_run_output, run_sharded

    import_ray()
    inputs = [] if isinstance(source, datasets.Dataset) else [source]
    path = check_run_output(out, shard, overwrite=overwrite, inputs=inputs)
    if isinstance(source, datasets.Dataset):
        pool = source
    else:
        pool = load_pool(source, split=split, skip_bad_lines=skip_bad_lines)
    options = {
        "concurrency": concurrency,
        "num_gpus_per_worker": num_gpus_per_worker,
        "num_cpus_per_worker": num_cpus_per_worker,
        "batch_size": batch_size,
        "progress": progress,
    }
    parts_base = Path(work_dir) if work_dir is not None else path.parent
    with ray_session(ray_address), temporary_folder(parts_base / f"{path.name}.ray-parts") as tmp:

        def process(ds: datasets.Dataset) -> datasets.Dataset:
            return ray_map(step, with_messages(ds, messages_column), tmp, **options)

        return run_sharded(pool, out, process, shard, overwrite=overwrite)
