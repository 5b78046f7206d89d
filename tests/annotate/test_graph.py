"""LabelGraph: construction (block-wise), symmetry, propagation, persistence, stats."""

from __future__ import annotations

import numpy as np
import pytest

from hf_mig import LabelGraph


def clustered_embeddings(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 5), dim))
    emb = centres[rng.integers(0, len(centres), size=n)] + 0.3 * rng.normal(size=(n, dim))
    return emb.astype(np.float32)


def dense_graph(emb, threshold):
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = e @ e.T
    sims[sims < np.float32(threshold)] = 0
    np.fill_diagonal(sims, 1.0)
    return sims


@pytest.mark.parametrize("block_size", [1, 7, 64, 4096])
def test_blockwise_equals_dense(block_size):
    emb = clustered_embeddings(150, 16, 0)
    labels = [f"label {i}" for i in range(150)]
    graph = LabelGraph.from_embeddings(labels, emb, threshold=0.8, block_size=block_size)
    expected = dense_graph(emb, 0.8)
    np.testing.assert_allclose(graph.weights.toarray(), expected, atol=1e-6)
    assert graph.stats()["num_edges"] > 10
    assert (graph.weights != graph.weights.T).nnz == 0
    np.testing.assert_array_equal(graph.weights.diagonal(), 1.0)


def test_threshold_is_inclusive():
    emb = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    cos01 = float(np.float32(emb[0] @ emb[1]))
    graph = LabelGraph.from_embeddings(["a", "b", "c"], emb, threshold=cos01)
    assert graph.weights[0, 1] == pytest.approx(cos01)
    above = LabelGraph.from_embeddings(
        ["a", "b", "c"], emb, threshold=float(np.nextafter(np.float32(cos01), np.float32(1)))
    )
    assert above.weights[0, 1] == 0
    assert graph.neighbors("b") == [("c", pytest.approx(0.8)), ("a", pytest.approx(0.6))]


def test_from_labels_with_callable_embedder():
    vectors = {"cat": [1, 0, 0], "kitten": [0.95, 0.05, 0], "car": [0, 0, 1]}
    graph = LabelGraph.from_labels(
        list(vectors), embedder=lambda xs: np.array([vectors[x] for x in xs]), threshold=0.9
    )
    assert graph.stats()["num_edges"] == 1
    assert [n for n, _ in graph.neighbors("cat")] == ["kitten"]
    with pytest.raises(ValueError, match="threshold"):
        LabelGraph.from_labels(list(vectors), embedder=lambda xs: np.eye(3))


def test_from_labels_with_real_minilm(tmp_path):
    labels = ["python programming", "python coding", "cooking recipe", "recipe suggestion", "tax"]
    graph = LabelGraph.from_labels(labels, threshold=0.7, cache=tmp_path)
    assert graph.metadata["embedder"].endswith("all-MiniLM-L6-v2")
    linked = {n for n, _ in graph.neighbors("python programming")}
    assert "python coding" in linked
    assert "cooking recipe" not in linked
    assert graph.neighbors("tax") == []


def test_save_load_round_trip_without_pickle(tmp_path):
    emb = clustered_embeddings(60, 8, 1)
    graph = LabelGraph.from_embeddings([f"l{i}" for i in range(60)], emb, threshold=0.85)
    path = tmp_path / "g" / "graph.npz"
    graph.save(path)
    with np.load(path, allow_pickle=False) as z:
        assert {"labels", "rows", "cols", "weights"} <= set(z.files)
    loaded = LabelGraph.load(path)
    assert loaded.labels == graph.labels
    assert loaded.threshold == 0.85
    assert (loaded.weights != graph.weights).nnz == 0


def test_from_edges_validation():
    with pytest.raises(ValueError, match="not symmetric"):
        LabelGraph.from_edges(["a", "b"], [0], [1], [0.9])
    g = LabelGraph.from_edges(["a", "b"], [0], [1], [0.9], symmetrize=True)
    assert g.weights[1, 0] == 0.9 and g.weights[0, 0] == 1.0
    with pytest.raises(ValueError, match="not a label index"):
        LabelGraph.from_edges(["a", "b"], [0, 2], [2, 0], [0.9, 0.9])
    with pytest.raises(ValueError, match="duplicate label 'a'"):
        LabelGraph.from_edges(["a", "a"], [], [], [])
    with pytest.raises(ValueError, match="finite"):
        LabelGraph.from_edges(["a", "b"], [0, 1], [1, 0], [np.nan, np.nan])


def test_propagation_matrix():
    g = LabelGraph.from_edges(["a", "b", "c"], [0, 1, 1, 2], [1, 0, 2, 1], [0.5, 0.5, 0.8, 0.8])
    p = g.propagation_matrix(1.0).toarray()
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    w = g.weights.toarray()
    np.testing.assert_allclose(p, w / w.sum(axis=0))
    np.testing.assert_array_equal(g.propagation_matrix(0.0).toarray(), np.eye(3))
    p2 = g.propagation_matrix(2.0).toarray()
    w2 = np.diag(np.diag(w)) + 2.0 * (w - np.diag(np.diag(w)))
    np.testing.assert_allclose(p2, w2 / w2.sum(axis=0))


def test_stats_and_subgraph():
    g = LabelGraph.from_edges(["a", "b", "c", "d"], [0, 1, 1, 2], [1, 0, 2, 1], [0.9] * 4)
    s = g.stats()
    assert s["num_labels"] == 4 and s["num_edges"] == 2 and s["isolated_labels"] == 1
    assert s["degree_histogram"] == {0: 1, 1: 2, 2: 1}
    sub = g.subgraph(["c", "b"])
    assert sub.labels == ["c", "b"] and sub.stats()["num_edges"] == 1
    with pytest.raises(KeyError):
        g.subgraph(["zzz"])
