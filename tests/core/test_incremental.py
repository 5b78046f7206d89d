"""Extending a finished greedy: exact continuation, grown pools, changed pools, k_more bounds."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, concatenate_datasets

from hf_mig import LabelGraph, MIGSelector, Objective, greedy_select
from hf_mig.core.encoding import PoolValidationError
from hf_mig.core.incremental import greedy_extend, replay_state


def random_graph(k_labels, seed, edges=3):
    """About ``edges`` similarity edges per label, weights in [0.7, 1]."""
    rng = np.random.default_rng([seed, 1])
    a, b = rng.integers(0, k_labels, size=(2, edges * k_labels))
    keep = a < b
    pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
    w = np.round(rng.uniform(0.7, 1.0, len(pairs)), 2)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    labels = [f"l{i:03d}" for i in range(k_labels)]
    return LabelGraph.from_edges(labels, rows, cols, np.concatenate([w, w]))


def _arrays(n, k_labels, seed):
    """A pool of ``n`` rows with 0 to 4 distinct sorted labels, integer scores (ties), and P."""
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(k_labels, size=c, replace=False)) for c in rng.integers(0, 5, n)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    scores = rng.integers(1, 4, size=n).astype(float)
    prop = random_graph(k_labels, seed).propagation_matrix(1.0)
    return (indptr, np.concatenate(rows).astype(np.int64), scores, prop)


def _head(arrays, n):
    indptr, ids, scores, prop = arrays
    return (indptr[: n + 1], ids[: indptr[n]], scores[:n], prop)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("objective", [Objective(), Objective("exp", alpha=0.5)])
def test_extend_without_new_rows_continues_the_greedy_exactly(compiled, objective):
    arrays = _arrays(300, 40, 1)
    k, k_more = 30, 25
    first = greedy_select(*arrays, k, objective, compiled=compiled)
    full = greedy_select(*arrays, k + k_more, objective, compiled=compiled)
    state = replay_state(*arrays, first.indices, objective, compiled=compiled)
    assert state.objective == pytest.approx(first.objective_trace[-1], rel=1e-12)
    more, after = greedy_extend(*arrays, k_more, state, objective, compiled=compiled)
    assert more.indices.tolist() == full.indices[k:].tolist()
    np.testing.assert_array_equal(more.gains, full.gains[k:])
    np.testing.assert_allclose(more.objective_trace, full.objective_trace[k:], rtol=1e-12)
    assert after.picks.tolist() == full.indices.tolist()
    assert state.picks.tolist() == first.indices.tolist()  # the input state is left as it was
    # and again from the returned state
    again, _ = greedy_extend(*arrays, 5, after, objective, compiled=compiled)
    longer = greedy_select(*arrays, k + k_more + 5, objective, compiled=compiled)
    assert again.indices.tolist() == longer.indices[-5:].tolist()


def test_extend_by_scan_matches_lazy():
    arrays = _arrays(200, 30, 2)
    state = replay_state(*arrays, greedy_select(*arrays, 10).indices)
    lazy, _ = greedy_extend(*arrays, 15, state, engine="lazy")
    scan, _ = greedy_extend(*arrays, 15, state, engine="scan")
    assert lazy.indices.tolist() == scan.indices.tolist()


@pytest.mark.parametrize("seed", range(6))
def test_extend_over_appended_rows_is_close_to_a_fresh_greedy(seed):
    arrays = _arrays(600, 50, seed)
    n_old, k, k_more = 500, 40, 20
    old = greedy_select(*_head(arrays, n_old), k)
    state = replay_state(*arrays, old.indices)
    more, after = greedy_extend(*arrays, k_more, state)
    fresh = greedy_select(*arrays, k + k_more)
    assert after.picks[:k].tolist() == old.indices.tolist()
    assert np.unique(after.picks).size == k + k_more
    assert after.objective >= old.objective_trace[-1]
    assert after.objective >= 0.99 * fresh.objective_trace[-1]
    assert more.objective_trace[-1] == after.objective


def test_k_more_bounds_and_bad_state():
    arrays = _arrays(50, 20, 3)
    state = replay_state(*arrays, greedy_select(*arrays, 45).indices)
    for bad in (0, -1, 6):
        with pytest.raises(ValueError, match="k_more"):
            greedy_extend(*arrays, bad, state)
    with pytest.raises(TypeError, match="k_more"):
        greedy_extend(*arrays, 2.0, state)
    more, _ = greedy_extend(*arrays, 5, state)  # every row picked
    assert sorted(state.picks.tolist() + more.indices.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="pool has 40 rows"):
        greedy_extend(*_head(arrays, 40), 1, state)
    with pytest.raises(ValueError, match="repeat"):
        replay_state(*arrays, [1, 1])


# ---------------------------------------------------------------------------- the selector
def _dataset(arrays, rows, labels):
    indptr, ids, scores, _ = arrays
    return Dataset.from_dict(
        {
            "labels": [[labels[j] for j in ids[indptr[i] : indptr[i + 1]]] for i in rows],
            "score": [float(scores[i]) for i in rows],
            "row": list(rows),
        }
    )


@pytest.fixture(scope="module")
def pools():
    arrays = _arrays(400, 30, 4)
    graph = random_graph(30, 4)
    old = _dataset(arrays, range(320), graph.labels)
    union = concatenate_datasets([old, _dataset(arrays, range(320, 400), graph.labels)])
    return graph, old, union


def test_selector_extend_same_pool_equals_a_larger_k(pools):
    graph, old, _ = pools
    sel = MIGSelector(20, label_graph=graph, record_gains=True)
    sel.select(old)
    out = sel.extend(old, 10)
    ref = MIGSelector(30, label_graph=graph, record_gains=True).select(old)
    assert out["row"] == ref["row"]
    assert out["mig_gain"] == ref["mig_gain"]
    assert out["mig_rank"] == list(range(30))
    out = sel.extend(old, 5)  # again, from the updated state
    assert out["row"] == MIGSelector(35, label_graph=graph).select(old)["row"]


def test_selector_extend_over_appended_rows(pools):
    graph, old, union = pools
    sel = MIGSelector(25, label_graph=graph, explain=2)
    first = sel.select(old)["row"]
    out = sel.extend(union, 15)
    assert out["row"][:25] == first and len(set(out["row"])) == 40
    assert len(out["mig_why"]) == 40
    fresh = MIGSelector(40, label_graph=graph)
    fresh.select(union)
    assert sel.objective_trace_[-1] >= 0.99 * fresh.objective_trace_[-1]
    assert sel.encoding_report_["rows"] == 400


def test_selector_extend_refuses_a_changed_pool(pools):
    graph, old, union = pools
    sel = MIGSelector(10, label_graph=graph)
    sel.select(old)
    changed = union.map(lambda r, i: {"score": r["score"] + (i == 7)}, with_indices=True)
    with pytest.raises(PoolValidationError, match=r"row 7: column 'score'"):
        sel.extend(changed, 5)
    relabeled = union.map(
        lambda r, i: {"labels": r["labels"][::-1][:1] if i == 12 else r["labels"]},
        with_indices=True,
    )
    with pytest.raises(PoolValidationError, match=r"row 12: column 'labels'"):
        sel.extend(relabeled, 5)
    with pytest.raises(PoolValidationError, match="fewer than"):
        sel.extend(old.select(range(100)), 5)
    with pytest.raises(ValueError, match="k_more"):
        sel.extend(union, 391)
    with pytest.raises(RuntimeError, match="select first"):
        MIGSelector(10, label_graph=graph).extend(union, 5)
    with pytest.raises(ValueError, match="budget"):
        budgeted = MIGSelector(10, label_graph=graph, budget=10.0, cost_column="score")
        budgeted.select(old)
        budgeted.extend(union, 5)
