"""Per-shard response caches: each shard writes its own SQLite file and reads the base one
read-only; ``hf-mig merge`` folds the shard files into the base, and a re-run is served from it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest
from openai_server import OpenAIServer, last_user_message

from hf_mig.annotate.taggers.instag import InsTagTagger
from hf_mig.cli.main import main
from hf_mig.data.io import load_pool
from hf_mig.models.generation import cache as cache_module
from hf_mig.models.generation.cache import (
    ResponseCache,
    base_cache_file,
    fold_caches,
    shard_cache_files,
    shard_cache_path,
)
from hf_mig.models.generation.results import GenerationResult
from hf_mig.runtime.sharding import run_sharded, shard_cache_location

ROWS = 6


def tag_responder(body: dict) -> str:
    """One InsTag-style tag per prompt, named after the pool row's ``thingN``."""
    word = re.search(r"thing\d+", last_user_message(body)).group(0)
    return json.dumps([{"tag": f"topic {word}", "explanation": "x"}])


@pytest.fixture
def server():
    with OpenAIServer(tag_responder) as srv:
        yield srv


@pytest.fixture
def pool(tmp_path) -> Path:
    path = tmp_path / "pool.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(ROWS):
            messages = [{"role": "user", "content": f"please describe thing{i}"}]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def tagger(server: OpenAIServer, cache: str | None) -> InsTagTagger:
    options = {"base_url": server.base_url, "max_retries": 0, "progress": False}
    return InsTagTagger("openai", "m", backend_options=options, cache=cache)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + "-*"))


def test_shard_cache_names():
    assert shard_cache_path("c", 3, 16) == Path("c/responses.shard-3-of-16.sqlite")
    assert shard_cache_path("x/r.db", 0, 2) == Path("x/r.shard-0-of-2.db")
    assert base_cache_file(Path("x/r.shard-0-of-2.db")) == Path("x/r.db")
    assert base_cache_file(Path("x/responses.sqlite")) is None
    assert shard_cache_location(None, "1/2") is None
    assert shard_cache_location("c.sqlite", None) == "c.sqlite"
    assert shard_cache_location("c.sqlite", "1/2") == "c.shard-1-of-2.sqlite"
    with pytest.raises(ValueError, match="shard"):
        shard_cache_location("c.sqlite", "2/2")


def test_shards_write_their_own_caches_and_merge_folds_them(
    tmp_path, pool, server, monkeypatch, capsys
):
    out = tmp_path / "tagged"
    base = out / "_cache" / "responses.sqlite"
    # an earlier run cached the first two rows, folded into the base cache
    earlier = tmp_path / "earlier.sqlite"
    load_pool(pool).select(range(2)).map(
        tagger(server, str(earlier)), batched=True, with_indices=True
    )
    assert server.requests == 2 and fold_caches(base, [earlier]) == 2
    before = digest(base)

    opened: list[str] = []
    connect = sqlite3.connect

    def spy(database, *args, **kwargs):
        opened.append(str(database))
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(cache_module.sqlite3, "connect", spy)
    server.reset()
    for index in range(2):
        spec = f"{index}/2"
        step = tagger(server, shard_cache_location(out / "_cache", spec))
        run = run_sharded(
            load_pool(pool), out, lambda ds, s=step: ds.map(s, batched=True, with_indices=True),
            spec,
        )  # fmt: skip
        assert not run.skipped
    assert server.requests == ROWS - 2  # the base cache's rows were hits
    shard_files = shard_cache_files(base, 2)
    assert [p.name for p in shard_files] == [
        "responses.shard-0-of-2.sqlite", "responses.shard-1-of-2.sqlite"
    ]  # fmt: skip
    assert [len(ResponseCache(p)) for p in shard_files] == [1, 3]
    # the base was only ever opened read-only, without locks, and is untouched
    to_base = [name for name in opened if Path(name.split("?")[0].removeprefix("file:")) == base]
    assert to_base and all(name.endswith("?mode=ro&immutable=1") for name in to_base)
    assert digest(base) == before and sidecars(base) == []
    monkeypatch.undo()

    assert main(["merge", str(out), str(tmp_path / "merged.jsonl")]) == 0
    assert "folded 2 shard response cache(s)" in capsys.readouterr().out
    assert len(ResponseCache(base)) == ROWS
    assert all(p.is_file() for p in shard_files)  # kept
    # folding again adds nothing
    assert fold_caches(base, shard_files) == 0 and len(ResponseCache(base)) == ROWS

    server.reset()
    again = tmp_path / "again.jsonl"
    code = main(
        ["tag", str(pool), str(again), "--backend", "openai", "--model", "m",
         "--base-url", server.base_url, "--max-retries", "0", "--cache", str(base.parent)]
    )  # fmt: skip
    assert code == 0 and server.requests == 0
    assert load_pool(again)["labels"] == load_pool(tmp_path / "merged.jsonl")["labels"]


def _result(text: str) -> GenerationResult:
    return GenerationResult(text=text)


def test_fold_is_keyed_by_content_atomic_and_keeps_the_base(tmp_path):
    one, two = (
        ResponseCache(tmp_path / "c.shard-0-of-2.sqlite"),
        ResponseCache(tmp_path / "c.shard-1-of-2.sqlite"),
    )
    one.put_many([("a", _result("A1")), ("b", _result("B"))])
    two.put_many([("a", _result("A2")), ("c", _result("C"))])
    one.close()
    two.close()
    base = tmp_path / "c.sqlite"
    assert fold_caches(base, [one.path, two.path]) == 3  # a new base, renamed into place
    assert not [p for p in tmp_path.iterdir() if "hf-mig-tmp" in p.name]
    cache = ResponseCache(base)
    assert cache.get("a").text == "A1" and cache.get("c").text == "C"
    assert fold_caches(base, [two.path, one.path]) == 0 and cache.get("a").text == "A1"
    # an unreadable source: named, and nothing is added
    bad = tmp_path / "c.shard-2-of-3.sqlite"
    bad.write_bytes(b"not a database" * 100)
    three = ResponseCache(tmp_path / "c.shard-0-of-3.sqlite")
    three.put_many([("d", _result("D"))])
    three.close()
    with pytest.raises(ValueError, match="c.shard-2-of-3.sqlite"):
        fold_caches(base, [three.path, bad])
    assert "d" not in ResponseCache(base) and len(ResponseCache(base)) == 3
    # a shard's cache reads its base read-only
    shard = ResponseCache(shard_cache_path(base, 1, 3))
    assert shard.base == base and shard.get("b").text == "B" and len(shard) == 0


def test_merge_options_for_caches(tmp_path, pool, capsys):
    out = tmp_path / "scored"
    for index in range(2):
        assert (
            main(["score", str(pool), str(out), "--scorer", "length", "--shard", f"{index}/2"]) == 0
        )
    # no cache beside the shards: nothing to fold, nothing said
    assert main(["merge", str(out), str(tmp_path / "m.jsonl")]) == 0
    assert "folded" not in capsys.readouterr().out
    assert not (out / "_cache").exists()
    code = main(["merge", str(out), str(tmp_path / "m2.jsonl"), "--cache", str(tmp_path / "c")])
    assert code == 2 and "no shard cache files of 2 shards" in capsys.readouterr().err
    assert not (tmp_path / "m2.jsonl").exists()  # found before the merge
    mine = ResponseCache(tmp_path / "c" / "responses.shard-1-of-2.sqlite")
    mine.put_many([("k", _result("v"))])
    mine.close()
    args = ["merge", str(out), str(tmp_path / "m3.jsonl"), "--cache", str(tmp_path / "c")]
    assert main([*args, "--no-fold-caches"]) == 0
    assert not (tmp_path / "c" / "responses.sqlite").exists()
    assert main([*args, "--overwrite"]) == 0
    assert ResponseCache(tmp_path / "c").get("k").text == "v"


def test_cli_shards_cache_in_their_own_files_and_merge_folds_them(tmp_path, pool, server, capsys):
    out = tmp_path / "tagged"
    common = ["--backend", "openai", "--model", "m", "--base-url", server.base_url,
              "--max-retries", "0"]  # fmt: skip
    for index in range(2):
        assert main(["tag", str(pool), str(out), "--shard", f"{index}/2", *common]) == 0
    assert server.requests == ROWS
    cache_dir = out / "_cache"
    assert sorted(p.name for p in cache_dir.glob("*.sqlite")) == [
        "responses.shard-0-of-2.sqlite", "responses.shard-1-of-2.sqlite"
    ]  # fmt: skip
    assert main(["merge", str(out), str(tmp_path / "merged.jsonl")]) == 0
    assert len(ResponseCache(cache_dir / "responses.sqlite")) == ROWS
    server.reset()
    again = tmp_path / "again"
    for index in range(3):
        spec = f"{index}/3"
        args = ["tag", str(pool), str(again), "--shard", spec, "--cache", str(cache_dir)]
        assert main([*args, *common]) == 0
    assert server.requests == 0  # every shard of another cut read the folded base


def test_a_worker_of_a_shard_reads_the_shard_file_then_the_base(tmp_path):
    from hf_mig.models.generation.cache import worker_cache_path

    base = tmp_path / "responses.sqlite"
    shard = shard_cache_path(base, 0, 2)
    for path, key in ((base, "a"), (shard, "b")):  # written by runs that have ended
        writer = ResponseCache(path)
        writer.put_many([(key, _result(key.upper()))])
        writer.close()
    worker = ResponseCache(worker_cache_path(shard, "run1-0"))
    assert worker.path.name == "responses.shard-0-of-2.actor-run1-0.sqlite"
    assert worker.bases == [shard, base]
    assert worker.get("a").text == "A" and worker.get("b").text == "B" and len(worker) == 0
    assert shard_cache_files(base) == [shard]  # a worker's file is not a shard's
    with pytest.raises(ValueError, match="worker tag"):
        worker_cache_path(base, "Bad Tag")
