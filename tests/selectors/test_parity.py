"""The default selector reproduces the authors' reference selections exactly, in order."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import load_dataset

import hf_mig
from hf_mig import LabelGraph, MIGSelector, RandomSelector


@pytest.fixture(scope="module")
def expected(parity_dir):
    return json.loads((parity_dir / "expected.json").read_text())


@pytest.fixture(scope="module")
def pool(parity_dir):
    return load_dataset("json", data_files=str(parity_dir / "pool.jsonl"), split="train")


def _selector(config, graph, **extra):
    return MIGSelector(
        config["k"],
        label_graph=graph,
        phi=config["phi_type"],
        phi_a=config["phi_a"],
        phi_b=config["phi_b"],
        phi_alpha=config["phi_alpha"],
        prop_weight=config["prop_weight"],
        norm=config["norm"],
        **extra,
    )


CONFIG_NAMES = ["paper_default", "norm_t07", "exp_noprop", "pow05_prop2_t08"]


@pytest.mark.parametrize("name", CONFIG_NAMES)
@pytest.mark.parametrize("engine", ["lazy", "scan"])
def test_reference_selection_reproduced(name, engine, expected, pool, parity_dir):
    config = next(c for c in expected["configs"] if c["name"] == name)
    graph = LabelGraph.load(parity_dir / f"label_graph_t{config['sim_threshold']}.npz")
    assert graph.num_labels == config["num_labels"]
    assert graph.stats()["num_edges"] == config["num_edges"]
    indices = _selector(config, graph, engine=engine).select_indices(pool)
    got = [pool[int(i)]["id"] for i in indices]
    assert got == config["selected_ids"]


def test_default_parameters_are_the_papers(expected, pool, parity_dir):
    config = next(c for c in expected["configs"] if c["name"] == "paper_default")
    graph = parity_dir / "label_graph_t0.9.npz"  # a path works as well as a LabelGraph
    subset = hf_mig.select(pool, config["k"], label_graph=graph)
    assert subset["id"] == config["selected_ids"]


def test_graph_rebuilt_from_embeddings_selects_the_same(expected, pool, parity_dir):
    """Our block-wise thresholding of the label embeddings gives the reference's W.

    The embeddings are the reference's float32 vectors stored as float16 (half the size); the
    rounding moves no cosine across 0.7, 0.8 or 0.9 (closest: 3.9e-5 from 0.7, largest change
    9.1e-5) and changes the edge weights by at most 4e-5, so the edges and the picks are the
    reference's. 2,543 labels make two blocks of the default 2,048.
    """
    z = np.load(parity_dir / "label_embeddings_f16.npz")
    assert z["embeddings"].dtype == np.float16 and z["embeddings"].shape == (2543, 384)
    for config in expected["configs"]:
        graph = LabelGraph.from_embeddings(
            [str(s) for s in z["labels"]], z["embeddings"], threshold=config["sim_threshold"]
        )
        assert graph.stats()["num_edges"] == config["num_edges"]
        reference = LabelGraph.load(parity_dir / f"label_graph_t{config['sim_threshold']}.npz")
        assert graph.labels == reference.labels
        assert (graph.weights != 0).sum() == (reference.weights != 0).sum()
        np.testing.assert_allclose(graph.weights.toarray(), reference.weights.toarray(), atol=1e-4)
        got = [pool[int(i)]["id"] for i in _selector(config, graph).select_indices(pool)]
        assert got == config["selected_ids"]


def test_random_baseline_seed42(expected, pool):
    indices = RandomSelector(expected["random_seed42"]["k"], seed=42).select_indices(pool)
    assert [pool[int(i)]["id"] for i in indices] == expected["random_seed42"]["selected_ids"]
    subset = hf_mig.select(pool, 500, method="random")
    assert subset["id"] == expected["random_seed42"]["selected_ids"]


def test_repository_copy_is_the_shared_fixture_without_text(parity_dir, parity_text_pool):
    """tests/fixtures/parity is the shared parity fixture minus the conversations, nothing else."""
    shared = parity_text_pool.parent
    rows = [json.loads(line) for line in parity_text_pool.read_text().splitlines()]
    ours = [json.loads(line) for line in (parity_dir / "pool.jsonl").read_text().splitlines()]
    assert ours == [{key: row[key] for key in ("id", "labels", "score")} for row in rows]
    assert set(rows[0]) == {"id", "dialogs", "labels", "score"}
    for name in ("expected.json", *(f"label_graph_t{t}.npz" for t in ("0.7", "0.8", "0.9"))):
        assert (parity_dir / name).read_bytes() == (shared / name).read_bytes(), name
    full = np.load(shared / "label_embeddings.npz")
    half = np.load(parity_dir / "label_embeddings_f16.npz")
    assert full["labels"].tolist() == half["labels"].tolist()
    np.testing.assert_array_equal(full["embeddings"].astype(np.float16), half["embeddings"])


def test_norm_with_repeated_labels_matches_the_reference(expected, pool, parity_dir):
    """``norm=True`` on the parity pool with labels repeated in a third of the rows: the picks
    of :func:`benchmarks.reference.dense_reference` (the released code's dense greedy, float32)
    fed the reference's weights, ``score / len(labels)`` with repeats, in the same order."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.reference import dense_propagation, dense_reference

    config = next(c for c in expected["configs"] if c["name"] == "norm_t07")
    graph = LabelGraph.load(parity_dir / "label_graph_t0.7.npz")
    rows = [
        labels + labels[:1] * (1 + i % 2) if i % 3 == 0 and labels else labels
        for i, labels in enumerate(pool["labels"])
    ]
    repeated = pool.remove_columns("labels").add_column("labels", rows)
    index = {label: j for j, label in enumerate(graph.labels)}
    ids = [index[label] for row in rows for label in row]
    indptr = np.cumsum([0] + [len(row) for row in rows])
    weights = [score / len(row) if row else 0.0 for row, score in zip(rows, pool["score"])]
    w = graph.weights.tocoo()
    prop = dense_propagation(graph.num_labels, w.row, w.col, w.data, config["prop_weight"])
    ref = dense_reference(
        indptr, np.asarray(ids), np.asarray(weights), prop, config["k"], a=config["phi_a"]
    )
    got = _selector(config, graph).select_indices(repeated)
    assert got.tolist() == ref.indices.tolist()
    assert [pool[int(i)]["id"] for i in got] != config["selected_ids"]
