"""Greedy under per-group quotas: minimums first, then the global greedy under the maximums."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_budget import LINEAR, disjoint_pool
from test_greedy import random_graph, random_pool

from hf_mig import Objective, greedy_select
from hf_mig.core.quotas import quota_bounds, quota_select


def test_hand_worked():
    # gains = weights (linear phi, P = I). Groups a a b b c; a needs 1, b needs 2, c at most 0.
    # Minimum phase: among groups under their minimum (a, b) the best rows are 1 (a, 5),
    # then 3 (b, 4), then 2 (b, 3): a and b met. Global phase: row 0 (a, 2); row 4 (c, 9) never.
    indptr, ids, w, p = disjoint_pool([2, 5, 3, 4, 9])
    groups = ["a", "a", "b", "b", "c"]
    r = quota_select(indptr, ids, w, p, 4, groups, {"a": (1, None), "b": (2, 2), "c": (0, 0)},
                     LINEAR)  # fmt: skip
    assert r.indices.tolist() == [1, 3, 2, 0]
    np.testing.assert_array_equal(r.gains, [5, 4, 3, 2])
    assert r.stats["quotas"]["b"] == {"min": 2, "max": 2, "picked": 2}
    assert r.stats["quotas"]["c"]["picked"] == 0
    assert r.stats["minimum_picks"] == 3


def test_shares_of_k():
    lower, upper = quota_bounds({"a": (0.25, 0.5)}, ["a", "b"], [10, 10], 10)
    assert lower.tolist() == [3, 0] and upper.tolist() == [5, 10]


def brute_force(indptr, ids, w, propagation, k, groups, lower, upper, objective, exact,
                costs=None, budget=np.inf, scaled=False):  # fmt: skip
    """The two-phase greedy spelled out densely: every allowed row's key at every step."""
    n = w.size
    costs = np.ones(n) if costs is None else np.asarray(costs, float)
    a = np.zeros((n, propagation.shape[0]))
    for i in range(n):
        a[i, ids[indptr[i] : indptr[i + 1]]] = w[i]
    u = a @ propagation.toarray()
    x = np.zeros(propagation.shape[0])
    count = np.zeros(len(lower), int)
    picked, spent, out = np.zeros(n, bool), 0.0, []
    for cap, stop in ((lower, sum(lower)), (upper, k)):
        while len(out) < stop:
            if exact:
                gains = (objective.value(x + u) - objective.value(x)).sum(axis=1)
            else:
                gains = u @ objective.derivative(x)
            keys = gains / costs if scaled else gains
            keys[picked | (spent + costs > budget) | (count[groups] >= np.asarray(cap)[groups])] = (
                -np.inf
            )
            i = int(np.argmax(keys))
            if keys[i] == -np.inf:
                break
            out.append(i)
            picked[i] = True
            spent += costs[i]
            count[groups[i]] += 1
            x += u[i]
    return out, float(objective.value(x).sum())


def generated(seed, n=120, labels=20):
    indptr, ids, w = random_pool(n, labels, seed + 20, integer_scores=False, dup_rows=False)
    p = random_graph(labels, seed, density=0.15).propagation_matrix(1.0)
    groups = np.random.default_rng(seed).integers(0, 4, size=n)
    return indptr, ids, w, p, groups


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gain", ["gradient", "exact"])
def test_matches_brute_force(seed, gain):
    indptr, ids, w, p, groups = generated(seed)
    quotas = {"0": (6, 8), "1": (0, 3), "3": (10, None)}
    r = quota_select(indptr, ids, w, p, 30, groups, quotas, gain=gain)
    lower, upper = [6, 0, 0, 10], [8, 3, int((groups == 2).sum()), int((groups == 3).sum())]
    expected, e = brute_force(indptr, ids, w, p, 30, groups, lower, upper, Objective(),
                              gain == "exact")  # fmt: skip
    assert r.indices.tolist() == expected
    assert r.objective_trace[-1] == pytest.approx(e)


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_with_budget(seed):
    indptr, ids, w, p, groups = generated(seed)
    costs = np.random.default_rng(seed).integers(1, 40, size=w.size).astype(float)
    budget = 0.2 * costs.sum()
    quotas = {"0": (5, 10), "2": (3, 6)}
    r = quota_select(indptr, ids, w, p, 60, groups, quotas, budget=budget, costs=costs)
    sizes = np.bincount(groups, minlength=4)
    lower, upper = [5, 0, 3, 0], [10, sizes[1], 6, sizes[3]]
    runs = [brute_force(indptr, ids, w, p, 60, groups, lower, upper, Objective(), False,
                        costs, budget, scaled) for scaled in (True, False)]  # fmt: skip
    best = runs[1] if runs[1][1] > runs[0][1] else runs[0]
    assert r.indices.tolist() == best[0]


def test_interpreted_equals_compiled():
    indptr, ids, w, p, groups = generated(5, n=200, labels=30)
    quotas = {"1": (10, 20), "2": (0.1, 0.3)}
    fast = quota_select(indptr, ids, w, p, 50, groups, quotas, compiled=None)
    slow = quota_select(indptr, ids, w, p, 50, groups, quotas, compiled=False)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_array_equal(fast.gains, slow.gains)


@pytest.mark.parametrize("seed", range(50))
def test_constraints_never_violated(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 80))
    indptr, ids, w = random_pool(n, 15, seed)
    p = random_graph(15, seed).propagation_matrix(1.0)
    groups = rng.integers(0, 3, size=n)
    sizes = np.bincount(groups, minlength=3)
    k = int(rng.integers(1, n + 1))
    quotas = {}
    for g in range(3):
        if sizes[g] and rng.random() < 0.8:
            lo = int(rng.integers(0, min(sizes[g], k // 3) + 1))
            quotas[str(g)] = (lo, int(rng.integers(lo, sizes[g] + 1)))
    lower, upper = quota_bounds(quotas, [str(g) for g in range(3) if sizes[g]],
                                sizes[sizes > 0], k, fill_k=False)  # fmt: skip
    with_budget = seed % 2 == 1
    costs = np.ceil(rng.lognormal(3, 1, size=n))
    budget = float(costs.sum()) if with_budget else None
    if upper.sum() < k and not with_budget:
        with pytest.raises(ValueError, match="maximums allow"):
            quota_select(indptr, ids, w, p, k, groups, quotas)
        return
    r = quota_select(indptr, ids, w, p, k, groups, quotas, budget=budget, costs=costs,
                     refresh_fraction=0.5)  # fmt: skip
    picks = r.indices
    assert len(set(picks.tolist())) == picks.size <= k
    if not with_budget:
        assert picks.size == k
    else:
        assert costs[picks].sum() <= budget
    counts = np.bincount(groups[picks], minlength=3)
    for name, (lo, hi) in quotas.items():
        assert lo <= counts[int(name)] <= hi


def test_budget_and_quota_both_bind():
    indptr, ids, w, p = disjoint_pool([9, 8, 7, 1, 1])
    groups = ["a", "a", "a", "b", "b"]
    r = quota_select(indptr, ids, w, p, 5, groups, {"a": (0, 2), "b": (1, None)}, LINEAR,
                     budget=4, costs=[2, 1, 1, 1, 3])  # fmt: skip
    counts = {g: [groups[i] for i in r.indices].count(g) for g in "ab"}
    assert counts["a"] <= 2 and counts["b"] >= 1
    assert np.asarray([2, 1, 1, 1, 3])[r.indices].sum() <= 4


def test_minimums_unreachable_within_budget():
    indptr, ids, w, p = disjoint_pool([1, 1, 1])
    with pytest.raises(ValueError, match="no greedy met every minimum within budget=2"):
        quota_select(indptr, ids, w, p, 3, ["a", "a", "b"], {"a": (2, 2), "b": (1, 1)},
                     budget=2, costs=[1, 1, 1])  # fmt: skip


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        ({"a": (3, None), "b": (1, None)}, r"minimums sum to 4, more than k=3"),
        ({"b": (2, 3)}, r"quotas\['b'\]: min 2 but column 'source' has only 1 rows"),
        ({"a": (3, 1)}, r"quotas\['a'\]: min 3 > max 1"),
        ({"z": (0, 1)}, r"group 'z', which column 'source' does not hold; its groups are \['a'"),
        ({"a": (0.5, 1.5)}, r"quotas\['a'\]: max 1.5 is a share of k and must lie in \[0, 1\]"),
        ({"a": (-0.1, None)}, r"min -0.1 is a share of k and must lie in \[0, 1\]"),
        ({"a": (-1, None)}, r"min must be >= 0"),
        ({"a": ("1", None)}, r"must be a count \(int\), a share of k"),
        ({"a": 3}, r"quotas\['a'\] must be \(min, max\)"),
        ({"a": (0, 1), "b": (0, 1)}, r"the maximums allow 2 rows, fewer than k=3"),
    ],
)
def test_infeasible_quotas(quotas, message):
    indptr, ids, w, p = disjoint_pool([1, 2, 3, 4])
    with pytest.raises(ValueError, match=message):
        quota_select(indptr, ids, w, p, 3, ["a", "a", "a", "b"], quotas, quota_column="source")


def test_unbounded_quotas_equal_greedy_select():
    indptr, ids, w = random_pool(150, 25, 3)
    p = random_graph(25, 3).propagation_matrix(1.0)
    expected = greedy_select(indptr, ids, w, p, 40)
    r = quota_select(indptr, ids, w, p, 40, np.zeros(w.size, int), {"0": (0, None)})
    np.testing.assert_array_equal(r.indices, expected.indices)
    np.testing.assert_array_equal(r.gains, expected.gains)


def test_non_concave_phi_refused():
    indptr, ids, w, p = disjoint_pool([1, 2, 3])
    with pytest.raises(ValueError, match="not concave"):
        quota_select(indptr, ids, w, p, 2, "aab", {}, Objective("pow", b=1.5))


def test_identity_propagation_sparse_input():
    indptr, ids, w, _ = disjoint_pool([3, 2, 1])
    r = quota_select(indptr, ids, w, sp.csr_matrix(np.eye(3)), 2, "abb", {"b": (2, 2)}, LINEAR)
    assert r.indices.tolist() == [1, 2]


# ---------------------------------------------------------------------------- MIGSelector
def quota_pool():
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "labels": [["a"], ["b"], ["c"], ["a", "b"], ["c"], ["b"]],
            "score": [10.0, 6.0, 5.0, 1.0, 4.0, 3.0],
            "source": ["x", "x", "y", "y", "z", "z"],
            "num_tokens": [5, 1, 1, 1, 1, 1],
        }
    )


@pytest.fixture
def graph():
    from hf_mig import LabelGraph

    return LabelGraph.from_edges(["a", "b", "c"], [], [], [])


def test_selector_quotas(graph):
    from hf_mig import MIGSelector

    pool = quota_pool()
    mig = MIGSelector(3, label_graph=graph, phi_a=1.0, phi_b=1.0,
                      quotas={"x": (0, 1), "z": (2, 2)})  # fmt: skip
    picks = mig.select_indices(pool).tolist()
    assert picks[:2] == [4, 5] and picks[2] == 0  # z's minimum first, then x's best only
    assert mig.result_.stats["quotas"]["z"]["picked"] == 2
    mig = MIGSelector(6, label_graph=graph, quotas={"y": (0.3, None)}, budget=3)
    picks = mig.select_indices(pool).tolist()
    assert sum(pool["num_tokens"][i] for i in picks) <= 3
    assert sum(pool["source"][i] == "y" for i in picks) >= 2  # ceil(0.3 * 6)


def test_selector_without_quotas_unchanged(graph):
    from hf_mig import MIGSelector

    pool = quota_pool()
    mig = MIGSelector(4, label_graph=graph)
    assert mig.quotas is None and mig.quota_column == "source"
    expected = MIGSelector(4, label_graph=graph).select_indices(pool.remove_columns("source"))
    np.testing.assert_array_equal(mig.select_indices(pool), expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quotas": {"w": (1, 2)}}, r"group 'w', .*its groups are \['x', 'y', 'z'\]"),
        ({"quotas": {"x": (1, 2)}, "quota_column": "origin"}, "quota_column 'origin' not found"),
        ({"quotas": {"x": (1, 2)}, "engine": "scan"}, "engine"),
    ],
)
def test_selector_quota_errors_before_work(graph, monkeypatch, options, message):
    from hf_mig import MIGSelector

    def fail(*args, **kwargs):
        raise AssertionError("encoded before checking the quotas")

    monkeypatch.setattr(MIGSelector, "encode", fail)
    with pytest.raises(ValueError, match=message):
        MIGSelector(3, label_graph=graph, **options).select_indices(quota_pool())


def test_a_budget_no_allowed_row_fits_is_refused():
    from hf_mig.core.budget import budget_select

    indptr, ids, w, p = disjoint_pool([2, 5, 3, 4])
    groups, costs = ["a", "a", "b", "b"], [3.0, 3.0, 1.0, 1.0]
    cases = [(0.5, {"a": (0, 5)}, 2), (0.5, {"a": (None, 5)}, 2), (2, {"b": (0, 0)}, 0)]
    for budget, quotas, cheapest in cases:
        message = rf"no row among the rows the quotas allow fits budget={budget:g} .*row {cheapest}"
        with pytest.raises(ValueError, match=message):
            quota_select(indptr, ids, w, p, 2, groups, quotas, budget=budget, costs=costs)
    # the same budget with every row allowed picks the cheap rows
    r = quota_select(indptr, ids, w, p, 4, groups, {"a": (0, None)}, budget=2, costs=costs)
    assert sorted(r.indices.tolist()) == [2, 3]
    with pytest.raises(ValueError, match=r"no row fits budget=0.5"):
        budget_select(indptr, ids, w, p, 0.5, costs)


def test_a_null_group_is_refused_not_merged_with_the_text_none():
    indptr, ids, w, p = disjoint_pool([2, 5, 3, 4])
    with pytest.raises(ValueError, match=r"row 1: column 'source' is null; .*\(2 rows affected\)"):
        quota_select(indptr, ids, w, p, 2, ["None", None, "b", None], {"b": (1, None)},
                     quota_column="source")  # fmt: skip


def test_group_codes_of_an_arrow_column_equal_those_of_its_values():
    import pyarrow as pa

    from hf_mig.core.quotas import group_codes

    values = ["web", "é", "Zoo", "web", "e", "books", "é"]
    column = pa.chunked_array([pa.array(values[:3]), pa.array(values[3:])])
    names, codes = group_codes(values)
    assert names == sorted(set(values)) and [names[c] for c in codes] == values
    arrow_names, arrow_codes = group_codes(column)
    assert arrow_names == names and arrow_codes.tolist() == codes.tolist()
    large = group_codes(pa.array(values, pa.large_string()))
    assert large[0] == names and large[1].tolist() == codes.tolist()
    numbers = group_codes([3, 1, 3])  # not text: compared as their text
    assert numbers[0] == ["1", "3"] and numbers[1].tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"row 2: column 'src' is null.*\(1 rows affected\)"):
        group_codes(pa.array(["a", "b", None]), "src")
