"""Split a long annotation job (tagging, scoring) into shards that run anywhere and resume.

A pool of N rows is cut into ``num_shards`` contiguous shards (``Dataset.shard(num_shards=n,
index=i, contiguous=True)``: shard sizes differ by at most one row, and concatenating the shards
in index order gives the pool back in order). ``hf-mig tag POOL OUT --shard 3/16`` processes
shard 3 only and writes it to ``OUT/shard-3-of-16`` — so 16 jobs of any scheduler (or 16 GPUs)
can share the work, and ``hf-mig merge OUT`` joins the shards.

A shard folder is written under a temporary name and renamed when complete, and it holds
``hf_mig_shard.json`` (index, shard count, row range, row count, and the size and sha256 of
every other file of the folder, checked by :func:`verify_shard` before a merge). A folder with
that name therefore always holds a complete shard: a re-run skips it, and an interrupted run
leaves only a temporary folder ``.shard-I-of-N.hf-mig-tmp-HOST-PID-NS`` (removed by the next run
of that shard on the same host once process PID has ended). Nothing else in ``OUT`` is ever
removed or replaced: ``OUT`` may hold other files.

Response caches. Shards may run on several hosts over a network file system, where one SQLite
file must not be written from several hosts. Each shard therefore writes its own cache file,
:func:`shard_cache_location` (``CACHE/responses.shard-I-of-N.sqlite`` for a cache folder,
``NAME.shard-I-of-N.sqlite`` beside a ``NAME.sqlite`` file), and reads the base cache file
read-only when it exists (:mod:`hf_mig.models.generation.cache`), so earlier results are still
hits. ``hf-mig merge`` folds the shard files into the base cache
(:func:`hf_mig.models.generation.cache.fold_caches`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from hf_mig.data.atomic import HOST as _HOST  # noqa: F401 (this host, as in temporary names)
from hf_mig.data.atomic import rename_or_keep, replace_folder, stale_temporaries, temporary_folder

__all__ = [
    "SHARD_MARKER",
    "ShardInfo",
    "ShardRun",
    "check_output_format",
    "check_run_output",
    "is_complete_shard",
    "list_shards",
    "parse_shard",
    "run_sharded",
    "shard_bounds",
    "shard_cache_location",
    "shard_dataset",
    "shard_path",
    "verify_shard",
]

logger = logging.getLogger(__name__)

#: File written into every complete shard folder.
SHARD_MARKER = "hf_mig_shard.json"

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_NAME = re.compile(r"^shard-(\d+)-of-(\d+)$")
#: Files ``Dataset.save_to_disk`` writes into a folder (besides ``data-*.arrow``).
_SAVED_FILES = frozenset({"state.json", "dataset_info.json"})
#: Suffixes of files ``save_dataset`` cannot write (a path ending so would become a folder).
_UNWRITTEN_SUFFIXES = frozenset(
    {
        ".arrow", ".bz2", ".feather", ".gz", ".jsonlines", ".ndjson", ".npy", ".npz", ".pickle",
        ".pkl", ".pq", ".tar", ".tgz", ".tsv", ".txt", ".xlsx", ".xz", ".zip", ".zst",
    }
)  # fmt: skip


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


def shard_cache_location(
    cache: str | os.PathLike | None, shard: str | tuple[int, int] | None
) -> str | None:
    """The response cache a run writes: ``cache`` itself unsharded (``shard=None``), else the
    shard's own file (:func:`hf_mig.models.generation.cache.shard_cache_path`), which reads
    ``cache`` read-only; ``None`` (no cache) stays ``None``."""
    if cache is None:
        return None
    if shard is None:
        return str(cache)
    from hf_mig.models.generation.cache import shard_cache_path

    return str(shard_cache_path(cache, *parse_shard(shard)))


def is_complete_shard(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished shard folder (it holds :data:`SHARD_MARKER`)."""
    return (Path(path) / SHARD_MARKER).is_file()


@dataclass(frozen=True)
class ShardInfo:
    """A complete shard folder found by :func:`list_shards`, with its marker's content.

    ``files`` maps each file of the folder (relative POSIX path, the marker excepted) to its
    recorded ``{"bytes": size, "sha256": hex digest}``; empty for a marker that records none.
    """

    index: int
    num_shards: int
    path: Path
    rows: int
    start: int
    stop: int
    source_rows: int
    files: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)


def _read_marker(folder: Path) -> dict[str, Any]:
    marker = folder / SHARD_MARKER
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{marker}: unreadable shard marker: {err}") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{marker}: unreadable shard marker: expected a JSON object")
    return meta


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
        meta = _read_marker(child)
        try:
            files = meta.get("files") or {}
            if not isinstance(files, dict):
                raise TypeError(f"'files' must be an object, got {type(files).__name__}")
            info = ShardInfo(
                index=int(meta["index"]),
                num_shards=int(meta["num_shards"]),
                path=child,
                rows=int(meta["rows"]),
                start=int(meta["start"]),
                stop=int(meta["stop"]),
                source_rows=int(meta["source_rows"]),
                files=files,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{child / SHARD_MARKER}: unreadable shard marker: {err}") from err
        if (info.index, info.num_shards) != (int(match.group(1)), int(match.group(2))):
            raise ValueError(f"{child}: its marker says shard {info.index}/{info.num_shards}")
        found.append(info)
    return sorted(found, key=lambda s: (s.num_shards, s.index))


# --------------------------------------------------------------------------------------
# checksums


def _sha256(path: Path) -> str:
    from hf_mig.data.io import file_fingerprint

    return file_fingerprint(path, "sha256").partition(":")[2]


def _file_digests(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes", "sha256"}}`` for every file under ``folder`` but the marker."""
    digests: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel == SHARD_MARKER or not path.is_file():
            continue
        digests[rel] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    return digests


def verify_shard(shard: ShardInfo | str | os.PathLike) -> None:
    """Check every file recorded in a complete shard's marker against its size and sha256.

    Raises ``ValueError`` naming the shard folder and the file when the marker records no
    checksums, or a recorded file is missing, has another size (truncated, appended to) or
    another content; the message says how to redo the shard.
    """
    if isinstance(shard, ShardInfo):
        folder, files = shard.path, shard.files
    else:
        folder = Path(shard)
        if not is_complete_shard(folder):
            raise ValueError(f"{folder}: not a complete shard (no {SHARD_MARKER})")
        files = _read_marker(folder).get("files") or {}
    again = f"run this shard again with --overwrite ({folder.name})"
    if not isinstance(files, dict) or not files:
        raise ValueError(
            f"{folder}: {SHARD_MARKER} records no file checksums, so the shard cannot be "
            f"verified; {again}"
        )
    for rel, record in sorted(files.items()):
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise ValueError(f"{folder}: {SHARD_MARKER} names a file outside the shard: {rel!r}")
        try:
            size, digest = int(record["bytes"]), str(record["sha256"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{folder}: {SHARD_MARKER}: bad record for {rel}: {err}") from err
        path = folder / rel
        if not path.is_file():
            raise ValueError(f"{folder}: shard file {rel} is missing; {again}")
        found = path.stat().st_size
        if found != size:
            raise ValueError(
                f"{folder}: shard file {rel} has {found:,} bytes, {size:,} when the shard was "
                f"written (truncated or changed); {again}"
            )
        if _sha256(path) != digest:
            raise ValueError(
                f"{folder}: shard file {rel} does not match the sha256 recorded when the shard "
                f"was written (corrupted or changed); {again}"
            )


# --------------------------------------------------------------------------------------
# outputs


def check_output_format(out: str | os.PathLike) -> Path:
    """``out`` as a :class:`Path`, after checking :func:`hf_mig.data.io.save_dataset` can write it.

    A path ending in ``.jsonl``/``.json``/``.parquet``/``.csv`` is a data file, anything else a
    folder written with ``save_to_disk``; a suffix of another file type (``.gz``, ``.txt``,
    ``.arrow``...) raises ``ValueError`` instead of silently becoming a folder.
    """
    from hf_mig.data.io import DATA_FILE_BUILDERS

    path = Path(out).expanduser()
    if path.name in ("", ".", ".."):
        path = path.resolve()
    suffix = path.suffix.lower()
    if suffix in _UNWRITTEN_SUFFIXES:
        raise ValueError(
            f"{path}: cannot write a {suffix} file; write "
            f"{'/'.join(sorted(DATA_FILE_BUILDERS))} or a folder (a path without a suffix)"
        )
    return path


def _is_own_shard_folder(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but what :func:`run_sharded` writes into a shard."""
    for entry in folder.iterdir():
        if entry.is_symlink() or not entry.is_file():
            return False
        name = entry.name
        if (
            name != SHARD_MARKER
            and name not in _SAVED_FILES
            and not (name.startswith("data-") and name.endswith(".arrow"))
        ):
            return False
    return True


def check_run_output(
    out: str | os.PathLike,
    shard: str | tuple[int, int] | None = None,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Check, before any work, that :func:`run_sharded` may write ``out``; return the path.

    Unsharded (``shard=None``): ``out`` must be writable by :func:`hf_mig.data.io.save_dataset`
    (:func:`check_output_format`) and pass :func:`hf_mig.data.io.check_output`: an existing file or
    saved-dataset folder needs ``overwrite=True``, a folder holding other files is never replaced.
    Returns the output path.

    Sharded: ``shard`` must parse (:func:`parse_shard`) and ``out`` must be a folder or not exist
    (no data-file suffix); ``OUT/shard-I-of-N`` may exist only as a complete shard (skipped, or
    replaced with ``overwrite=True`` when it holds nothing but the tool's own files). Returns the
    folder of shards.

    ``out`` may not be one of ``inputs`` (the pool). Raises ``ValueError`` or
    :class:`hf_mig.data.io.OutputExistsError`.
    """
    from hf_mig.data.io import DATA_FILE_BUILDERS, OutputExistsError, check_output

    path = check_output_format(out)
    for source in inputs:
        src = Path(source).expanduser()
        if src.exists() and src.resolve() == path.resolve():
            raise ValueError(f"{path}: the output is the input pool; choose another output path")
    if shard is None:
        return check_output(path, overwrite=overwrite)
    index, num_shards = parse_shard(shard)
    if path.suffix.lower() in DATA_FILE_BUILDERS:
        raise ValueError(
            f"with a shard, OUT is a folder of shards (OUT/shard-I-of-N), not a "
            f"{path.suffix} file: {path}"
        )
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder")
    final = shard_path(path, index, num_shards)
    if final.exists() or final.is_symlink():
        if not final.is_dir() or final.is_symlink() or not is_complete_shard(final):
            raise ValueError(
                f"{final} exists but is not a complete shard (no {SHARD_MARKER}); it is never "
                "replaced: remove it yourself and run again"
            )
        if overwrite and not _is_own_shard_folder(final):
            raise OutputExistsError(
                f"{final}: the shard folder holds files hf-mig did not write; it is never "
                "replaced. Remove them or choose another output folder."
            )
    return path


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
        from hf_mig.data.io import load_pool

        return load_pool(self.path)


def _remove_stale(parent: Path, name: str) -> None:
    """Remove the temporary folders of shard ``name`` left in ``parent`` by ended processes.

    Only folders named exactly ``.NAME.hf-mig-tmp-HOST-PID-NS`` are candidates, and only when
    HOST is this host, process PID is this one or no longer runs
    (:func:`hf_mig.data.atomic.stale_temporaries`), and the folder holds nothing but shard files
    (``data-*.arrow``, ``state.json``, ``dataset_info.json``, the marker). Anything else is left
    alone.
    """
    for child in stale_temporaries(parent, name):
        if child.is_symlink() or not child.is_dir() or not _is_own_shard_folder(child):
            logger.warning("leaving %s: it holds files hf-mig does not write", child)
            continue
        logger.info("removing an unfinished earlier attempt: %s", child)
        shutil.rmtree(child, ignore_errors=True)


def run_sharded(
    ds: datasets.Dataset,
    out: str | os.PathLike,
    fn: Callable[[datasets.Dataset], datasets.Dataset],
    shard: str | tuple[int, int] | None = None,
    *,
    overwrite: bool = False,
) -> ShardRun:
    """Apply ``fn`` to ``ds`` (or to one shard of it) and write the result atomically.

    ``out`` is checked with :func:`check_run_output` before ``fn`` runs; nothing the tool did not
    write is ever removed or replaced.

    * ``shard=None``: ``fn(ds)`` is written to ``out`` with :func:`hf_mig.data.io.save_dataset`
      (format by extension; beside ``out``, then renamed). An existing ``out`` raises
      :class:`hf_mig.data.io.OutputExistsError` unless ``overwrite=True``, and a folder holding
      anything but a saved dataset is never replaced.
    * ``shard="I/N"`` (or ``(I, N)``): ``out`` is a folder (it may exist and hold other files);
      if ``out/shard-I-of-N`` is already complete, nothing runs (``skipped=True``) unless
      ``overwrite=True``; its files are checked first (:func:`verify_shard`: a damaged shard
      raises ``ValueError`` instead of being skipped). Otherwise ``fn`` gets the contiguous
      shard, and the result is saved (``save_to_disk``) with its :data:`SHARD_MARKER` (which
      records the size and sha256 of every file) into a temporary folder renamed to
      ``out/shard-I-of-N`` when complete; with ``overwrite=True`` a complete shard holding only
      the tool's files is replaced the same way. Temporary folders of this shard left on this
      host by ended processes, and holding only shard files, are removed first. If another job
      finished the same shard meanwhile, its result is kept and this one dropped.

    ``fn`` must return a :class:`datasets.Dataset`. Raises ``ValueError`` for a malformed
    ``shard``, an output format ``save_dataset`` cannot write, or when ``out`` names a data file
    (``.jsonl``...) while sharding.
    """
    from hf_mig.data.io import save_dataset

    path = check_run_output(out, shard, overwrite=overwrite)
    if shard is None:
        result = fn(ds)
        _check(result)
        save_dataset(result, path, overwrite=overwrite)
        return ShardRun(path=path, skipped=False, dataset=result, stop=len(ds))

    index, num_shards = parse_shard(shard)
    root = path
    final = shard_path(root, index, num_shards)
    start, stop = shard_bounds(len(ds), index, num_shards)
    if is_complete_shard(final) and not overwrite:
        verify_shard(final)
        logger.info("shard %d/%d is already complete at %s: skipped", index, num_shards, final)
        return ShardRun(final, True, None, index, num_shards, start, stop)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, final.name)
    part = shard_dataset(ds, index, num_shards)
    result = fn(part)
    _check(result)
    with temporary_folder(final, create=False) as tmp:
        result.save_to_disk(str(tmp))
        (tmp / SHARD_MARKER).write_text(
            json.dumps(_marker(result, ds, index, num_shards, tmp), indent=1), encoding="utf-8"
        )
        if overwrite and is_complete_shard(final):
            _replace_shard(tmp, final)
        elif not rename_or_keep(tmp, final, is_complete_shard):
            logger.warning("shard %s was completed by another job meanwhile; keeping it", final)
            return ShardRun(final, True, None, index, num_shards, start, stop)
    return ShardRun(final, False, result, index, num_shards, start, stop)


def _marker(
    result: datasets.Dataset, ds: datasets.Dataset, index: int, num_shards: int, folder: Path
) -> dict[str, Any]:
    """The content of :data:`SHARD_MARKER` for shard ``index`` written to ``folder``."""
    import hf_mig

    start, stop = shard_bounds(len(ds), index, num_shards)
    return {
        "index": index,
        "num_shards": num_shards,
        "rows": len(result),
        "start": start,
        "stop": stop,
        "source_rows": len(ds),
        "hf_mig_version": hf_mig.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": _file_digests(folder),
    }


def _replace_shard(new: Path, final: Path) -> None:
    """Move complete shard ``final`` aside, rename ``new`` onto it, then remove the old one."""
    from hf_mig.data.io import OutputExistsError

    if not _is_own_shard_folder(final):
        raise OutputExistsError(
            f"{final}: the shard folder holds files hf-mig did not write; it is never replaced"
        )
    replace_folder(new, final)


def _check(result: Any) -> None:
    if not isinstance(result, datasets.Dataset):
        raise TypeError(f"fn must return a datasets.Dataset, got {type(result).__name__}")
