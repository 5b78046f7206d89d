"""InsTag tagging: the tolerant parser, InsTagTagger end to end, sharding and ``hf-mig tag``."""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path

import datasets
import pytest
from openai_server import OpenAIServer, last_user_message

from hf_mig.annotate.taggers import InsTagTagger
from hf_mig.annotate.taggers.instag import (
    INSTAG_PROMPT,
    INSTAGGER_CHAT_TEMPLATE,
    INSTAGGER_SYSTEM_PROMPT,
    build_instag_messages,
)
from hf_mig.annotate.taggers.json_tags import clean_tag as normalize_tag
from hf_mig.annotate.taggers.json_tags import parse_tags
from hf_mig.cli.main import main
from hf_mig.data.formats import to_messages
from hf_mig.runtime import sharding
from hf_mig.runtime.sharding import (
    SHARD_MARKER,
    list_shards,
    parse_shard,
    run_sharded,
    shard_bounds,
    shard_dataset,
    shard_path,
)

# ---------------------------------------------------------------- tolerant parser

ITEMS = (
    '[{"tag": "Python Programming", "explanation": "x"}, {"tag": "debugging", "explanation": "y"}]'
)

PARSE_CASES = [
    # (output, expected tags, error expected, repairs that must be reported)
    (ITEMS, ["python programming", "debugging"], False, []),
    ("```json\n" + ITEMS + "\n```", ["python programming", "debugging"], False, ["fenced"]),
    ("```\n" + ITEMS, ["python programming", "debugging"], False, ["fenced"]),
    ('```json\n[{"tag": "math", "explanation": "x"}, {"tag": "alg', ["math"], False, ["truncated"]),
    ('[{"tag": "a", "explanation": "x"}, {"tag": "b", "expl', ["a"], False, ["truncated"]),
    ("[{'tag': 'Cooking', 'explanation': 'a recipe'}]", ["cooking"], False, ["single_quotes"]),
    (
        'Sure! Here are the tags: [{"tag": "Advice", "explanation": "b"}] Hope this helps [1].',
        ["advice"],
        False,
        ["leading_text", "trailing_text"],
    ),
    ('["coding", "Math ", "coding", "  MATH"]', ["coding", "math"], False, []),
    ('[["Coding", "why"], ["math", "because"]]', ["coding", "math"], False, []),
    ('{"tag": "Translation", "explanation": "x"}', ["translation"], False, ["no_list"]),
    ('{"tag": "a", "explanation": "x"}\n{"tag": "b", "explanation": "y"}', ["a", "b"], False, []),
    ('{"tag": "a", "explanation": "x"}, {"tag": "b", "expl', ["a"], False, ["truncated"]),
    ('{"tags": ["x", "y"]}', ["x", "y"], False, []),
    ('{"Tag": "Upper Key", "Explanation": "z"}', ["upper key"], False, []),
    (
        '[{"tag": "a", "explanation": "he said "hi""}, {"tag": "b", "explanation": "ok"}]',
        ["a", "b"],
        False,
        ["regex"],
    ),
    ('[begin] the query [end]\n[{"tag": "q", "explanation": "z"}]', ["q"], False, ["leading_text"]),
    ('[{"tag": "user\'s intent", "explanation": "it\'s fine"}]', ["user's intent"], False, []),
    ('[{"tag": "a"}, {"explanation": "no tag"}, 3]', ["a"], False, ["invalid_items"]),
    ('[{"tag": "multi\n  line  tag"}]', ["multi line tag"], False, []),
    ("[]", [], False, []),
    ("I cannot identify any tags here.", [], True, []),
    ("", [], True, []),
    (None, [], True, []),
    ('[{"explanation": "no tag"}]', [], True, []),
    ("[1, 2, 3]", [], True, []),
    ("[{", [], True, []),
    ("tags: coding, math", [], True, []),
]


@pytest.mark.parametrize(("output", "tags", "error", "repairs"), PARSE_CASES)
def test_parse_tags_table(output, tags, error, repairs):
    parsed = parse_tags(output)
    assert parsed.tags == tags
    assert (parsed.error is not None) == error, parsed
    assert parsed.ok == (not error)
    for repair in repairs:
        assert repair in parsed.repairs, parsed.repairs
    if not error and not repairs:
        assert not set(parsed.repairs) - {"no_list"}, parsed.repairs


def test_parse_tags_keeps_explanations_and_never_raises():
    parsed = parse_tags(ITEMS)
    assert parsed.items[0] == {"tag": "Python Programming", "explanation": "x"}
    for junk in ["{" * 5000, "[" * 3000 + "]" * 10, "'" * 100, '"tag": ', "\x00\x01[", "[{]}"]:
        assert isinstance(parse_tags(junk).tags, list)
    assert normalize_tag("  Python\t Programming ") == "python programming"
    assert normalize_tag('"quoted"') == "quoted"
    assert normalize_tag("   ") is None and normalize_tag(3) is None


# ---------------------------------------------------------------- prompts


def test_prompts_and_instagger_template(tiny_llama_path):
    from transformers import AutoTokenizer

    query = "Write a haiku about rain."
    plain = build_instag_messages(query, "instag")
    assert plain == [{"role": "user", "content": INSTAG_PROMPT.replace("{query}", query)}]
    assert "[begin]\nWrite a haiku about rain.\n[end]" in plain[0]["content"]
    custom = build_instag_messages(query, 'Tags of {query} as JSON like {"tag": str}')
    assert custom[0]["content"] == 'Tags of Write a haiku about rain. as JSON like {"tag": str}'
    with pytest.raises(ValueError, match="query"):
        build_instag_messages(query, "no placeholder")
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    text = tok.apply_chat_template(
        build_instag_messages(query, "instagger"),
        chat_template=INSTAGGER_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == f"<s>{INSTAGGER_SYSTEM_PROMPT} Query: {query} Assistant:"
    assert InsTagTagger("openai", "OFA-Sys/InsTagger").prompt == "instagger"
    assert InsTagTagger("openai", "gpt-4o-mini").prompt == "instag"


# ---------------------------------------------------------------- tagger end to end (HTTP)


def query_of(body: dict) -> str:
    """The user query inside an InsTag prompt (or the whole message for the InsTagger prompt)."""
    text = last_user_message(body)
    match = re.search(r"\[begin\]\n(.*)\n\[end\]", text, re.DOTALL)
    return match.group(1) if match else text


def words_of(query: str) -> list[str]:
    return re.findall(r"[A-Za-z]{6,}", query)[:3]


def instag_responder(body: dict) -> str:
    """Canned InsTag-style answers in three shapes; prose for queries saying MALFORMED."""
    query = query_of(body)
    if "MALFORMED" in query:
        return "I think this is about many things, but I will not use JSON."
    items = [
        {"tag": f"  {w.title()} Topic ", "explanation": f"mentions {w}"} for w in words_of(query)
    ]
    style = len(query) % 3
    if style == 0:
        return json.dumps(items)
    if style == 1:
        return "```json\n" + json.dumps(items, indent=1) + "\n```"
    return "Tags: " + repr(items)


def expected_labels(query: str) -> list[str]:
    out: list[str] = []
    for w in words_of(query):
        if f"{w.lower()} topic" not in out:
            out.append(f"{w.lower()} topic")
    return out


@pytest.fixture(scope="module")
def lima(data_dir) -> list[dict]:
    rows = json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))
    return rows[:10] + rows[1000:1002]  # + 2 multi-turn rows (``history``)


@pytest.fixture(scope="module")
def pool(lima) -> datasets.Dataset:
    ds = datasets.Dataset.from_list(lima).map(to_messages, batched=True, with_indices=True)
    extra = [
        [{"role": "user", "content": "MALFORMED please describe the weather in Lisbon"}],
        [{"role": "user", "content": "Rejected request <<FAIL400>> about gardening"}],
        ds[10]["messages"],  # a duplicate of row 10, in the same map batch (10..14)
        [{"role": "system", "content": "be brief"}, {"role": "assistant", "content": "hello"}],
    ]
    more = datasets.Dataset.from_dict({"messages": extra})
    return datasets.concatenate_datasets([ds.select_columns(["messages"]), more])


@pytest.fixture
def server():
    with OpenAIServer(instag_responder) as srv:
        yield srv


def openai_tagger(server: OpenAIServer, **kwargs) -> InsTagTagger:
    options = {"base_url": server.base_url, "max_retries": 1, "backoff": 0.01, "progress": False}
    return InsTagTagger("openai", "tagger-model", backend_options=options, **kwargs)


def first_user(messages: list[dict]) -> str | None:
    return next((m["content"] for m in messages if m["role"] == "user"), None)


def test_instag_tagger_end_to_end(server, pool, caplog):
    tagger = openai_tagger(server)
    with caplog.at_level(logging.WARNING, logger="hf_mig.annotate.taggers.instag"):
        out = pool.map(tagger, batched=True, batch_size=5, with_indices=True)
    assert out.features["labels"] == datasets.Sequence(datasets.Value("string"))
    assert out.features["instag_error"] == datasets.Value("string")
    n = len(pool)
    malformed, failed, duplicate, no_user = n - 4, n - 3, n - 2, n - 1
    for i, row in enumerate(out):
        query = first_user(row["messages"])
        if i == malformed:
            assert row["labels"] == [] and "unparsable output" in row["instag_error"]
            assert row["instag_raw"] == [instag_responder({"messages": row["messages"]})]
        elif i == failed:
            assert row["labels"] == [] and row["instag_raw"] == [None]
            assert "generation failed" in row["instag_error"] and "HTTP 400" in row["instag_error"]
        elif i == no_user:
            assert row["labels"] == [] and row["instag_raw"] == [] and row["instag_error"] is None
        else:
            assert row["instag_error"] is None, row["instag_error"]
            assert row["labels"] == expected_labels(query), (i, query[:60])
            assert len(row["instag_raw"]) == 1
    assert out[duplicate]["labels"] == out[10]["labels"]
    stats = tagger.stats
    assert stats.rows == n and stats.errors == 2 and stats.no_user_text == 1
    assert stats.unparsable == 1 and stats.generation_failed == 1
    assert stats.tagged + stats.empty == n - 3
    assert stats.repaired >= 2  # fenced and single-quoted answers
    unique_queries = n - 2  # the duplicate is asked once per batch; the row without user text never
    assert server.requests == unique_queries
    assert any(f"rows {malformed}" in r.getMessage() for r in caplog.records)


def test_instag_tagger_all_turns_and_prompt_payload(server, pool):
    multi = pool.select([10, 11])  # the two LIMA rows with history
    out = multi.map(openai_tagger(server, turns="all"), batched=True, with_indices=True)
    for row in out:
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert len(users) >= 2 and len(row["instag_raw"]) == len(users)
        expected: list[str] = []
        for query in users:
            expected += [t for t in expected_labels(query) if t not in expected]
        assert row["labels"] == expected
    body = server.bodies[-1]
    assert body["model"] == "tagger-model" and body["temperature"] == 0.0
    assert body["max_tokens"] == 256 and body["messages"][0]["content"].startswith(
        "You are a tagging"
    )


def test_instag_errors_name_the_turn(server):
    ds = datasets.Dataset.from_dict(
        {
            "messages": [
                [
                    {"role": "user", "content": "Explain photosynthesis simply"},
                    {"role": "assistant", "content": "Plants make food."},
                    {"role": "user", "content": "MALFORMED and now for animals"},
                ]
            ]
        }
    )
    out = ds.map(openai_tagger(server, turns="all"), batched=True)
    assert out[0]["labels"] == expected_labels("Explain photosynthesis simply")
    assert out[0]["instag_error"].startswith("user turn 2: unparsable output")


def test_instag_tagger_cache_and_fingerprint(tmp_path, server, pool):
    tagger = openai_tagger(server, cache=tmp_path / "cache")
    first = pool.map(tagger, batched=True, with_indices=True)
    asked = server.requests
    again = openai_tagger(server, cache=tmp_path / "cache")
    assert again.fingerprint == tagger.fingerprint  # used or not, same configuration
    second = pool.map(again, batched=True, with_indices=True)
    assert server.requests == asked + 2  # the failed and the unparsable rows are asked again
    assert second["labels"] == first["labels"]
    assert again.stats.cache_hits == asked - 2
    assert openai_tagger(server, max_new_tokens=100).fingerprint != tagger.fingerprint
    other = InsTagTagger("openai", "other-model", backend_options={"base_url": server.base_url})
    assert other.fingerprint != tagger.fingerprint
    clone = pickle.loads(pickle.dumps(tagger))
    assert clone.config == tagger.config and clone._backend is None


def test_instag_tagger_num_proc_matches_single_process(server, pool):
    single = pool.map(openai_tagger(server), batched=True, batch_size=4, with_indices=True)
    multi = pool.map(
        openai_tagger(server), batched=True, batch_size=4, with_indices=True, num_proc=2
    )
    assert multi["labels"] == single["labels"]
    assert multi["instag_error"] == single["instag_error"]


def test_instag_tagger_rejects_bad_rows_and_options(server):
    tagger = openai_tagger(server)
    with pytest.raises(ValueError, match=r"row 7: messages\[0\].role"):
        tagger({"messages": [[{"from": "human", "value": "hi"}]]}, [7])
    with pytest.raises(KeyError, match="to_messages"):
        tagger({"conversations": [[]]})
    with pytest.raises(ValueError, match="backend"):
        InsTagTagger("llamacpp", "m")
    with pytest.raises(ValueError, match="turns"):
        InsTagTagger("openai", "m", turns="last")
    with pytest.raises(ValueError, match="may not set 'model'"):
        InsTagTagger("openai", "m", backend_options={"model": "x"})


def test_instag_tagger_with_a_local_chat_model(tiny_llama_path):
    """Any chat model works through the transformers backend; its (random) outputs are kept
    visible and counted as unparsable, never turned into empty labels silently."""
    ds = datasets.Dataset.from_dict(
        {"messages": [[{"role": "user", "content": q}] for q in ("Sort a list", "Bake bread")]}
    )
    tagger = InsTagTagger(
        "transformers",
        str(tiny_llama_path),
        prompt="instagger",
        max_new_tokens=6,
        backend_options={"device": "cpu", "progress": False},
    )
    out = ds.map(tagger, batched=True, with_indices=True)
    assert tagger.backend().chat_template == INSTAGGER_CHAT_TEMPLATE
    for row in out:
        assert len(row["instag_raw"]) == 1 and row["instag_raw"][0] is not None
        parsed = parse_tags(row["instag_raw"][0])
        assert (row["instag_error"] is None) == parsed.ok
        assert row["labels"] == parsed.tags
    assert tagger.stats.unparsable + tagger.stats.tagged + tagger.stats.empty == 2


# ---------------------------------------------------------------- sharding helpers


def test_parse_shard():
    assert parse_shard("0/2") == (0, 2) and parse_shard(" 3 / 16 ") == (3, 16)
    for bad in ("2/2", "-1/2", "1", "a/b", "1/0", "1/2/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


@pytest.mark.parametrize("rows", [0, 1, 5, 7, 12])
def test_shard_bounds_match_datasets(rows):
    ds = datasets.Dataset.from_dict({"i": list(range(rows))})
    for n in (1, 2, 3, 5):
        seen = []
        for i in range(n):
            start, stop = shard_bounds(rows, i, n)
            part = shard_dataset(ds, i, n)["i"]
            assert part == list(range(start, stop))
            if start < stop:
                assert part == ds.shard(num_shards=n, index=i, contiguous=True)["i"]
            seen += part
        assert seen == list(range(rows))


def test_run_sharded_is_atomic_and_resumable(tmp_path):
    ds = datasets.Dataset.from_dict({"i": list(range(7))})
    calls = []

    def double(part):
        calls.append(len(part))
        return part.map(lambda r: {"j": 2 * r["i"]})

    stale = tmp_path / "out" / f".shard-1-of-2.hf-mig-tmp-{sharding._HOST}-999999999-1"
    stale.mkdir(parents=True)
    first = run_sharded(ds, tmp_path / "out", double, "1/2")
    assert not stale.exists() and not first.skipped and calls == [3]
    assert first.path == shard_path(tmp_path / "out", 1, 2)
    again = run_sharded(ds, tmp_path / "out", double, "1/2")
    assert again.skipped and calls == [3] and again.load()["j"] == [8, 10, 12]

    def crash(part):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_sharded(ds, tmp_path / "out", crash, "0/2")
    assert not shard_path(tmp_path / "out", 0, 2).exists()
    assert [p.name for p in (tmp_path / "out").iterdir() if "hf-mig-tmp" in p.name] == []
    run_sharded(ds, tmp_path / "out", double, (0, 2))
    shards = list_shards(tmp_path / "out")
    assert [(s.index, s.start, s.stop, s.rows) for s in shards] == [(0, 0, 4, 4), (1, 4, 7, 3)]
    (tmp_path / "out" / "shard-5-of-9").mkdir()  # not complete: ignored by list_shards ...
    assert len(list_shards(tmp_path / "out")) == 2
    with pytest.raises(ValueError, match="not a complete shard"):  # ... and never overwritten
        run_sharded(ds, tmp_path / "out", double, "5/9")
    with pytest.raises(ValueError, match="folder of shards"):
        run_sharded(ds, tmp_path / "x.jsonl", double, "0/2")
    whole = run_sharded(ds, tmp_path / "whole.parquet", double)
    assert whole.path.is_file() and datasets.Dataset.from_parquet(str(whole.path))["j"][-1] == 12


# ---------------------------------------------------------------- hf-mig tag


@pytest.fixture
def pool_file(tmp_path, lima) -> Path:
    rows = [dict(r) for r in lima[:8]]
    rows[3]["instruction"] = "MALFORMED " + rows[3]["instruction"]
    rows[5]["instruction"] = "<<FAIL400>> " + rows[5]["instruction"]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tag_args(pool_file: Path, out: Path, server: OpenAIServer, *extra: str) -> list[str]:
    return [
        "tag", str(pool_file), str(out), "--backend", "openai", "--model", "tagger-model",
        "--base-url", server.base_url, "--max-retries", "1", "--backoff", "0.01", *extra,
    ]  # fmt: skip


def test_cli_tag_unsharded(tmp_path, pool_file, server, capsys):
    out = tmp_path / "tagged.jsonl"
    assert main(tag_args(pool_file, out, server)) == 0
    printed = capsys.readouterr().out
    assert "rows: 8; rows with errors: 2 (unparsable: 1, generation failed: 1)" in printed
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 8 and server.requests == 8
    for i, row in enumerate(rows):
        if i in (3, 5):
            assert row["instag_error"] and row["labels"] == []
        else:
            assert row["instag_error"] is None
            assert row["labels"] == expected_labels(first_user(row["messages"]))
    empty = sum(1 for r in rows if not r["labels"])
    assert f"rows without labels: {empty}" in printed
    assert (tmp_path / "tagged.jsonl.cache" / "responses.sqlite").is_file()
    assert main(tag_args(pool_file, out, server, "--overwrite")) == 0  # answers from the cache
    assert server.requests == 10  # the failed and the unparsable rows were asked again


def test_cli_tag_shards_and_resume(tmp_path, pool_file, server, capsys):
    out = tmp_path / "shards"
    assert main(tag_args(pool_file, out, server, "--shard", "0/2")) == 0
    assert server.requests == 4 and "shard 0/2 rows: 4" in capsys.readouterr().out
    assert main(tag_args(pool_file, out, server, "--shard", "1/2")) == 0
    assert server.requests == 8
    assert main(tag_args(pool_file, out, server, "--shard", "0/2")) == 0
    printed = capsys.readouterr().out
    assert "already complete" in printed and "skipped" in printed
    assert server.requests == 8  # a finished shard costs nothing
    shards = list_shards(out)
    assert [(s.index, s.num_shards, s.rows) for s in shards] == [(0, 2, 4), (1, 2, 4)]
    assert json.loads((shards[0].path / SHARD_MARKER).read_text())["source_rows"] == 8
    merged = datasets.concatenate_datasets([datasets.load_from_disk(str(s.path)) for s in shards])
    whole_out = tmp_path / "whole.jsonl"
    assert main(tag_args(pool_file, whole_out, server, "--no-cache")) == 0
    whole = [json.loads(line) for line in whole_out.read_text().splitlines()]
    assert merged["labels"] == [r["labels"] for r in whole]
    assert merged["instag_error"] == [r["instag_error"] for r in whole]
    caches = sorted(p.name for p in (out / "_cache").glob("*.sqlite"))
    assert caches == ["responses.shard-0-of-2.sqlite", "responses.shard-1-of-2.sqlite"]


def test_cli_tag_bad_arguments(tmp_path, pool_file, server, capsys):
    assert main(tag_args(pool_file, tmp_path / "o.jsonl", server, "--shard", "0/2")) == 2
    assert "folder of shards" in capsys.readouterr().err
    assert main(tag_args(pool_file, tmp_path / "o.jsonl", server, "--shard", "2/2")) == 2
    assert "shard index" in capsys.readouterr().err
    missing = tmp_path / "missing.jsonl"
    assert main(tag_args(missing, tmp_path / "o.jsonl", server)) == 2
    assert "no such file" in capsys.readouterr().err
    assert server.requests == 0
