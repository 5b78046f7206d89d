"""Content identity of a model: what caches are keyed by, instead of a model's path or name.

:func:`model_identity` returns a short string that changes when the bytes a model is loaded
from change, and only then:

* a local file (e.g. a ``.gguf``): ``"sha256:<hex>"`` of its bytes;
* a local folder: ``"sha256:<hex>"`` over the files ``from_pretrained`` reads (weights, configs,
  tokenizer files, chat templates, remote code; see :func:`identity_files`): for each one, its
  path relative to the folder, its size and the SHA-256 of its bytes, in path order;
* a Hugging Face Hub id: ``"hf:<repo>@<commit>"``, the commit its revision (default ``main``)
  resolves to: asked from the Hub (``HfApi().model_info``) when online, else read from the local
  Hugging Face cache (``<HF_HUB_CACHE>/models--<org>--<name>/refs/<revision>``), which is also
  the fallback when the Hub cannot be reached. A 40-hex-digit revision is used as it is. A Hub
  snapshot never changes under its commit, so its files are not hashed.

Cost: files are hashed with SHA-256 (:func:`hf_mig.data.fingerprint.file_fingerprint`) on one
core: on the development machine about 1.4 GB/s from the page cache when the core is idle,
0.5 GB/s when it is shared (disk speed when slower), i.e. 10-30 s per process for a 15 GB local
model, more from a cold disk. Progress is logged (INFO) with the rate whenever bytes are hashed.
Each file's digest is memoised in this process only (never on disk), together with the file's stat
signature (device, inode, size, modification and change times): a file is hashed again only when
its signature says it may have changed, e.g. weights replaced in place while a notebook runs.
The signature only decides whether to hash again; identities are digests of content, never of
times or paths. Objects that have loaded a model keep the identity of what they loaded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path

from hf_mig.data.fingerprint import file_fingerprint

logger = logging.getLogger(__name__)

__all__ = [
    "ModelIdentityError",
    "clear_identity_cache",
    "file_digest",
    "hub_commit",
    "identity_files",
    "model_identity",
]

_COMMIT = re.compile(r"[0-9a-f]{40}")

#: Files of a model folder that never change its outputs: documentation, training state, and
#: weights in formats that a PyTorch ``from_pretrained`` of the folder does not read (a GGUF file
#: is hashed alone when it is the file loaded).
IGNORED_FILES: tuple[str, ...] = (
    "*.md",
    "LICENSE*",
    "NOTICE*",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
    "*.gguf",
    "*.onnx",
    "*.onnx_data",
    "*.h5",
    "*.msgpack",
    "*.tflite",
    "*.ot",
)
#: Sub-folders of a model folder that ``from_pretrained`` reads (everything else below the top
#: level, e.g. ``checkpoint-*`` folders or ``onnx/``, is not part of the model).
READ_SUBFOLDERS: tuple[str, ...] = ("additional_chat_templates",)

_lock = threading.Lock()
# realpath -> (stat signature, hex digest)
_FILES: dict[str, tuple[tuple[int, ...], str]] = {}
# (repo_id, revision) -> commit
_COMMITS: dict[tuple[str, str | None], str] = {}


class ModelIdentityError(FileNotFoundError):
    """The model's content cannot be identified (no such file or folder, no model files in the
    folder, or a Hub id that is neither reachable nor in the local cache)."""


def clear_identity_cache() -> None:
    """Forget every digest and Hub commit memoised in this process."""
    with _lock:
        _FILES.clear()
        _COMMITS.clear()


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the bytes of ``path`` (symlinks followed), memoised in this process
    while the file's stat signature is unchanged."""
    return _file_digest(path)[0]


def _file_digest(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(hex digest, size, bytes hashed now)``: 0 bytes hashed when the memo answered."""
    real = os.path.realpath(path)
    before = os.stat(real)
    with _lock:
        known = _FILES.get(real)
    if known is not None and known[0] == _signature(before):
        return known[1], before.st_size, 0
    value = file_fingerprint(real, "sha256").partition(":")[2]
    after = os.stat(real)
    if _signature(after) == _signature(before):  # not written while it was read
        with _lock:
            _FILES[real] = (_signature(after), value)
    return value, after.st_size, after.st_size


def identity_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a model folder that :func:`model_identity` hashes, sorted by relative path.

    Regular files (symlinks followed) at the top level and in :data:`READ_SUBFOLDERS`, except
    hidden names and :data:`IGNORED_FILES`.
    """
    root = Path(folder)
    found: list[Path] = []
    for directory in (root, *(root / name for name in READ_SUBFOLDERS)):
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            name = entry.name
            if name.startswith(".") or not entry.is_file():
                continue
            if any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_FILES):
                continue
            found.append(Path(entry.path))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _folder_identity(folder: Path) -> str:
    files = identity_files(folder)
    if not files:
        raise ModelIdentityError(
            f"model folder {str(folder)!r} holds no model file (config, weights, tokenizer)"
        )
    start = time.perf_counter()
    hashed = 0
    total = hashlib.sha256()
    for path in files:
        digest, size, now = _file_digest(path)
        hashed += now
        relative = path.relative_to(folder).as_posix()
        total.update(f"{relative}\t{size}\t{digest}\n".encode())
    _log_hashing(folder, len(files), hashed, start)
    return "sha256:" + total.hexdigest()


def _single_file_identity(path: Path) -> str:
    start = time.perf_counter()
    digest, _, hashed = _file_digest(path)
    _log_hashing(path, 1, hashed, start)
    return "sha256:" + digest


def _log_hashing(where: Path, files: int, hashed: int, start: float) -> None:
    if not hashed:
        return
    seconds = time.perf_counter() - start
    logger.info(
        "model identity: hashed %.1f MB of %s (%d files) in %.2f s (%.0f MB/s)",
        hashed / 1e6,
        where,
        files,
        seconds,
        hashed / 1e6 / max(seconds, 1e-9),
    )


def _offline() -> bool:
    import huggingface_hub.constants as hub

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(hub.HF_HUB_OFFLINE) or any(
        flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags
    )


def _cached_commit(repo_id: str, revision: str | None) -> tuple[str | None, Path]:
    import huggingface_hub.constants as hub
    from huggingface_hub.file_download import repo_folder_name

    ref = (
        Path(hub.HF_HUB_CACHE)
        / repo_folder_name(repo_id=repo_id, repo_type="model")
        / "refs"
        / (revision or "main")
    )
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None, ref
    return (commit if _COMMIT.fullmatch(commit) else None), ref


def hub_commit(repo_id: str, revision: str | None = None) -> str:
    """The commit that ``revision`` (default ``main``) of the Hub model ``repo_id`` resolves to.

    Online: ``HfApi().model_info`` (10 s timeout); offline (``HF_HUB_OFFLINE``) or when the Hub
    cannot be reached: the local Hugging Face cache's ``refs/<revision>``. Memoised per process.
    Raises :class:`ModelIdentityError` when neither says.
    """
    if revision is not None and _COMMIT.fullmatch(revision):
        return revision
    with _lock:
        known = _COMMITS.get((repo_id, revision))
    if known is not None:
        return known
    problem = "the Hub is not used (HF_HUB_OFFLINE is set)"
    commit: str | None = None
    if not _offline():
        try:
            from huggingface_hub import HfApi

            commit = HfApi().model_info(repo_id, revision=revision, timeout=10).sha
        except Exception as err:  # noqa: BLE001 - offline, not found, gated: try the cache
            problem = f"the Hub did not answer ({type(err).__name__}: {str(err)[:200]})"
            commit = None
    ref = None
    if not commit:
        commit, ref = _cached_commit(repo_id, revision)
    if not commit:
        raise ModelIdentityError(
            f"cannot identify the content of model {repo_id!r} (revision "
            f"{revision or 'main'}): it is not a local file or folder, {problem}, and the "
            f"Hugging Face cache has no {ref}"
        )
    with _lock:
        _COMMITS[(repo_id, revision)] = commit
    return commit


def _looks_like_repo_id(text: str) -> bool:
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(text)
    except Exception:  # noqa: BLE001 - HFValidationError and friends
        return False
    return True


def model_identity(
    source: str | os.PathLike, *, file: str | None = None, revision: str | None = None
) -> str:
    """The content identity of a model (see the module docstring).

    Args:
        source: a local folder, a local file (``.gguf``...) or a Hugging Face Hub id.
        file: a file inside ``source`` that is loaded alone (``gguf_file=``); only it is hashed.
        revision: the Hub revision (branch, tag or commit) of a Hub id.

    Raises :class:`ModelIdentityError` for a local path that does not exist, a folder without
    model files, or a Hub id whose commit cannot be found.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if file is not None:
        target = path / file if path.is_dir() else path
        if not target.is_file():
            raise ModelIdentityError(f"model file not found: {str(target)!r}")
        return _single_file_identity(target)
    if path.is_file():
        return _single_file_identity(path)
    if path.is_dir():
        return _folder_identity(path)
    if not _looks_like_repo_id(text) or text.startswith((".", "/", "~")):
        raise ModelIdentityError(
            f"model {text!r} is neither an existing file or folder nor a Hugging Face Hub id"
        )
    return f"hf:{text}@{hub_commit(text, revision)}"
