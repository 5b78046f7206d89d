"""Budgeted greedy: best of cost-scaled and unit-cost lazy greedy, within the budget."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from datasets import Dataset
from test_greedy import random_graph, random_pool

from hf_mig import LabelGraph, MIGSelector, Objective, greedy_select
from hf_mig.core.budget import budget_select

LINEAR = Objective("pow", a=1.0, b=1.0)  # E(S) = K + sum of the picked weights


def disjoint_pool(weights):
    """Row i has label i alone, P = I: with a linear phi, row i's gain is its weight."""
    n = len(weights)
    return np.arange(n + 1), np.arange(n), np.asarray(weights, float), sp.identity(n, "d")


def test_cost_scaled_wins_hand_worked():
    # budget 10: unit-cost takes row 0 (gain 10) and is full; cost-scaled takes rows 1 and 2
    # (6 per unit of cost each), then row 0 no longer fits: 12 > 10.
    indptr, ids, w, p = disjoint_pool([10, 6, 6])
    r = budget_select(indptr, ids, w, p, 10, [10, 1, 1], objective=LINEAR)
    assert r.indices.tolist() == [1, 2]
    assert r.stats["strategy"] == "cost_scaled"
    assert r.stats["objective_cost_scaled"] == pytest.approx(3 + 12)
    assert r.stats["objective_unit"] == pytest.approx(3 + 10)
    assert r.stats["cost"] == 2


def test_unit_wins_hand_worked():
    # cost-scaled takes row 1 (2 per unit against 1), after which row 0 (cost 10) no longer
    # fits: E = 2; unit-cost takes row 0: E = 10.
    indptr, ids, w, p = disjoint_pool([10, 2])
    r = budget_select(indptr, ids, w, p, 10, [10, 1], objective=LINEAR)
    assert r.indices.tolist() == [0]
    assert r.stats["strategy"] == "unit"
    assert r.stats["objective_cost_scaled"] == pytest.approx(2 + 2)
    assert r.stats["objective_unit"] == pytest.approx(2 + 10)
    np.testing.assert_array_equal(r.gains, [10.0])


def brute_force(indptr, ids, w, propagation, costs, budget, objective, scaled, exact, k=None):
    """Either greedy spelled out densely: U = A P; every fitting row's key at every step."""
    n = w.size
    a = np.zeros((n, propagation.shape[0]))
    for i in range(n):
        a[i, ids[indptr[i] : indptr[i + 1]]] = w[i]
    u = a @ propagation.toarray()
    x = np.zeros(propagation.shape[0])
    picked, spent, out = np.zeros(n, bool), 0.0, []
    while len(out) < (k or n):
        if exact:
            gains = (objective.value(x + u) - objective.value(x)).sum(axis=1)
        else:
            gains = u @ objective.derivative(x)
        keys = gains / costs if scaled else gains
        keys[picked | (spent + costs > budget)] = -np.inf
        i = int(np.argmax(keys))
        if keys[i] == -np.inf:
            break
        out.append(i)
        picked[i] = True
        spent += costs[i]
        x += u[i]
    return out, float(objective.value(x).sum())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gain", ["gradient", "exact"])
def test_matches_brute_force(seed, gain):
    indptr, ids, w = random_pool(120, 20, seed + 20, integer_scores=False, dup_rows=False)
    p = random_graph(20, seed, density=0.15).propagation_matrix(1.0)
    costs = np.random.default_rng(seed).integers(1, 40, size=w.size).astype(float)
    budget = 0.15 * costs.sum()
    objective = Objective()
    r = budget_select(indptr, ids, w, p, budget, costs, objective=objective, gain=gain)
    exact = gain == "exact"
    scaled, e_scaled = brute_force(indptr, ids, w, p, costs, budget, objective, True, exact)
    unit, e_unit = brute_force(indptr, ids, w, p, costs, budget, objective, False, exact)
    assert r.stats["objective_cost_scaled"] == pytest.approx(e_scaled)
    assert r.stats["objective_unit"] == pytest.approx(e_unit)
    assert r.indices.tolist() == (unit if e_unit > e_scaled else scaled)
    assert r.stats["strategy"] == ("unit" if e_unit > e_scaled else "cost_scaled")
    assert r.objective_trace[-1] == pytest.approx(max(e_scaled, e_unit))


def test_interpreted_equals_compiled():
    indptr, ids, w = random_pool(200, 30, 7)
    p = random_graph(30, 7).propagation_matrix(2.0)
    costs = np.random.default_rng(7).lognormal(5, 1, size=w.size)
    fast = budget_select(indptr, ids, w, p, costs.sum() / 10, costs, compiled=None)
    slow = budget_select(indptr, ids, w, p, costs.sum() / 10, costs, compiled=False)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_array_equal(fast.gains, slow.gains)


@pytest.mark.parametrize("seed", range(50))
def test_budget_never_exceeded(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    indptr, ids, w = random_pool(n, 15, seed)
    p = random_graph(15, seed).propagation_matrix(1.0)
    costs = np.ceil(rng.lognormal(4, 1.2, size=n))
    budget = float(rng.uniform(costs.min(), costs.sum()))
    r = budget_select(indptr, ids, w, p, budget, costs, refresh_fraction=0.5)
    assert costs[r.indices].sum() <= budget
    assert r.stats["cost"] == costs[r.indices].sum()
    assert len(set(r.indices.tolist())) == r.indices.size
    # a selection stops only when no row left fits
    left = np.setdiff1d(np.arange(n), r.indices)
    assert (costs[r.indices].sum() + costs[left] > budget).all()


def test_k_binds_before_budget():
    indptr, ids, w = random_pool(100, 20, 1)
    p = random_graph(20, 1).propagation_matrix(1.0)
    costs = np.ones(w.size)
    r = budget_select(indptr, ids, w, p, 50, costs, k=7)
    assert r.indices.size == 7
    r = budget_select(indptr, ids, w, p, 5, costs, k=7)
    assert r.indices.size == 5


def test_row_over_budget_never_picked():
    indptr, ids, w, p = disjoint_pool([100, 1, 1])
    r = budget_select(indptr, ids, w, p, 5, [6, 1, 1], objective=LINEAR)
    assert 0 not in r.indices.tolist()
    with pytest.raises(ValueError, match=r"no row fits budget=0.5 .*row 1, costs 1"):
        budget_select(indptr, ids, w, p, 0.5, [6, 1, 1], objective=LINEAR)


def test_unit_costs_and_large_budget_equal_greedy_select():
    indptr, ids, w = random_pool(150, 25, 3)
    p = random_graph(25, 3).propagation_matrix(1.0)
    expected = greedy_select(indptr, ids, w, p, 40)
    r = budget_select(indptr, ids, w, p, 1e9, np.ones(w.size), k=40)
    np.testing.assert_array_equal(r.indices, expected.indices)
    np.testing.assert_array_equal(r.gains, expected.gains)


@pytest.mark.parametrize("bad", [0.0, -3.0, np.nan, np.inf])
def test_bad_costs_name_row_and_column(bad):
    indptr, ids, w, p = disjoint_pool([1, 2, 3])
    with pytest.raises(ValueError, match=r"row 2: column 'num_tokens' is .*expected a finite"):
        budget_select(indptr, ids, w, p, 5, [1, 1, bad], cost_column="num_tokens")


@pytest.mark.parametrize("budget", [0, -1, np.nan, np.inf, True, "10"])
def test_bad_budget(budget):
    indptr, ids, w, p = disjoint_pool([1, 2, 3])
    with pytest.raises(ValueError, match="budget must be a finite number > 0"):
        budget_select(indptr, ids, w, p, budget, [1, 1, 1])


def test_non_concave_phi_refused():
    indptr, ids, w, p = disjoint_pool([1, 2, 3])
    with pytest.raises(ValueError, match="not concave"):
        budget_select(indptr, ids, w, p, 2, [1, 1, 1], objective=Objective("pow", b=1.5))


# ---------------------------------------------------------------------------- MIGSelector
def budget_pool(costs):
    labels = [["a"], ["b"], ["c"], ["a", "b"]]
    return Dataset.from_dict(
        {"labels": labels, "score": [10.0, 6.0, 6.0, 1.0], "num_tokens": costs}
    )


@pytest.fixture
def graph():
    return LabelGraph.from_edges(["a", "b", "c"], [], [], [])


def test_selector_budget(graph):
    pool = budget_pool([10, 1, 1, 20])
    mig = MIGSelector(4, label_graph=graph, phi_a=1.0, phi_b=1.0, budget=10)
    assert mig.select_indices(pool).tolist() == [1, 2]
    assert mig.result_.stats["strategy"] == "cost_scaled"
    assert MIGSelector(1, label_graph=graph, budget=10).select_indices(pool).size == 1


def test_selector_budget_alone_needs_no_k(graph):
    pool = budget_pool([10, 1, 1, 20])
    alone = MIGSelector(label_graph=graph, phi_a=1.0, phi_b=1.0, budget=10)
    assert alone.k is None
    expected = MIGSelector(4, label_graph=graph, phi_a=1.0, phi_b=1.0, budget=10)
    assert alone.select_indices(pool).tolist() == expected.select_indices(pool).tolist() == [1, 2]
    with pytest.raises(TypeError, match="only with a budget"):
        MIGSelector(label_graph=graph).select_indices(pool)
    pool = pool.add_column("source", ["x", "y", "x", "y"])
    shares = MIGSelector(label_graph=graph, budget=10, quotas={"x": (0.5, None)})
    with pytest.raises(ValueError, match=r"shares of k \(x: 0.5\) need k"):
        shares.select_indices(pool)
    counts = MIGSelector(label_graph=graph, phi_a=1.0, phi_b=1.0, budget=10, quotas={"x": (1, 1)})
    picks = counts.select_indices(pool).tolist()
    assert sum(pool["source"][i] == "x" for i in picks) == 1


def test_selector_without_budget_unchanged(graph):
    pool = budget_pool([10, 1, 1, 20])
    mig = MIGSelector(3, label_graph=graph)
    assert mig.budget is None and mig.cost_column == "num_tokens"
    expected = MIGSelector(3, label_graph=graph).select_indices(pool.remove_columns("num_tokens"))
    np.testing.assert_array_equal(mig.select_indices(pool), expected)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_selector_bad_costs(graph, bad):
    pool = budget_pool([10, 1, bad, 20])
    with pytest.raises(ValueError, match=r"row 2: column 'num_tokens' is "):
        MIGSelector(2, label_graph=graph, budget=10).select_indices(pool)


def test_selector_missing_cost_column(graph):
    pool = budget_pool([10, 1, 1, 20]).remove_columns("num_tokens")
    with pytest.raises(ValueError, match=r"cost_column 'num_tokens' not found"):
        MIGSelector(2, label_graph=graph, budget=10).select_indices(pool)
    with pytest.raises(ValueError, match=r"budget must be"):
        MIGSelector(2, label_graph=graph, budget=-1).select_indices(budget_pool([1, 1, 1, 1]))


def counting_embedder(calls):
    def embed(texts):
        calls.append(len(texts))
        return np.random.default_rng(0).normal(size=(len(texts), 8))

    return embed


@pytest.mark.parametrize("costs, budget, message", [
    ([10, 1, float("nan"), 20], 10, r"row 2: column 'num_tokens' is nan"),
    ([10, 3, 4, 20], 2, r"no row fits budget=2 \(column 'num_tokens'\); the cheapest, row 1"),
])  # fmt: skip
def test_costs_are_checked_before_the_label_graph_is_built(costs, budget, message):
    from datasets import IterableDataset

    calls = []
    options = {"embedder": counting_embedder(calls), "threshold": 0.9, "graph_cache": False}
    pool = budget_pool(costs)
    with pytest.raises(ValueError, match=message):
        MIGSelector(2, budget=budget, **options).select_indices(pool)
    stream = IterableDataset.from_generator(lambda: iter(pool))
    with pytest.raises(ValueError, match=message):
        MIGSelector(2, budget=budget, **options).select_streaming(stream)
    assert calls == []  # the embedder never ran
    assert MIGSelector(2, budget=100, **options).select_indices(budget_pool([10, 3, 4, 20])).size
    assert calls  # and it does run once the costs are fine


def test_a_stream_checks_k_before_reading_and_refuses_an_empty_pool(graph):
    from datasets import IterableDataset

    from hf_mig.core.encoding import DegeneratePoolError

    read = []  # rows read from the stream

    def rows():
        for row in budget_pool([1, 2, 3, 4]):
            read.append(1)
            yield row

    for k, error in ((0, ValueError), ("5", TypeError)):
        with pytest.raises(error, match="k must be"):
            MIGSelector(k, label_graph=graph).select_streaming(IterableDataset.from_generator(rows))
    with pytest.raises(TypeError, match="only with a budget"):
        MIGSelector(label_graph=graph).select_streaming(IterableDataset.from_generator(rows))
    assert len(read) <= 3  # at most the first row of each stream, for its columns: no pass

    def nothing():
        yield from ()

    empty = IterableDataset.from_generator(nothing)
    for options in ({"k": 2}, {"budget": 10.0}, {"budget": 10.0, "record_gains": True}):
        with pytest.raises(DegeneratePoolError, match="the pool has no rows"):
            MIGSelector(label_graph=graph, **options).select_streaming(empty)
    nothing_in_memory = budget_pool([1, 2, 3, 4]).select([])
    with pytest.raises(DegeneratePoolError, match="the pool has no rows"):
        MIGSelector(label_graph=graph, budget=10.0).select_indices(nothing_in_memory)


def test_total_cost_is_the_greedys_own_sum():
    """Reports recompute the picks' cost with total_cost: it must equal the cost the greedy
    kept within the budget to the last bit, which a pairwise sum does not always do."""
    from hf_mig.core.budget import total_cost

    differs = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        indptr, ids, w = random_pool(60, 12, seed)
        p = random_graph(12, seed).propagation_matrix(1.0)
        costs = rng.uniform(0.1, 1.0, w.size)
        r = budget_select(indptr, ids, w, p, 9.7, costs)
        assert total_cost(costs[r.indices]) == r.stats["cost"] <= 9.7
        differs += float(np.sum(costs[r.indices])) != r.stats["cost"]
    assert differs  # the pairwise sum would have disagreed in some of these runs
    assert total_cost(np.array([])) == 0.0
