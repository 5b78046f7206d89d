"""MIGSelector on datasets: the Dataset contract, bad inputs, vocabulary handling."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from datasets import Dataset, load_dataset

import hf_mig
from hf_mig import LabelGraph, MIGSelector
from hf_mig.core.encoding import PoolValidationError


@pytest.fixture(scope="module")
def parity_pool(parity_dir):
    return load_dataset("json", data_files=str(parity_dir / "pool.jsonl"), split="train")


@pytest.fixture(scope="module")
def graph09(parity_dir):
    return LabelGraph.load(parity_dir / "label_graph_t0.9.npz")


def toy(labels, scores, **extra):
    return Dataset.from_dict({"labels": labels, "score": scores, **extra})


TOY_GRAPH = LabelGraph.from_edges(["code", "coding", "math", "poem"], [0, 1], [1, 0], [0.95, 0.95])


def test_select_returns_view_in_pick_order_with_extra_columns(parity_pool, graph09):
    sel = MIGSelector(50, label_graph=graph09, record_gains=True)
    subset = sel.select(parity_pool)
    assert len(subset) == 50
    assert set(parity_pool.column_names) <= set(subset.column_names)
    idx = sel.result_.indices
    assert subset["id"] == [parity_pool[int(i)]["id"] for i in idx]
    assert subset["mig_rank"] == list(range(50))
    np.testing.assert_allclose(subset["mig_gain"], sel.result_.gains)
    assert all(a >= b for a, b in zip(subset["mig_gain"], subset["mig_gain"][1:]))
    trace = sel.objective_trace_
    assert trace.shape == (50,) and np.all(np.diff(trace) > 0)


def test_selection_on_a_view_indexes_the_view(parity_pool, graph09):
    view = parity_pool.shuffle(seed=0).select(range(500))
    idx = MIGSelector(20, label_graph=graph09).select_indices(view)
    flat = Dataset.from_list(view.to_list())
    assert MIGSelector(20, label_graph=graph09).select_indices(flat).tolist() == idx.tolist()


def test_hand_checkable_toy_pool():
    # "code" and "coding" are linked; a pick covering "code" also informs "coding".
    ds = toy([["code"], ["coding"], ["math"], ["poem", "math"], []], [3.0, 3.0, 2.0, 1.0, 5.0])
    order = MIGSelector(5, label_graph=TOY_GRAPH).select_indices(ds).tolist()
    # row 0 first (ties with row 1 on gain, lower index wins); row 2 (math, fresh) beats row 1
    # (coding, half-informed by row 0); row 4 has no labels and comes last.
    assert order[:2] == [0, 2]
    assert order[-1] == 4


def test_graph_built_from_pool_labels_with_callable_embedder():
    vectors = {"code": [1, 0], "coding": [0.99, 0.1], "math": [0, 1]}
    ds = toy([["code"], ["coding"], ["math"]], [1.0, 1.0, 1.0])
    sel = MIGSelector(2, embedder=lambda xs: np.array([vectors[x] for x in xs]), threshold=0.9)
    assert sel.select_indices(ds).tolist() == [0, 2]
    assert sel.label_graph_.labels == ["code", "coding", "math"]
    assert sel.label_graph_.stats()["num_edges"] == 1
    with pytest.raises(ValueError, match="threshold"):
        MIGSelector(2, embedder=lambda xs: np.eye(len(xs))).select(ds)


def test_labels_outside_vocabulary_are_counted_not_silent(caplog):
    ds = toy([["code", "unknown"], ["zzz"], ["math"]], [1.0, 2.0, 1.0])
    sel = MIGSelector(3, label_graph=TOY_GRAPH)
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        order = sel.select_indices(ds).tolist()
    rep = sel.encoding_report_
    assert rep["labels_outside_vocabulary"] == 2
    assert rep["rows_without_labels"] == 1
    assert sorted(rep["examples_outside_vocabulary"]) == ["unknown", "zzz"]
    assert order[-1] == 1  # kept, selected last
    assert "outside the vocabulary" in caplog.text and "no vocabulary label" in caplog.text


def test_vocabulary_filter_and_repeated_labels():
    ds = toy([["code", "code"], ["poem"], ["math"]], [1.0, 10.0, 1.0])
    sel = MIGSelector(3, label_graph=TOY_GRAPH, vocabulary=["code", "math"])
    order = sel.select_indices(ds).tolist()
    assert sel.label_graph_.labels == ["code", "math"]
    assert sel.encoding_report_["repeated_labels"] == 1
    assert order[-1] == 1  # "poem" was filtered out: row 1 has no labels left


def test_norm_divides_by_label_count():
    ds = toy([["code", "math", "poem"], ["math"]], [2.0, 1.0])
    g = LabelGraph.from_edges(["code", "math", "poem"], [], [], [])
    plain = MIGSelector(1, label_graph=g).select_indices(ds).tolist()
    normed = MIGSelector(1, label_graph=g, norm=True, phi="exp", phi_alpha=1.0)
    # plain: row 0 carries 2.0 on three labels; normed: 2/3 on each of three vs 1.0 on one
    assert plain == [0]
    assert normed.select_indices(ds).tolist() == [0]
    assert normed._encoding.weights(True).tolist() == pytest.approx([2 / 3, 1.0])


@pytest.mark.parametrize(
    "data, message",
    [
        ({"labels": [["code"]], "score": [math.nan]}, "row 0: column 'score' is nan"),
        (
            {"labels": [["code"], ["math"]], "score": [1.0, math.inf]},
            "row 1: column 'score' is inf",
        ),
        ({"labels": [["code"], ["math"]], "score": [1.0, -2.0]}, "row 1: column 'score' is -2.0"),
        ({"labels": [["code"], ["math"]], "score": [1.0, None]}, "row 1: column 'score' is null"),
        ({"labels": [["code"]], "score": ["high"]}, "must hold numbers"),
        ({"labels": ["code"], "score": [1.0]}, "must hold a list of label strings"),
        ({"labels": [[1, 2]], "score": [1.0]}, "lists of strings"),
        ({"labels": [["code"], None], "score": [1.0, 1.0]}, "row 1: column 'labels' is null"),
        ({"labels": [["code"], ["math", None]], "score": [1.0, 1.0]}, "row 1: column 'labels'"),
        ({"tags": [["code"]], "score": [1.0]}, "column 'labels' not found"),
    ],
)
def test_bad_input_errors_name_row_and_field(data, message):
    ds = Dataset.from_dict(data)
    with pytest.raises((PoolValidationError, ValueError), match=message.replace("(", r"\(")):
        MIGSelector(1, label_graph=TOY_GRAPH).select_indices(ds)


@pytest.mark.parametrize(
    "k, err",
    [(0, ValueError), (-3, ValueError), (4, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_bad_k(k, err):
    ds = toy([["code"], ["math"], ["poem"]], [1.0, 1.0, 1.0])
    with pytest.raises(err, match="k"):
        MIGSelector(k, label_graph=TOY_GRAPH).select_indices(ds)
    with pytest.raises(err, match="k"):
        hf_mig.select(ds, k, method="random")


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown selection method 'best'.*mig.*random"):
        hf_mig.select(toy([["code"]], [1.0]), 1, method="best")


def test_selectors_satisfy_protocol():
    for cls in hf_mig.SELECTORS.values():
        assert isinstance(cls(k=1), hf_mig.Selector)


def test_encoding_sorts_and_deduplicates_rows_like_numpy():
    from hf_mig.core.encoding import encode_pool
    from hf_mig.selectors.mig import arrow_columns

    rng = np.random.default_rng(0)
    vocab = [f"t{i:02d}" for i in range(30)]
    labels = [list(rng.choice(vocab + ["unknown"], size=rng.integers(0, 9))) for _ in range(400)]
    ds = toy(labels, [1.0] * 400)
    enc = encode_pool(arrow_columns(ds, ["labels", "score"]), vocab)
    expected = [sorted({vocab.index(x) for x in row if x != "unknown"}) for row in labels]
    got = [enc.label_ids[enc.indptr[i] : enc.indptr[i + 1]].tolist() for i in range(400)]
    assert got == expected
    known = [[x for x in row if x != "unknown"] for row in labels]
    assert enc.report["labels_outside_vocabulary"] == sum(
        len(r) - len(k) for r, k in zip(labels, known)
    )
    assert enc.report["repeated_labels"] == sum(len(k) - len(set(k)) for k in known)
