"""Outputs written atomically: checked before the work, written beside the target, renamed.

Every file or folder hf-mig writes goes through here. :func:`check_output` says before any work
whether a path may be written; :func:`atomic_output` yields a temporary sibling to write and
renames it onto the target when complete, so a reader never sees a partial output. Content
caches (a folder built once and shared by processes) use :func:`temporary_folder` with
:func:`rename_or_keep`.

Temporary siblings are named ``.NAME.hf-mig-tmp-HOST-PID-NS[SUFFIX]`` (:func:`temp_sibling`), so
that those left by a process that ended can be told from those still being written
(:func:`stale_temporaries`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hf_mig.data.errors import OutputExistsError

__all__ = [
    "HOST",
    "TMP_MARK",
    "OutputExistsError",
    "atomic_output",
    "check_output",
    "output_name",
    "remove_path",
    "rename_or_keep",
    "replace_folder",
    "stale_temporaries",
    "temp_sibling",
    "temporary_folder",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

#: Marks the name of every temporary sibling (see :func:`temp_sibling`).
TMP_MARK = ".hf-mig-tmp-"
#: This host's name as written into temporary names (characters other than ``[A-Za-z0-9._-]``
#: replaced by ``_``).
HOST = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"

_WRITER = re.compile(r"^(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)-(?P<ns>\d+)$")
_DATASET_FOLDER_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")


def temp_sibling(final: Path, suffix: str = "") -> Path:
    """A fresh name beside ``final``: ``.NAME.hf-mig-tmp-HOST-PID-NS`` + ``suffix``."""
    stamp = f"{HOST}-{os.getpid()}-{time.time_ns()}"
    return final.parent / f".{final.name}{TMP_MARK}{stamp}{suffix}"


def output_name(tmp: Path) -> Path:
    """The output that a temporary sibling made by :func:`temp_sibling` stands for."""
    name = tmp.name
    if name.startswith(".") and TMP_MARK in name:
        return tmp.with_name(name[1:].split(TMP_MARK)[0])
    return tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def stale_temporaries(parent: Path, name: str) -> list[Path]:
    """Temporary siblings of ``parent/name`` (named by :func:`temp_sibling`, no suffix) left by
    writers that ended: written on this host by this process or by one that no longer runs.

    Those written on another host are never listed (logged at INFO); nothing is removed here.
    """
    prefix = f".{name}{TMP_MARK}"
    found: list[Path] = []
    for child in parent.iterdir():
        if not child.name.startswith(prefix):
            continue
        match = _WRITER.match(child.name[len(prefix) :])
        if match is None:
            continue
        if match["host"] != HOST:
            logger.info("leaving %s: written on host %s", child, match["host"])
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _pid_alive(pid):
            continue
        found.append(child)
    return found


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree if it exists (errors inside a tree are ignored)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _is_dataset_folder(path: Path) -> bool:
    """Whether ``path`` holds only what ``save_to_disk`` writes (a Dataset or DatasetDict)."""
    entries = list(path.iterdir())
    if not entries:
        return True
    for entry in entries:
        name = entry.name
        if entry.is_dir():
            if not (path / "dataset_dict.json").is_file() or not _is_dataset_folder(entry):
                return False
        elif name not in _DATASET_FOLDER_FILES and not (
            name.startswith("data-") and name.endswith(".arrow")
        ):
            return False
    return True


def check_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` may be written; return it as a :class:`Path`.

    A path that does not exist is always writable. An existing file is replaced only with
    ``overwrite=True``. An existing folder is replaced only with ``overwrite=True`` and only when
    it holds nothing but a dataset saved by ``save_to_disk`` (never a folder with other files,
    such as the current directory). Raises :class:`OutputExistsError` otherwise, naming the path
    and the way round it.
    """
    final = Path(path).expanduser()
    if not final.exists() and not final.is_symlink():
        return final
    if final.is_dir() and not final.is_symlink():
        if not _is_dataset_folder(final):
            raise OutputExistsError(
                f"{final}: the output exists and is a folder holding other files; it is never "
                "replaced. Choose a new output path."
            )
        kind = "dataset folder"
    elif final.is_file():
        kind = "file"
    else:
        raise OutputExistsError(f"{final}: the output exists and is not a regular file")
    if not overwrite:
        raise OutputExistsError(
            f"{final}: the output {kind} exists; pass --overwrite (overwrite=True) to replace it, "
            "or choose a new path"
        )
    return final


def replace_folder(new: Path, final: Path) -> None:
    """Put folder ``new`` in the place of folder ``final``: ``final`` is moved aside, ``new``
    renamed in, then the old one removed. When the second rename fails, ``final`` is put back
    and the error raised."""
    old = temp_sibling(final)
    os.rename(final, old)
    try:
        os.rename(new, final)
    except OSError:
        os.rename(old, final)
        raise
    remove_path(old)


@contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it onto ``path`` on success.

    ``path`` is checked with :func:`check_output` first. The temporary name lives in the same
    folder (so the rename is atomic on one filesystem) and keeps the target's suffix. On an
    exception the temporary file or folder is removed and ``path`` is left as it was; a reader
    never sees a partial output. A replaced dataset folder is moved aside, the new one renamed
    in, then the old one removed (:func:`replace_folder`).
    """
    final = check_output(path, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final, final.suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {final}")
        if tmp.is_dir() and final.is_dir():
            replace_folder(tmp, final)
        else:
            os.replace(tmp, final)
    finally:
        remove_path(tmp)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def temporary_folder(final: Path, *, create: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``final`` (:func:`temp_sibling`; created empty unless
    ``create=False``) and remove whatever is left of it on exit, on success or error.

    The parent folder is created. Pair it with :func:`rename_or_keep` to build a folder once.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    if create:
        tmp.mkdir()
    try:
        yield tmp
    finally:
        remove_path(tmp)


def rename_or_keep(tmp: Path, final: Path, complete: Callable[[Path], bool]) -> bool:
    """Rename folder ``tmp`` onto ``final``; return ``True`` when it was renamed.

    When the rename fails and ``complete(final)`` holds (another process finished the same
    folder first), theirs is kept and ``False`` returned; any other failure is raised.
    """
    try:
        os.rename(tmp, final)
    except OSError:
        if not complete(final):
            raise
        return False
    return True
