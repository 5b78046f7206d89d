"""The training selection cache is keyed by the content of every selector option.

Only the data step runs (:func:`hf_mig.train.data.load_training_data`) on a generated 40-row
pool: a label graph object enters the key by its content (two graphs with the same counts but
other edges are two selections; the same graph loaded twice is one), and an option with no
content identity (a function) means the selection is computed and never cached.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from hf_mig.annotate.graph import LabelGraph
from hf_mig.data.io import load_pool
from hf_mig.selectors.mig import MIGSelector
from hf_mig.train.config import DataConfig, SelectionSpec
from hf_mig.train.data import (
    UncacheableOptionError,
    load_training_data,
    selection_key,
    selection_spec,
)

LABELS = [f"tag{i}" for i in range(8)]
K = 5


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """40 rows: 1-3 of ``LABELS``, a score in [1, 10] and a two-turn conversation."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(40):
            labels = sorted(set(rng.choice(LABELS, size=int(rng.integers(1, 4))).tolist()))
            row = {
                "labels": labels,
                "score": float(1 + 9 * rng.random()),
                "messages": [
                    {"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ],
            }
            fh.write(json.dumps(row) + "\n")
    return path


def _graph(a: int, b: int) -> LabelGraph:
    """``LABELS`` with one edge ``a``-``b`` of weight 0.95, threshold 0.9."""
    return LabelGraph.from_edges(LABELS, [a, b], [b, a], [0.95, 0.95], threshold=0.9)


def _config(pool: Path, cache: Path, **options) -> DataConfig:
    return DataConfig(
        pool=str(pool), cache_dir=str(cache), selection=SelectionSpec("mig", K, dict(options))
    )


def _key(config: DataConfig) -> str:
    return selection_key("sha256:pool", selection_spec(config))


def _fresh_picks(pool: Path, graph: LabelGraph) -> list[int]:
    return [int(i) for i in MIGSelector(K, label_graph=graph).select_indices(load_pool(str(pool)))]


def test_graphs_with_equal_counts_but_other_edges_are_two_selections(pool, tmp_path):
    first, second = _graph(0, 1), _graph(2, 5)
    assert repr(first) == repr(second)  # equal counts and threshold: repr cannot tell them apart
    assert first.fingerprint() != second.fingerprint()
    one, two = (
        _config(pool, tmp_path, label_graph=first),
        _config(pool, tmp_path, label_graph=second),
    )
    assert _key(one) != _key(two)

    a, b = load_training_data(one), load_training_data(two)
    assert a.cache_hit is False and b.cache_hit is False
    assert a.cache_path != b.cache_path
    picks_a = [int(i) for i in np.load(a.cache_path / "indices.npy")]
    picks_b = [int(i) for i in np.load(b.cache_path / "indices.npy")]
    assert picks_a == _fresh_picks(pool, first)
    assert picks_b == _fresh_picks(pool, second)
    assert set(picks_a) != set(picks_b)  # other rows to train on, not just another order
    assert sorted(b.train_rows["pool_index"]) == sorted(picks_b)


def test_the_same_graph_loaded_twice_from_disk_is_one_cached_selection(pool, tmp_path):
    path = tmp_path / "graph.npz"
    _graph(2, 3).save(path)
    once, twice = LabelGraph.load(path), LabelGraph.load(path)
    assert once is not twice and once.fingerprint() == twice.fingerprint()
    cache = tmp_path / "cache"
    config = _config(pool, cache, label_graph=once)
    assert _key(config) == _key(_config(pool, cache, label_graph=twice))

    first = load_training_data(config)
    again = load_training_data(_config(pool, cache, label_graph=twice))
    assert (first.cache_hit, again.cache_hit) == (False, True)
    assert again.cache_path == first.cache_path
    assert again.manifest["selection_cache"] == {"key": first.cache_path.name, "hit": True}
    assert list(again.train_rows["pool_index"]) == list(first.train_rows["pool_index"])
    # the graph's file by path is keyed by the file's bytes: another entry, the same picks
    by_path = load_training_data(_config(pool, cache, label_graph=str(path)))
    assert by_path.cache_hit is False
    np.testing.assert_array_equal(
        np.load(by_path.cache_path / "indices.npy"), np.load(first.cache_path / "indices.npy")
    )


def test_an_array_option_is_keyed_by_all_its_values():
    base = np.zeros(5000)
    changed = base.copy()
    changed[2500] = 1.0  # repr() elides the middle of a long array
    assert repr(base) == repr(changed)

    def key(value) -> str:
        return _key(DataConfig(pool="p", selection=SelectionSpec("mig", K, {"weights": value})))

    assert key(base) == key(base.copy())
    assert key(base) != key(changed)
    assert key(base) != key(base.astype(np.float32))
    assert key(np.int64(3)) == key(3) and key(np.float64(0.5)) == key(0.5)
    assert key({"a", "b"}) == key(frozenset({"b", "a"}))


def test_an_option_without_content_identity_is_computed_and_never_cached(pool, tmp_path, caplog):
    def embed(texts):
        raise AssertionError("a given label graph needs no embedder")

    options = {"label_graph": _graph(0, 1), "embedder": embed}
    config = _config(pool, tmp_path / "cache", **options)
    with pytest.raises(UncacheableOptionError, match=r"option 'embedder'.*function"):
        selection_spec(config)

    with caplog.at_level(logging.WARNING, logger="hf_mig.train.data"):
        first = load_training_data(config)
        again = load_training_data(config)
    assert (first.cache_hit, again.cache_hit) == (False, False)
    assert first.cache_path is None and again.cache_path is None
    assert first.manifest["selection_cache"] == {"key": None, "hit": False}
    assert not (tmp_path / "cache").exists()
    reasons = [
        r.getMessage() for r in caplog.records if "selection cache not used" in r.getMessage()
    ]
    assert len(reasons) == 2 and "'embedder'" in reasons[0]
    picks = sorted(first.train_rows["pool_index"])
    assert picks == sorted(_fresh_picks(pool, _graph(0, 1)))
