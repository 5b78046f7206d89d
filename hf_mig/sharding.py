"""Split a long annotation job (tagging, scoring) into shards that run anywhere and resume.

A pool of N rows is cut into ``num_shards`` contiguous shards (``Dataset.shard(num_shards=n,
index=i, contiguous=True)``: shard sizes differ by at most one row, and concatenating the shards
in index order gives the pool back in order). ``hf-mig tag POOL OUT --shard 3/16`` processes
shard 3 only and writes it to ``OUT/shard-3-of-16`` — so 16 jobs of any scheduler (or 16 GPUs)
can share the work, and ``hf-mig merge OUT`` joins the shards.

A shard folder is written under a temporary name and renamed when complete, and it holds
``hf_mig_shard.json`` (index, shard count, row range, row count). A folder with that name
therefore always holds a complete shard: a re-run skips it, and an interrupted run leaves only a
temporary folder (removed by the next run of that shard).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

__all__ = [
    "SHARD_MARKER",
    "ShardInfo",
    "ShardRun",
    "is_complete_shard",
    "list_shards",
    "parse_shard",
    "run_sharded",
    "shard_bounds",
    "shard_dataset",
    "shard_path",
]

logger = logging.getLogger(__name__)

#: File written into every complete shard folder.
SHARD_MARKER = "hf_mig_shard.json"

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_NAME = re.compile(r"^shard-(\d+)-of-(\d+)$")
_TMP_PREFIX = ".tmp-"


def parse_shard(spec: str | tuple[int, int]) -> tuple[int, int]:
    """``"3/16"`` -> ``(3, 16)``: shard index ``I`` (0-based) of ``N`` shards.

    A ``(i, n)`` tuple is validated and returned. Raises ``ValueError`` unless ``0 <= I < N``.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(f"shard must be (index, num_shards), got {spec!r}")
        i, n = spec
    else:
        match = _SPEC.match(str(spec))
        if match is None:
            raise ValueError(f"shard must look like I/N (e.g. 0/4), got {spec!r}")
        i, n = int(match.group(1)), int(match.group(2))
    if isinstance(i, bool) or isinstance(n, bool) or not isinstance(i, int):
        raise ValueError(f"shard index and count must be integers, got {spec!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of shards must be >= 1, got {n!r}")
    if not 0 <= i < n:
        raise ValueError(f"shard index must be in [0, {n - 1}] for {n} shards, got {i}")
    return i, n


def shard_bounds(num_rows: int, index: int, num_shards: int) -> tuple[int, int]:
    """``(start, stop)`` rows of contiguous shard ``index`` of ``num_shards`` (as ``datasets``
    cuts them: the first ``num_rows % num_shards`` shards get one extra row)."""
    index, num_shards = parse_shard((index, num_shards))
    size, extra = divmod(num_rows, num_shards)
    start = size * index + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def shard_dataset(ds: datasets.Dataset, index: int, num_shards: int) -> datasets.Dataset:
    """Contiguous shard ``index`` of ``num_shards`` of ``ds`` (``Dataset.shard(...,
    contiguous=True)``); an empty dataset with the same columns when ``num_shards > len(ds)``
    leaves this shard no row (where ``Dataset.shard`` raises)."""
    index, num_shards = parse_shard((index, num_shards))
    start, stop = shard_bounds(len(ds), index, num_shards)
    if start == stop:
        return ds.select([])
    return ds.shard(num_shards=num_shards, index=index, contiguous=True)


def shard_path(out: str | os.PathLike, index: int, num_shards: int) -> Path:
    """``OUT/shard-I-of-N``."""
    index, num_shards = parse_shard((index, num_shards))
    return Path(out) / f"shard-{index}-of-{num_shards}"


def is_complete_shard(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished shard folder (it holds :data:`SHARD_MARKER`)."""
    return (Path(path) / SHARD_MARKER).is_file()


@dataclass(frozen=True)
class ShardInfo:
    """A complete shard folder found by :func:`list_shards`, with its marker's content."""

    index: int
    num_shards: int
    path: Path
    rows: int
    start: int
    stop: int
    source_rows: int


def list_shards(out: str | os.PathLike) -> list[ShardInfo]:
    """Complete shards in folder ``out``, sorted by ``(num_shards, index)``.

    Folders named ``shard-I-of-N`` without a marker (not finished) and temporary folders are
    ignored. Raises ``FileNotFoundError`` when ``out`` is not a folder and ``ValueError`` when a
    marker is unreadable or disagrees with its folder name.
    """
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of shards")
    found: list[ShardInfo] = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match is None or not child.is_dir() or not is_complete_shard(child):
            continue
        try:
            meta = json.loads((child / SHARD_MARKER).read_text(encoding="utf-8"))
            info = ShardInfo(
                index=int(meta["index"]),
                num_shards=int(meta["num_shards"]),
                path=child,
                rows=int(meta["rows"]),
                start=int(meta["start"]),
                stop=int(meta["stop"]),
                source_rows=int(meta["source_rows"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{child / SHARD_MARKER}: unreadable shard marker: {err}") from err
        if (info.index, info.num_shards) != (int(match.group(1)), int(match.group(2))):
            raise ValueError(f"{child}: its marker says shard {info.index}/{info.num_shards}")
        found.append(info)
    return sorted(found, key=lambda s: (s.num_shards, s.index))


@dataclass
class ShardRun:
    """The outcome of :func:`run_sharded`.

    ``dataset`` is the processed dataset (``None`` when the shard was skipped); ``path`` where
    it was written; ``index``/``num_shards`` are ``None`` for an unsharded run.
    """

    path: Path
    skipped: bool
    dataset: datasets.Dataset | None
    index: int | None = None
    num_shards: int | None = None
    start: int = 0
    stop: int = 0

    def load(self) -> datasets.Dataset:
        """The written dataset (the processed one, or the saved shard when skipped)."""
        if self.dataset is not None:
            return self.dataset
        from hf_mig.io import load_pool

        return load_pool(self.path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: Path, name: str) -> None:
    """Remove temporary folders of ``name`` left by dead processes on this machine."""
    prefix = f"{_TMP_PREFIX}{name}-"
    for child in parent.glob(f"{prefix}*"):
        pid_text = child.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        logger.info("removing an unfinished earlier attempt: %s", child)
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _temp_path(final: Path) -> Path:
    stamp = f"{os.getpid()}-{time.time_ns()}"
    return final.parent / f"{_TMP_PREFIX}{final.name}-{stamp}{final.suffix}"


def run_sharded(
    ds: datasets.Dataset,
    out: str | os.PathLike,
    fn: Callable[[datasets.Dataset], datasets.Dataset],
    shard: str | tuple[int, int] | None = None,
) -> ShardRun:
    """Apply ``fn`` to ``ds`` (or to one shard of it) and write the result atomically.

    * ``shard=None``: ``fn(ds)`` is written to ``out`` with :func:`hf_mig.io.save_dataset`
      (format by extension), first under a temporary name in the same folder, then renamed.
    * ``shard="I/N"`` (or ``(I, N)``): ``out`` is a folder; if ``out/shard-I-of-N`` is already
      complete, nothing runs (``skipped=True``). Otherwise ``fn`` gets the contiguous shard, and
      the result is saved (``save_to_disk``) with its :data:`SHARD_MARKER` into a temporary
      folder that is renamed to ``out/shard-I-of-N`` when complete. Temporary folders of dead
      earlier attempts are removed first. If another job finished the same shard meanwhile, its
      result is kept and this one dropped.

    ``fn`` must return a :class:`datasets.Dataset`. Raises ``ValueError`` for a malformed
    ``shard``, or when ``out`` names a data file (``.jsonl``...) while sharding.
    """
    from hf_mig.io import DATA_FILE_BUILDERS, save_dataset

    if shard is None:
        result = fn(ds)
        _check(result)
        final = Path(out).expanduser()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_path(final)
        try:
            save_dataset(result, tmp)
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()
        return ShardRun(path=final, skipped=False, dataset=result, stop=len(ds))

    index, num_shards = parse_shard(shard)
    root = Path(out).expanduser()
    if root.suffix.lower() in DATA_FILE_BUILDERS:
        raise ValueError(
            f"with a shard, OUT is a folder of shards (OUT/shard-I-of-N), not a "
            f"{root.suffix} file: {root}"
        )
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder")
    final = shard_path(root, index, num_shards)
    start, stop = shard_bounds(len(ds), index, num_shards)
    if is_complete_shard(final):
        logger.info("shard %d/%d is already complete at %s: skipped", index, num_shards, final)
        return ShardRun(final, True, None, index, num_shards, start, stop)
    if final.exists():
        raise ValueError(
            f"{final} exists but is not a complete shard (no {SHARD_MARKER}); remove it and "
            "run again"
        )
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, final.name)
    part = shard_dataset(ds, index, num_shards)
    result = fn(part)
    _check(result)
    tmp = _temp_path(final)
    try:
        result.save_to_disk(str(tmp))
        import hf_mig

        marker = {
            "index": index,
            "num_shards": num_shards,
            "rows": len(result),
            "start": start,
            "stop": stop,
            "source_rows": len(ds),
            "hf_mig_version": hf_mig.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / SHARD_MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete_shard(final):
                raise
            logger.warning("shard %s was completed by another job meanwhile; keeping it", final)
            return ShardRun(final, True, None, index, num_shards, start, stop)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ShardRun(final, False, result, index, num_shards, start, stop)


def _check(result: Any) -> None:
    if not isinstance(result, datasets.Dataset):
        raise TypeError(f"fn must return a datasets.Dataset, got {type(result).__name__}")
