"""Stochastic greedy: seeded draws, epsilon checks, full samples equal the exact greedy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset
from test_greedy import random_graph, random_pool

from hf_mig import MIGSelector, Objective, greedy_select
from hf_mig.core.stochastic import check_epsilon, sample_size, stochastic_select


@pytest.fixture(scope="module")
def small():
    indptr, ids, w = random_pool(300, 40, seed=3)
    return indptr, ids, w, random_graph(40, seed=3).propagation_matrix(1.0)


def test_same_seed_same_picks(small):
    a = stochastic_select(*small, 30, seed=7)
    b = stochastic_select(*small, 30, seed=7)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.gains, b.gains)
    assert a.stats["objective"] == b.stats["objective"] == a.objective_trace[-1]


def test_different_seeds_differ(small):
    picks = {tuple(stochastic_select(*small, 30, seed=s, epsilon=0.5).indices) for s in range(4)}
    assert len(picks) > 1


def test_interpreted_equals_compiled(small):
    a = stochastic_select(*small, 25, seed=1, epsilon=0.2, compiled=False)
    b = stochastic_select(*small, 25, seed=1, epsilon=0.2)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.objective_trace, b.objective_trace)


def test_picks_distinct_and_stats(small):
    r = stochastic_select(*small, 100, seed=2, epsilon=0.3, chunk_size=7)
    assert len(set(r.indices.tolist())) == 100
    s = sample_size(300, 100, 0.3)
    assert r.stats["sample_size"] == s == math.ceil(3 * math.log(1 / 0.3))
    assert r.stats["evaluations"] == 100 * s
    assert r.stats["engine"] == "stochastic" and r.stats["epsilon"] == 0.3


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 2, float("nan"), "0.1", None, True])
def test_epsilon_validation(small, bad):
    with pytest.raises(ValueError, match="0 < epsilon < 1"):
        check_epsilon(bad)
    with pytest.raises(ValueError, match="epsilon"):
        stochastic_select(*small, 10, epsilon=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_seed_validation(small, bad):
    with pytest.raises(ValueError, match="seed"):
        stochastic_select(*small, 10, seed=bad)


@pytest.mark.parametrize("gain", ["gradient", "exact"])
@pytest.mark.parametrize("objective", [Objective(), Objective("exp", alpha=0.5)])
def test_full_sample_equals_exact_greedy(small, gain, objective):
    # k = 1: s = ceil(n ln(1/eps)) >= n, so every step evaluates every remaining row.
    for k in (1, 2):
        assert sample_size(300, k, 0.01) == 300
    exact = greedy_select(*small, 2, objective, gain=gain, engine="scan")
    r = stochastic_select(*small, 2, objective, gain=gain, epsilon=0.01, seed=5)
    np.testing.assert_array_equal(r.indices, exact.indices)
    # a tiny epsilon makes s >= n for every k, so the whole run is the full scan
    exact = greedy_select(*small, 60, objective, gain=gain, engine="scan")
    r = stochastic_select(*small, 60, objective, gain=gain, epsilon=1e-300, seed=5)
    assert r.stats["sample_size"] == 300
    np.testing.assert_array_equal(r.indices, exact.indices)
    np.testing.assert_array_equal(r.gains, exact.gains)


def test_whole_pool(small):
    r = stochastic_select(*small, 300, seed=1)
    assert sorted(r.indices.tolist()) == list(range(300))


@pytest.mark.parametrize("k", [200, 2000])
def test_objective_close_to_exact_greedy(k):
    indptr, ids, w = random_pool(20_000, 300, seed=11, max_labels=6, integer_scores=False)
    p = random_graph(300, seed=11, density=0.02).propagation_matrix(1.0)
    exact = greedy_select(indptr, ids, w, p, k)
    e0 = exact.initial_objective
    for eps in (0.1, 0.01):
        r = stochastic_select(indptr, ids, w, p, k, epsilon=eps, seed=0)
        ratio = (r.stats["objective"] - e0) / (exact.objective_trace[-1] - e0)
        assert ratio >= 0.9, (eps, ratio)


def selector_pool(n=200, k_labels=12, seed=4):
    indptr, ids, w = random_pool(n, k_labels, seed=seed, dup_rows=False)
    graph = random_graph(k_labels, seed=seed, density=0.2)
    labels = [[graph.labels[j] for j in ids[indptr[i] : indptr[i + 1]]] for i in range(n)]
    return Dataset.from_dict({"labels": labels, "score": w.tolist()}), graph


def test_selector_stochastic_engine():
    pool, graph = selector_pool()
    mig = MIGSelector(20, label_graph=graph, engine="stochastic", epsilon=0.1, seed=3)
    picks = mig.select_indices(pool)
    again = MIGSelector(20, label_graph=graph, engine="stochastic", epsilon=0.1, seed=3)
    np.testing.assert_array_equal(again.select_indices(pool), picks)
    stats = mig.result_.stats
    assert stats["engine"] == "stochastic" and stats["seed"] == 3
    assert stats["objective"] == mig.objective_trace_[-1]
    exact = MIGSelector(20, label_graph=graph, engine="stochastic", epsilon=1e-300)
    expected = MIGSelector(20, label_graph=graph, engine="scan").select_indices(pool)
    np.testing.assert_array_equal(exact.select_indices(pool), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilon": 0}, "0 < epsilon < 1"),
        ({"epsilon": 1.5}, "0 < epsilon < 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"budget": 10}, "engine \\(with a budget\\)"),
    ],
)
def test_selector_stochastic_errors(kwargs, message):
    pool, graph = selector_pool()
    mig = MIGSelector(5, label_graph=graph, engine="stochastic", **kwargs)
    with pytest.raises(ValueError, match=message):
        mig.select_indices(pool.add_column("num_tokens", [1] * len(pool)))
