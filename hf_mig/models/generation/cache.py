"""On-disk cache of generation responses, so that re-runs are free and interrupted runs resume.

:class:`ResponseCache` is one SQLite file (standard library :mod:`sqlite3`, write-ahead log):
safe to share between threads, between the ``num_proc`` workers of ``Dataset.map`` and between
jobs on one machine (SQLite locking; avoid network file systems, where its locks are unreliable).
Each successful response is written as soon as the backend has it (one small transaction,
~0.1 ms), so a killed run loses nothing it had received.

Keys are ``sha256`` of the canonical JSON of: the backend description (name, model, every
output-affecting option and, for the transformers and vLLM backends, the content identity of the
model files, see :meth:`GenerationBackend.describe` and :mod:`hf_mig.models.identity`), the
decoding parameters (:class:`GenerationParams`) and the messages. Change any of them and the key
changes: weights replaced in place under the same path miss the cache. The server URL, API key,
concurrency and timeouts are not part of the key: the same model served elsewhere reuses the
cache. A served model (the OpenAI-compatible backend) is known by its name only, so use another
served name or another cache when the weights behind a name change.

Only successes are stored, and only those the caller accepts (``accept=`` of
:meth:`GenerationBackend.generate`, e.g. outputs that parse), so a re-run asks again for exactly
the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_mig.models.generation.results import GenerationResult

__all__ = ["CACHE_FILE_NAME", "ResponseCache", "cache_key", "open_cache"]

#: File name used when a cache is given as a folder.
CACHE_FILE_NAME = "responses.sqlite"
#: Suffixes that make a cache path a database file rather than a folder.
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(
    backend: Mapping[str, Any], params: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]
) -> str:
    """64 hex digits: sha256 of the canonical JSON of ``backend``, ``params`` and ``messages``.

    Canonical JSON: sorted keys, no whitespace, non-ASCII kept as UTF-8. Dict key order of the
    messages therefore does not matter; message order does.
    """
    payload = {"backend": dict(backend), "params": dict(params), "messages": list(messages)}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A SQLite table ``key -> GenerationResult`` (successes only).

    Args:
        path: the database file when it ends in ``.sqlite``, ``.sqlite3`` or ``.db``; any other
            path is a folder that gets ``responses.sqlite`` inside. Folders are created.
        timeout: seconds to wait for another writer's lock before failing.

    The object pickles as its path (each process opens its own connection; connections are also
    per thread), so it can travel to ``num_proc`` workers.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0) -> None:
        target = Path(path).expanduser()
        if target.is_dir() or target.suffix.lower() not in SQLITE_SUFFIXES:
            target = target / CACHE_FILE_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = target
        self.timeout = float(timeout)
        self._local = threading.local()
        self._conn()  # create the schema now, so errors surface early

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_SCHEMA)
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, GenerationResult]:
        """The cached results among ``keys`` (missing keys are absent), marked ``cached=True``."""
        keys = list(keys)
        found: dict[str, GenerationResult] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, response in rows:
                found[key] = GenerationResult.from_dict(json.loads(response), cached=True)
        return found

    def get(self, key: str) -> GenerationResult | None:
        """The cached result for ``key`` or ``None``."""
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[str, GenerationResult]], model: str = "") -> int:
        """Store successful results (failed ones are skipped); return how many were written."""
        rows = [
            (key, model, json.dumps(result.to_dict(), ensure_ascii=False), time.time())
            for key, result in items
            if result.error is None
        ]
        if not rows:
            return 0
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO responses (key, model, response, created) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return len(rows)

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        row = self._conn().execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone()
        return row is not None

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or process ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self.timeout = state["timeout"]
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"


def open_cache(cache: Any) -> ResponseCache | None:
    """``None`` -> ``None``; a :class:`ResponseCache` as is; a path -> ``ResponseCache(path)``."""
    if cache is None or isinstance(cache, ResponseCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return ResponseCache(cache)
    raise TypeError(f"cache must be None, a path or a ResponseCache, got {type(cache).__name__}")
