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

Shard caches. Jobs on several hosts must not write one SQLite file (its locks and write-ahead
log need one host). Shard ``I`` of ``N`` therefore writes its own file,
:func:`shard_cache_path` (``responses.shard-I-of-N.sqlite`` beside ``responses.sqlite``), and a
cache whose file is named so reads its *base* file (the same name without ``.shard-I-of-N``)
read-only when it exists: without locks (SQLite's ``immutable`` mode), or with them when a
write-ahead log (``NAME-wal``) is beside it, left by a writer that did not close; earlier
results stay hits and the base is never written by a shard. :func:`fold_caches` copies the
shard files' results into the base afterwards (``hf-mig merge`` does it), keyed by content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_mig.models.generation.results import GenerationResult

__all__ = [
    "CACHE_FILE_NAME",
    "ResponseCache",
    "base_cache_file",
    "cache_file",
    "cache_key",
    "fold_caches",
    "open_cache",
    "shard_cache_files",
    "shard_cache_path",
    "worker_cache_files",
    "worker_cache_path",
]

logger = logging.getLogger(__name__)

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
_COLUMNS = "key, model, response, created"
#: ``NAME.shard-I-of-N.SUFFIX``: the file of one shard's cache.
_SHARD_FILE = re.compile(r"^(?P<stem>.+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)(?P<suffix>\.[^.]+)$")
#: ``NAME.actor-TAG.SUFFIX``: the file one worker of a run writes (:func:`worker_cache_path`).
_WORKER_FILE = re.compile(r"^(?P<stem>.+)\.actor-(?P<tag>[0-9a-z-]+)(?P<suffix>\.[^.]+)$")
#: Most bases a cache file reads through (a worker's shard file, then the shard's base).
_MAX_BASES = 4


def cache_file(path: str | os.PathLike) -> Path:
    """The database file a cache path names: ``path`` itself when it ends in ``.sqlite``,
    ``.sqlite3`` or ``.db`` (and is not a folder), else ``path/responses.sqlite``."""
    target = Path(path).expanduser()
    if target.is_dir() or target.suffix.lower() not in SQLITE_SUFFIXES:
        target = target / CACHE_FILE_NAME
    return target


def shard_cache_path(cache: str | os.PathLike, index: int, num_shards: int) -> Path:
    """The file shard ``index`` of ``num_shards`` writes for cache ``cache`` (a folder or a
    database file): ``NAME.shard-I-of-N.SUFFIX`` beside the base file ``NAME.SUFFIX``
    (``cache/responses.shard-3-of-16.sqlite`` for a folder)."""
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index must be in [0, {num_shards - 1}], got {index}")
    base = cache_file(cache)
    return base.with_name(f"{base.stem}.shard-{index}-of-{num_shards}{base.suffix}")


def worker_cache_path(cache: str | os.PathLike, tag: str) -> Path:
    """The file one worker writes for cache ``cache`` (a folder or a database file):
    ``NAME.actor-TAG.SUFFIX`` beside ``NAME.SUFFIX``, which it reads (never writes) as its base;
    ``tag``: lowercase letters, digits and ``-``."""
    base = cache_file(cache)
    path = base.with_name(f"{base.stem}.actor-{tag}{base.suffix}")
    if _WORKER_FILE.match(path.name) is None or base_cache_file(path) != base:
        raise ValueError(f"a worker tag is lowercase letters, digits and '-', got {tag!r}")
    return path


def base_cache_file(path: str | os.PathLike) -> Path | None:
    """The base file of a shard's or a worker's cache file (``NAME.SUFFIX`` for
    ``NAME.shard-I-of-N.SUFFIX`` or ``NAME.actor-TAG.SUFFIX``), ``None`` for a file named as
    neither."""
    target = Path(path)
    for pattern in (_SHARD_FILE, _WORKER_FILE):
        match = pattern.match(target.name)
        if match is not None and match["suffix"].lower() in SQLITE_SUFFIXES:
            return target.with_name(match["stem"] + match["suffix"])
    return None


def shard_cache_files(cache: str | os.PathLike, num_shards: int | None = None) -> list[Path]:
    """The shard files beside base cache ``cache`` (of ``num_shards`` shards when given), in
    ``(N, I)`` order."""
    base = cache_file(cache)
    found = []
    if base.parent.is_dir():
        for child in base.parent.iterdir():
            match = _SHARD_FILE.match(child.name)
            if (
                match is not None
                and child.is_file()
                and base_cache_file(child) == base
                and (num_shards is None or int(match["n"]) == num_shards)
            ):
                found.append((int(match["n"]), int(match["i"]), child))
    return [path for _, _, path in sorted(found)]


def worker_cache_files(
    caches: Iterable[str | os.PathLike], run_tag: str | None = None
) -> list[Path]:
    """The worker files (:func:`worker_cache_path`) of the cache files ``caches`` (whose base is
    exactly one of them, names matched as they are, not as glob patterns), sorted; with
    ``run_tag``, only those whose tag is ``RUN_TAG-...``."""
    wanted = {cache_file(c) for c in caches}
    found = set()
    for folder in {w.parent for w in wanted}:
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            match = _WORKER_FILE.match(child.name)
            if (
                match is not None
                and child.is_file()
                and base_cache_file(child) in wanted
                and (run_tag is None or match["tag"].startswith(f"{run_tag}-"))
            ):
                found.add(child)
    return sorted(found)


def _read_only(path: Path, timeout: float, locks: bool = False) -> sqlite3.Connection:
    """A read-only connection to ``path``: without locks or shared memory (``immutable``), or
    with them (``locks=True``: sees a write-ahead log left by a process that did not close)."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    if not locks:
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def _has_wal(path: Path) -> bool:
    """Whether a write-ahead log is beside database ``path`` (rows may still be only there)."""
    return path.with_name(path.name + "-wal").exists()


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

    A file named as a shard's (:func:`shard_cache_path`) or a worker's
    (:func:`worker_cache_path`) has a :attr:`base`: the base file, read (never written) for the
    keys this file lacks when it exists, and so on through the base's own base (a worker of a
    shard reads the shard's file, then the base cache); ``len`` counts this file's results only.

    The object pickles as its path (each process opens its own connection; connections are also
    per thread), so it can travel to ``num_proc`` workers.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0) -> None:
        target = cache_file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._set_path(target)
        self.timeout = float(timeout)
        self._local = threading.local()
        self._conn()  # create the schema now, so errors surface early

    def _set_path(self, target: Path) -> None:
        """This file and the chain of bases it reads through."""
        self.path = target
        self.base = base_cache_file(target)
        self.bases: list[Path] = []
        base = self.base
        while base is not None and len(self.bases) < _MAX_BASES:
            self.bases.append(base)
            base = base_cache_file(base)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_SCHEMA)
        self._local.conn = conn
        self._local.base = None  # a base connection of another process is not this one's
        self._local.pid = os.getpid()
        return conn

    def _base_conns(self) -> list[sqlite3.Connection]:
        """This thread's read-only connections to the :attr:`bases` that exist, nearest first."""
        if not self.bases:
            return []
        self._conn()  # (re)sets the thread's pid and forgets another process's connections
        opened = self._local.base
        if opened is None:
            opened = self._local.base = {}
        for path in self.bases:
            if path not in opened and path.is_file():
                opened[path] = _read_only(path, self.timeout, locks=_has_wal(path))
        return [opened[path] for path in self.bases if path in opened]

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        """``key -> stored response`` for ``keys``: this file's, then its bases'."""
        found: dict[str, str] = {}
        for conn in (self._conn(), *self._base_conns()):
            wanted = [k for k in keys if k not in found]
            if not wanted:
                break
            try:
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    found.update(
                        conn.execute(
                            f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk
                        ).fetchall()
                    )
            except sqlite3.DatabaseError as err:
                if conn is self._local.conn:
                    raise
                path = next(p for p, c in self._local.base.items() if c is conn)
                logger.warning("base cache %s unreadable (%s): not used", path, err)
                conn.close()
                del self._local.base[path]
                self.bases = [p for p in self.bases if p != path]
                self.base = self.bases[0] if self.bases else None
        return found

    def get_many(self, keys: Iterable[str]) -> dict[str, GenerationResult]:
        """The cached results among ``keys`` (missing keys are absent), marked ``cached=True``."""
        return {
            key: GenerationResult.from_dict(json.loads(response), cached=True)
            for key, response in self._lookup(list(keys)).items()
        }

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
        return isinstance(key, str) and key in self._lookup([key])

    def close(self) -> None:
        """Close this thread's connections (others close when their thread or process ends)."""
        if getattr(self._local, "pid", None) == os.getpid():
            conn = getattr(self._local, "conn", None)
            bases = getattr(self._local, "base", None) or {}
            for each in [conn, *bases.values()]:
                if each is not None:
                    each.close()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._set_path(Path(state["path"]))
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


def _fold_into(conn: sqlite3.Connection, sources: Sequence[Path], timeout: float) -> int:
    """Insert the rows of ``sources`` missing from ``conn``'s table, in one transaction; return
    how many were added."""
    before = conn.total_changes
    conn.execute("BEGIN IMMEDIATE")
    try:
        for source in sources:
            reader = _read_only(source, timeout, locks=_has_wal(source))
            try:
                rows = reader.execute(f"SELECT {_COLUMNS} FROM responses")
                while chunk := rows.fetchmany(1000):
                    conn.executemany(
                        f"INSERT OR IGNORE INTO responses ({_COLUMNS}) VALUES (?, ?, ?, ?)", chunk
                    )
            except sqlite3.DatabaseError as err:
                raise ValueError(f"{source}: not a readable response cache: {err}") from err
            finally:
                reader.close()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return conn.total_changes - before


def fold_caches(
    base: str | os.PathLike, sources: Iterable[str | os.PathLike], timeout: float = 60.0
) -> int:
    """Copy into base cache ``base`` every result of the cache files ``sources`` it lacks;
    return how many results were added.

    Keyed by the content keys (:func:`cache_key`): a key the base holds keeps its result, so a
    second fold of the same files adds nothing. All sources go in one transaction (a failure
    adds nothing); a base that does not exist is built beside its final name and renamed into
    place. The sources are read only (an unreadable one raises ``ValueError`` naming it) and
    never removed. An existing base is written in place, in one SQLite transaction: shards read
    it without locks (:func:`shard_cache_path`), so fold once no shard of it is running.
    """
    from hf_mig.data.atomic import atomic_output

    target = cache_file(base)
    files = [cache_file(s) for s in sources]
    for source in files:
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such cache file")
        if source.resolve() == target.resolve():
            raise ValueError(f"{source}: a cache cannot be folded into itself")
    if target.is_file():
        cache = ResponseCache(target, timeout)
        try:
            added = _fold_into(cache._conn(), files, timeout)
            cache._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # lock-free readers see all
        finally:
            cache.close()
        return added
    with atomic_output(target) as tmp:
        conn = sqlite3.connect(str(tmp), timeout=timeout, isolation_level=None)
        try:
            conn.execute(_SCHEMA)
            added = _fold_into(conn, files, timeout)
        finally:
            conn.close()
    return added
