"""Response-cache files left behind by killed processes: a base cache whose rows are still in its
write-ahead log, Ray actors' files whose driver died before folding them (folded when the next
run starts and by ``hf-mig merge``), and cache names that are not glob patterns. No Ray needed:
the driver's fold functions run here directly."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_mig.annotate.taggers.instag import InsTagTagger
from hf_mig.cli.main import main
from hf_mig.models.generation.cache import (
    ResponseCache,
    shard_cache_path,
    worker_cache_files,
    worker_cache_path,
)
from hf_mig.models.generation.results import GenerationResult
from hf_mig.runtime import ray_data


def _put(path: Path, *keys: str) -> None:
    cache = ResponseCache(path)
    cache.put_many([(k, GenerationResult(text=k.upper())) for k in keys])
    cache.close()


def _killed_writer(path: Path, key: str) -> None:
    """A process that commits ``key`` into cache file ``path`` and dies without closing it (its
    row stays in the write-ahead log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = f"""
        import os, sqlite3
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE IF NOT EXISTS responses "
                     "(key TEXT PRIMARY KEY, model TEXT, response TEXT, created REAL)")
        conn.execute("INSERT INTO responses VALUES (?, 'm', ?, 0)",
                     ({key!r}, {json.dumps({"text": key.upper()})!r}))
        os._exit(9)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)])
    assert done.returncode == 9


def _tagger(cache: Path) -> InsTagTagger:
    return InsTagTagger("openai", "m", cache=str(cache))


def test_a_shard_reads_rows_still_in_its_bases_write_ahead_log(tmp_path):
    base = tmp_path / "responses.sqlite"
    _put(base, "old")  # closed: checkpointed into the file
    _killed_writer(base, "new")
    assert base.with_name(base.name + "-wal").stat().st_size > 0
    shard = ResponseCache(shard_cache_path(base, 0, 2))
    assert shard.get("new").text == "NEW" and shard.get("old").text == "OLD"
    assert shard.bases == [base]  # still read, not dropped as unreadable


def test_a_base_only_in_its_write_ahead_log_is_read(tmp_path):
    base = tmp_path / "responses.sqlite"
    _killed_writer(base, "k1")  # the table itself is only in the log
    assert "k1" in ResponseCache(shard_cache_path(base, 1, 2))


def test_worker_files_are_matched_by_name_not_as_patterns(tmp_path):
    base = tmp_path / "resp[v2].sqlite"
    shard = shard_cache_path(base, 0, 2)
    mine = [worker_cache_path(base, "run1-0"), worker_cache_path(base, "run1-1")]
    other_run = worker_cache_path(base, "run2-0")
    of_shard = worker_cache_path(shard, "run1-0")
    look_alike = tmp_path / "respv.actor-run1-0.sqlite"  # what the glob [v2] would match
    for path in [*mine, other_run, of_shard, look_alike]:
        _put(path, path.name)
    assert worker_cache_files([base], "run1") == mine
    assert worker_cache_files([base]) == sorted([*mine, other_run])
    assert worker_cache_files([shard]) == [of_shard]
    assert worker_cache_files([base, shard], "run2") == [other_run]
    assert worker_cache_files([tmp_path / "missing" / "r.sqlite"]) == []


def test_the_runs_actor_files_of_a_bracketed_cache_are_folded_and_removed(tmp_path):
    cache = tmp_path / "resp[v2].sqlite"
    step = _tagger(cache)
    actors = [worker_cache_path(cache, f"runa-{k}") for k in range(2)]
    for k, path in enumerate(actors):
        _put(path, f"k{k}")
    leftover = worker_cache_path(cache, "dead-0")
    _put(leftover, "old")
    ray_data._fold_actor_caches(step, "runa")
    assert ResponseCache(cache).get("k1").text == "K1" and "old" not in ResponseCache(cache)
    assert not any(p.exists() for p in actors) and leftover.is_file()  # only this run's


def test_leftover_actor_files_are_folded_when_a_run_starts_and_kept(tmp_path, caplog):
    cache = tmp_path / "c" / "responses.shard-0-of-2.sqlite"
    step = _tagger(cache)
    leftover = worker_cache_path(cache, "dead-0")
    _killed_writer(leftover, "k1")  # an actor killed with its driver: never folded
    broken = worker_cache_path(cache, "dead-1")
    broken.write_bytes(b"not a database")
    of_base = worker_cache_path(tmp_path / "c" / "responses.sqlite", "dead-0")
    _put(of_base, "other")  # another cache's file: not this step's
    with caplog.at_level(logging.WARNING, logger=ray_data.__name__):
        assert ray_data._fold_leftover_caches(step) == 1
    assert "dead-1" in caplog.text  # named, skipped
    # a new actor of this cache finds k1 through the configured file
    actor = ResponseCache(worker_cache_path(cache, "runb-0"))
    assert actor.get("k1").text == "K1" and "other" not in actor
    assert leftover.is_file() and of_base.is_file()  # kept
    assert ray_data._fold_leftover_caches(step) == 0  # folding again adds nothing


def test_a_failed_fold_after_a_failed_run_is_logged_not_raised(tmp_path, caplog):
    cache = tmp_path / "responses.sqlite"
    step = _tagger(cache)
    bad = worker_cache_path(cache, "runc-0")
    bad.write_bytes(b"not a database")
    with caplog.at_level(logging.ERROR, logger=ray_data.__name__):
        ray_data._end_run(step, "runc", failed=True)
    assert "folding its actors' response caches failed" in caplog.text and bad.is_file()
    with pytest.raises(ValueError, match="not a readable response cache"):
        ray_data._end_run(step, "runc", failed=False)
    assert bad.is_file()  # nothing removed when the fold fails


def test_merge_folds_actor_files_left_beside_the_shard_caches(tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n"
                            for i in range(4)))  # fmt: skip
    out = tmp_path / "scored"
    for index in range(2):
        args = ["score", str(pool), str(out), "--scorer", "length", "--shard", f"{index}/2"]
        assert main(args) == 0
    base = out / "_cache" / "responses.sqlite"
    of_shard = worker_cache_path(shard_cache_path(base, 1, 2), "dead-0")
    of_base = worker_cache_path(base, "dead-1")
    _killed_writer(of_shard, "s1")
    _put(of_base, "b1")
    assert main(["merge", str(out), str(tmp_path / "merged.jsonl")]) == 0
    said = capsys.readouterr().out
    assert "folded 2 shard response cache(s)" in said and "2 of them left by Ray actors" in said
    merged = ResponseCache(base)
    assert merged.get("s1").text == "S1" and merged.get("b1").text == "B1"
    assert of_shard.is_file() and of_base.is_file()  # kept, as the shard files are
    with sqlite3.connect(base) as conn:
        assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 2
