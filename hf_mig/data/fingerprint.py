"""Content hashes of files and folders: what pools, selections, shards and cards are keyed by."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import xxhash

from hf_mig.data.atomic import TMP_MARK

__all__ = ["ALGORITHMS", "file_digest", "file_fingerprint"]

#: Digest algorithms :func:`file_fingerprint` knows.
ALGORITHMS = ("sha256", "xxh3_128")
_BLOCK = 16 << 20  # bytes read at once


def _hasher(algorithm: str) -> Any:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "xxh3_128":
        return xxhash.xxh3_128()
    raise ValueError(f"unknown fingerprint algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of one file's bytes with ``algorithm`` (``sha256`` or ``xxh3_128``)."""
    digest = _hasher(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of a file's bytes, or of a folder's files (relative names + bytes).

    The digest depends on the content only: never on the path, size or modification time, so a
    file rewritten in place gets a new fingerprint and a copy elsewhere keeps it. In a folder,
    the temporary siblings an unfinished :func:`hf_mig.data.atomic.atomic_output` leaves are not
    counted. ``algorithm``: ``sha256`` (what ``sha256sum`` prints) or ``xxh3_128`` (several times
    faster; for change detection). Raises ``FileNotFoundError`` for a missing path.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        digest = _hasher(algorithm)
        for child in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = child.relative_to(p)
            if any(TMP_MARK in part for part in rel.parts):
                continue
            digest.update(rel.as_posix().encode("utf-8", "surrogateescape") + b"\0")
            digest.update(file_digest(child, algorithm).encode())
        return f"{algorithm}:{digest.hexdigest()}"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return f"{algorithm}:{file_digest(p, algorithm)}"
