"""``hf_mig.core.information.explain_picks``: each pick's gain split by label."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from hf_mig.annotate.graph import LabelGraph
from hf_mig.core.encoding import encode_pool
from hf_mig.core.greedy import greedy_select
from hf_mig.core.information import LabelInformation, explain_picks, label_contributions
from hf_mig.core.objective import Objective

# three labels, two edges (a-b, b-c) of weight 0.5 each, three rows with one label each
HAND_P = sp.csr_matrix(np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]))
HAND_TABLE = pa.table({"labels": [["a"], ["b"], ["c"]], "score": [2.0, 1.0, 3.0]})
EXP = Objective("exp", alpha=1.0)


def _hand_info() -> LabelInformation:
    return LabelInformation.build(encode_pool(HAND_TABLE, ["a", "b", "c"]), HAND_P)


def _by_label(explanation) -> tuple[dict[str, float], dict[str, bool]]:
    labels = explanation.labels
    return {d["label"]: d["contribution"] for d in labels}, {d["label"]: d["own"] for d in labels}


def test_hand_worked_exact_gain_with_a_neighbour() -> None:
    # picks: row 2 (c, score 3) then row 0 (a, score 2); phi(x) = 1 - exp(-x)
    first, second = explain_picks(_hand_info(), [2, 0], EXP, gain="exact", top=None)
    # u_2 = 3 * P[c] = (0, 1.5, 3) from x = 0: c is its own label, b a neighbour
    assert (first.rank, first.row) == (0, 2)
    contributions, own = _by_label(first)
    assert contributions == pytest.approx({"c": 1 - math.exp(-3), "b": 1 - math.exp(-1.5)})
    assert own == {"c": True, "b": False}
    assert [d["label"] for d in first.labels] == ["c", "b"]
    assert first.gain == pytest.approx(2 - math.exp(-3) - math.exp(-1.5))
    # u_0 = 2 * P[a] = (2, 1, 0) from x = (0, 1.5, 3): b already holds 1.5
    b = math.exp(-1.5) - math.exp(-2.5)
    contributions, own = _by_label(second)
    assert contributions == pytest.approx({"a": 1 - math.exp(-2), "b": b})
    assert own == {"a": True, "b": False}
    assert second.gain == pytest.approx(1 - math.exp(-2) + b)
    shares = [d["share"] for d in second.labels]
    assert sum(shares) == pytest.approx(1.0)


def test_hand_worked_gradient_gain() -> None:
    first, second = explain_picks(_hand_info(), [2, 0], EXP, gain="gradient", top=1)
    # phi'(0) = 1: the contributions are u_2 itself; then phi'(1.5) * 1 for b
    assert first.labels == [{"label": "c", "contribution": 3.0, "share": 3.0 / 4.5, "own": True}]
    assert first.gain == pytest.approx(4.5)
    assert second.gain == pytest.approx(2.0 + math.exp(-1.5))
    assert second.labels[0]["label"] == "a"


def test_zero_weight_row_and_bad_arguments() -> None:
    table = pa.table({"labels": [["a"], []], "score": [0.0, 1.0]})
    info = LabelInformation.build(encode_pool(table, ["a", "b"]))
    (only, empty) = explain_picks(info, [0, 1])
    assert only.gain == 0.0 and only.labels == [] and empty.labels == []
    with pytest.raises(ValueError, match="gain must be one of"):
        label_contributions(info, [0], gain="nope")
    with pytest.raises(ValueError, match=r"row indices in \[0, 2\)"):
        label_contributions(info, [2])
    with pytest.raises(ValueError, match="top must be"):
        explain_picks(info, [0], top=-1)


def _pool(seed: int, n: int = 300, num_labels: int = 40):
    rng = np.random.default_rng(seed)
    labels = [f"l{j}" for j in range(num_labels)]
    rows = [list(rng.choice(labels, size=rng.integers(0, 5))) for _ in range(n)]
    table = pa.table({"labels": rows, "score": rng.uniform(0, 5, n).round(2)})
    src = rng.integers(0, num_labels, 80)
    dst = rng.integers(0, num_labels, 80)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    sims = rng.uniform(0.9, 1.0, src.size)
    graph = LabelGraph.from_edges(labels, np.r_[src, dst], np.r_[dst, src], np.r_[sims, sims])
    return table, labels, graph


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gain", ["gradient", "exact"])
@pytest.mark.parametrize("phi", [Objective(), Objective("exp", alpha=0.5)])
def test_contributions_sum_to_the_greedy_gain(seed: int, gain: str, phi: Objective) -> None:
    table, labels, graph = _pool(seed)
    info = LabelInformation.build(encode_pool(table, labels), graph.propagation_matrix(1.0))
    enc = info.encoding
    result = greedy_select(
        enc.indptr, enc.label_ids, info.weights, info.propagation, 60, phi, gain=gain
    )
    parts = label_contributions(info, result.indices, phi, gain=gain)
    sums = np.array([terms.sum() for _, terms in parts])
    np.testing.assert_allclose(sums, result.gains, rtol=1e-9, atol=1e-12)
    explained = explain_picks(info, result.indices, phi, gain=gain, top=None)
    np.testing.assert_allclose([e.gain for e in explained], result.gains, rtol=1e-9, atol=1e-12)
    for e in explained:
        assert sum(d["contribution"] for d in e.labels) == pytest.approx(e.gain, rel=1e-9)
        own = set(enc.label_ids[enc.indptr[e.row] : enc.indptr[e.row + 1]].tolist())
        if info.weights[e.row] > 0:
            assert {labels.index(d["label"]) for d in e.labels if d["own"]} == own


def test_selector_explain_column_matches_the_recorded_gains() -> None:
    from datasets import Dataset

    from hf_mig.selectors.mig import WHY_TYPE, MIGSelector

    table, labels, graph = _pool(3, n=120)
    pool = Dataset.from_dict({"labels": table["labels"].to_pylist(), "score": table["score"]})
    for gain in ("gradient", "exact"):
        selector = MIGSelector(k=20, label_graph=graph, gain=gain, record_gains=True, explain=3)
        subset = selector.select(pool)
        assert subset.data.schema.field("mig_why").type == WHY_TYPE
        explained = selector.explanations()
        np.testing.assert_allclose([e.gain for e in explained], subset["mig_gain"], rtol=1e-9)
        for row, why, e in zip(subset, subset["mig_why"], explained):
            assert 0 < len(why) <= 3 and set(why[0]) == {"label", "contribution", "own"}
            assert why[0]["label"] == e.labels[0]["label"]
            assert all(d["own"] == (d["label"] in row["labels"]) for d in why)
    plain = MIGSelector(k=20, label_graph=graph, record_gains=True).select(pool)
    assert plain.column_names == ["labels", "score", "mig_rank", "mig_gain"]
    with pytest.raises(ValueError, match="explain must be an integer >= 0"):
        MIGSelector(k=2, label_graph=graph, explain=-1).select(pool)
    with pytest.raises(ValueError, match=r"explain=2 would replace .*\['mig_why'\]"):
        MIGSelector(k=2, label_graph=graph, explain=2).select(subset)
