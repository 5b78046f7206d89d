"""The on-disk cache of label graphs built from a named embedder (:mod:`hf_mig.annotate.graph`).

The embedder is named by a real model folder in ``tmp_path`` (so its content identity is the
hash of its files, as for any local model) whose encoding is replaced by a counting function:
``SentenceTransformerEmbedder.__call__`` is monkeypatched, so a cache hit shows as no call. One
test runs the real all-MiniLM-L6-v2 twice and refuses to load it the second time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from hf_mig import LabelGraph, MIGSelector
from hf_mig.annotate.graph import graph_cache_dir
from hf_mig.cli.main import main as hf_mig_cli
from hf_mig.models.embedders import SentenceTransformerEmbedder

STEMS = ["code", "math", "poem", "trav", "cook", "hist", "phys", "chem"]
LABELS = sorted(f"{stem}{suffix}" for stem in STEMS for suffix in ("", "-a", "-b", "ing"))


def _vector(text: str, dim: int = 24) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(dim)


def fake_encode(texts) -> np.ndarray:
    """Labels sharing their first four characters are near each other (cosine about 0.95)."""
    rows = [_vector(t[:4]) + 0.3 * _vector(t) for t in texts]
    out = np.array(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class Counter:
    """Records the texts of every ``SentenceTransformerEmbedder`` call."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def method(self):
        def encode(embedder, texts):
            self.calls.append(list(texts))
            return fake_encode(texts)

        return encode


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "hf_mig_cache"
    monkeypatch.setenv("HF_MIG_CACHE", str(root))
    return root / "label_graphs"


@pytest.fixture
def encoder(monkeypatch) -> Counter:
    counter = Counter()
    monkeypatch.setattr(SentenceTransformerEmbedder, "__call__", counter.method())
    return counter


@pytest.fixture
def model(tmp_path) -> Path:
    """A local model folder: what a sentence-transformers model is loaded from."""
    folder = tmp_path / "fake-embedder"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 24}\n')
    (folder / "model.safetensors").write_bytes(np.arange(4096, dtype=np.float32).tobytes())
    (folder / "tokenizer.json").write_text('{"version": "1.0"}\n')
    return folder


def build(labels, model, **kwargs) -> LabelGraph:
    kwargs.setdefault("threshold", 0.9)
    return LabelGraph.from_labels(labels, embedder=str(model), **kwargs)


def assert_same_graph(a: LabelGraph, b: LabelGraph) -> None:
    assert a.labels == b.labels
    assert a.threshold == b.threshold
    assert a.metadata == b.metadata
    assert a.weights.shape == b.weights.shape
    assert (a.weights != b.weights).nnz == 0


def hits(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hf_mig.annotate.graph" and r.getMessage().startswith("label graph cache hit")
    ]


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


# ----------------------------------------------------------------------------- hits
def test_second_build_is_read_from_the_cache(cache_root, encoder, model, caplog):
    assert graph_cache_dir() == cache_root
    first = build(LABELS, model)
    assert len(encoder.calls) == 1 and first.stats()["num_edges"] > 0
    (entry,) = entries(cache_root)
    assert re.fullmatch(r"[0-9a-f]{64}\.npz", entry.name)
    assert not [p for p in cache_root.iterdir() if p != entry]  # no temporary left behind
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        second = build(LABELS, model)
    assert len(encoder.calls) == 1  # not embedded again
    assert hits(caplog) == [
        f"label graph cache hit: key {entry.stem}, {entry} ({len(LABELS)} labels, "
        f"{first.stats()['num_edges']} edges)"
    ]
    assert_same_graph(first, second)
    assert_same_graph(first, build(LABELS, model, cache=False))


def test_same_label_set_in_another_order_is_a_hit(cache_root, encoder, model, caplog):
    first = build(LABELS, model)
    shuffled = list(reversed(LABELS))
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        second = build(shuffled, model)
    assert len(encoder.calls) == 1 and len(hits(caplog)) == 1
    assert second.labels == shuffled
    for label in LABELS:
        assert second.neighbors(label) == first.neighbors(label)


def _change_model(model: Path) -> None:
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))


CHANGES = {
    "threshold": lambda labels, model: build(labels, model, threshold=0.85),
    "label added": lambda labels, model: build([*labels, "code-c"], model),
    "label removed": lambda labels, model: build(labels[1:], model),
    "max_degree": lambda labels, model: build(labels, model, max_degree=2),
    "max_edges": lambda labels, model: build(labels, model, max_edges=1_000),
    "block_size": lambda labels, model: build(labels, model, block_size=7),
    "model content": lambda labels, model: (_change_model(model), build(labels, model))[1],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_of_key_is_a_miss(change, cache_root, encoder, model, caplog):
    build(LABELS, model)
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        CHANGES[change](LABELS, model)
    assert len(encoder.calls) == 2, "the changed build must embed the labels again"
    assert hits(caplog) == []
    assert len(entries(cache_root)) == 2
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        CHANGES[change](LABELS, model) if change != "model content" else build(LABELS, model)
    assert len(encoder.calls) == 2 and len(hits(caplog)) == 1  # each key is a hit again


def test_another_name_for_the_same_model_is_a_miss(cache_root, encoder, model):
    """The name is part of the key (it is recorded in the graph's metadata)."""
    first = build(LABELS, model)
    copy = model.parent / "same-bytes"
    copy.mkdir()
    for path in model.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    second = build(LABELS, copy)
    assert len(encoder.calls) == 2
    assert second.metadata["embedder"] == str(copy) != first.metadata["embedder"]


# ----------------------------------------------------------------------------- not cached
def test_callable_embedders_are_never_cached(cache_root):
    calls = []

    def embed(texts):
        calls.append(texts)
        return fake_encode(texts)

    a = LabelGraph.from_labels(LABELS, embedder=embed, threshold=0.9)
    b = LabelGraph.from_labels(LABELS, embedder=embed, threshold=0.9)
    assert len(calls) == 2 and not cache_root.exists()
    assert_same_graph(a, b)


def test_cache_false_and_a_given_folder(cache_root, encoder, model, tmp_path):
    build(LABELS, model, cache=False)
    build(LABELS, model, cache=False)
    assert len(encoder.calls) == 2 and not cache_root.exists()
    folder = tmp_path / "my graphs"
    build(LABELS, model, cache=folder)
    build(LABELS, model, cache=folder)
    assert len(encoder.calls) == 3 and len(entries(folder)) == 1 and not cache_root.exists()
    with pytest.raises(TypeError, match="cache must be True"):
        build(LABELS, model, cache="")
    for bad in (1, None, 0.5):
        with pytest.raises(TypeError, match="cache must be True"):
            build(LABELS, model, cache=bad)
    assert len(encoder.calls) == 3


def test_unidentifiable_model_builds_without_caching(cache_root, encoder, caplog):
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        graph = LabelGraph.from_labels(LABELS, embedder="nobody/no-such-model", threshold=0.9)
    assert graph.num_labels == len(LABELS) and len(encoder.calls) == 1
    assert not cache_root.exists()
    assert any("label graph cache not used" in r.getMessage() for r in caplog.records)


def test_unwritable_cache_folder_warns_and_returns_the_graph(tmp_path, encoder, model, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be\n")
    with caplog.at_level(logging.WARNING, logger="hf_mig.annotate.graph"):
        graph = build(LABELS, model, cache=blocker)
    assert_same_graph(graph, build(LABELS, model, cache=False))
    assert any("could not write" in r.getMessage() for r in caplog.records)
    assert blocker.read_text() == "a file where the cache folder would be\n"


# ----------------------------------------------------------------------------- corrupt entries
def _garbage(entry: Path, model: Path) -> None:
    entry.write_bytes(b"not a zip archive at all")


def _truncated(entry: Path, model: Path) -> None:
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def _empty(entry: Path, model: Path) -> None:
    entry.write_bytes(b"")


def _other_labels(entry: Path, model: Path) -> None:
    LabelGraph.from_labels(LABELS[:-1], embedder=fake_encode, threshold=0.9, cache=False)._write(
        entry, {"cache_key": entry.stem}
    )


def _without_key(entry: Path, model: Path) -> None:
    graph = LabelGraph.load(entry)
    del graph.metadata["cache_key"]
    graph.save(entry)


def _other_threshold(entry: Path, model: Path) -> None:
    graph = LabelGraph.from_labels(LABELS, embedder=fake_encode, threshold=0.5, cache=False)
    graph._write(entry, {"cache_key": entry.stem})


CORRUPTIONS = {
    "garbage": (_garbage, "not an .npz"),
    "truncated": (_truncated, "truncated or corrupted"),
    "empty": (_empty, "an empty file"),
    "other labels": (_other_labels, "labels are not the 32 requested"),
    "no recorded key": (_without_key, "it records key None"),
    "other threshold": (_other_threshold, "its threshold 0.5 is not 0.9"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_entry_is_rebuilt(corruption, cache_root, encoder, model, caplog):
    original = build(LABELS, model)
    (entry,) = entries(cache_root)
    damage, reason = CORRUPTIONS[corruption]
    damage(entry, model)
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        rebuilt = build(LABELS, model)
    assert len(encoder.calls) == 2  # embedded again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and reason in warnings[0]
    assert "rebuilding" in warnings[0] and hits(caplog) == []
    assert_same_graph(original, rebuilt)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        again = build(LABELS, model)  # the entry was written again
    assert len(encoder.calls) == 2 and len(hits(caplog)) == 1
    assert_same_graph(original, again)


# ----------------------------------------------------------------------------- the selector
@pytest.fixture
def pool() -> Dataset:
    rng = np.random.default_rng(3)
    rows = [
        {
            "id": f"r{i:03d}",
            "labels": sorted(set(rng.choice(LABELS, size=int(rng.integers(1, 5))).tolist())),
            "score": float(1 + 9 * rng.random()),
        }
        for i in range(120)
    ]
    return Dataset.from_list(rows)


def test_selector_reuses_the_graph_and_selects_the_same(cache_root, encoder, model, pool, caplog):
    options = {"embedder": str(model), "threshold": 0.9, "record_gains": True}
    first = MIGSelector(30, **options)
    picks = first.select(pool)
    assert len(encoder.calls) == 1
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        second = MIGSelector(30, **options)
        again = second.select(pool)
    assert len(encoder.calls) == 1 and len(hits(caplog)) == 1
    uncached = MIGSelector(30, graph_cache=False, **options)
    fresh = uncached.select(pool)
    assert len(encoder.calls) == 2
    assert picks.to_list() == again.to_list() == fresh.to_list()
    assert_same_graph(first.label_graph_, second.label_graph_)
    assert_same_graph(first.label_graph_, uncached.label_graph_)


def test_selector_graph_cache_option(cache_root, encoder, model, pool, tmp_path):
    folder = tmp_path / "elsewhere"
    MIGSelector(10, embedder=str(model), threshold=0.9, graph_cache=folder).select(pool)
    assert len(entries(folder)) == 1 and not cache_root.exists()
    for bad in (None, "", 0, 1.0):
        with pytest.raises(TypeError, match="graph_cache must be True"):
            MIGSelector(10, embedder=str(model), threshold=0.9, graph_cache=bad).select(pool)
    assert len(encoder.calls) == 1


def test_cli_select_reuses_the_graph(cache_root, encoder, model, pool, tmp_path, caplog):
    src = tmp_path / "pool.jsonl"
    pool.to_json(src)
    common = ["select", str(src), "--num", "20", "--embedder", str(model), "--threshold", "0.9"]
    outs = [tmp_path / f"out{i}.jsonl" for i in range(3)]
    assert hf_mig_cli([*common, "--out", str(outs[0])]) == 0
    with caplog.at_level(logging.INFO, logger="hf_mig.annotate.graph"):
        assert hf_mig_cli([*common, "--out", str(outs[1])]) == 0
    assert len(encoder.calls) == 1 and len(hits(caplog)) == 1
    assert hf_mig_cli([*common, "--out", str(outs[2]), "--option", "graph_cache=false"]) == 0
    assert len(encoder.calls) == 2
    selections = [[json.loads(line)["id"] for line in out.read_text().splitlines()] for out in outs]
    assert selections[0] == selections[1] == selections[2] and len(selections[0]) == 20


def test_real_minilm_selection_is_read_from_the_cache(cache_root, parity_dir, monkeypatch):
    """The bundled all-MiniLM-L6-v2: the second selection does not load the model at all."""
    from datasets import load_dataset

    pool = load_dataset("json", data_files=str(parity_dir / "pool.jsonl"), split="train")
    pool = pool.select(range(150))
    first = MIGSelector(25)
    picks = first.select_indices(pool)

    def refuse(self):
        raise AssertionError("the embedding model was loaded on a cache hit")

    monkeypatch.setattr(SentenceTransformerEmbedder, "_load", refuse)
    second = MIGSelector(25)
    assert second.select_indices(pool).tolist() == picks.tolist()
    assert_same_graph(first.label_graph_, second.label_graph_)
    (entry,) = entries(cache_root)
    assert LabelGraph.load(entry).metadata["cache_key"] == entry.stem
