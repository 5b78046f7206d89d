"""Extending a finished greedy: exact continuation, grown pools, changed pools, k_more bounds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
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


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("candidates", [None, 40, 7])
@pytest.mark.parametrize("grow", [0, 100])
def test_a_frontier_gives_the_picks_of_evaluating_every_row(compiled, candidates, grow):
    """Seeded with the bounds the first run left (candidate heap or full heap), the extension
    picks what the full scan picks, evaluating only the appended rows up front."""
    n_old, k, k_more = 500, 40, 30
    arrays = _arrays(n_old + grow, 50, 3)
    options = {"compiled": compiled, "candidates": candidates}
    old = greedy_select(*_head(arrays, n_old), k, **options)
    assert old.frontier is not None and old.frontier.rows == n_old
    assert old.frontier.entries.shape[0] <= (candidates or n_old)
    scan, _ = greedy_extend(*arrays, k_more, old.indices, engine="scan", compiled=compiled)
    seeded, after = greedy_extend(*arrays, k_more, old.indices, frontier=old.frontier, **options)
    assert seeded.indices.tolist() == scan.indices.tolist()
    np.testing.assert_array_equal(seeded.gains, scan.gains)
    if grow == 0:
        full = greedy_select(*arrays, k + k_more, compiled=compiled)
        assert seeded.indices.tolist() == full.indices[k:].tolist()
    if candidates is None:
        unseeded, _ = greedy_extend(*arrays, k_more, old.indices, compiled=compiled)
        assert seeded.indices.tolist() == unseeded.indices.tolist()
        # without refreshes, the seeded run evaluates only the appended rows up front
        never = {"compiled": compiled, "refresh_fraction": 1.0}
        seeded_once, _ = greedy_extend(*arrays, k_more, old.indices, frontier=old.frontier, **never)
        unseeded_once, _ = greedy_extend(*arrays, k_more, old.indices, **never)
        assert seeded_once.indices.tolist() == unseeded.indices.tolist()
        assert seeded_once.stats["evaluations"] < unseeded_once.stats["evaluations"]
    # the state carries its own frontier on
    again, _ = greedy_extend(*arrays, 10, after, **options)
    scan_again, _ = greedy_extend(*arrays, 10, after.picks, engine="scan", compiled=compiled)
    assert again.indices.tolist() == scan_again.indices.tolist()


def test_a_frontier_with_exact_gains():
    arrays = _arrays(600, 50, 4)
    old = greedy_select(*_head(arrays, 500), 40, gain="exact")
    seeded, _ = greedy_extend(*arrays, 30, old.indices, gain="exact", frontier=old.frontier)
    unseeded, _ = greedy_extend(*arrays, 30, old.indices, gain="exact")
    assert seeded.indices.tolist() == unseeded.indices.tolist()
    assert seeded.stats["evaluations"] < unseeded.stats["evaluations"]


def test_a_frontier_must_match_the_run():
    arrays = _arrays(300, 40, 5)
    old = greedy_select(*arrays, 20)
    with pytest.raises(ValueError, match="gradient gains; this run uses exact"):
        greedy_extend(*arrays, 5, old.indices, gain="exact", frontier=old.frontier)
    with pytest.raises(ValueError, match="covers 300 rows; the pool has 200"):
        greedy_extend(*_head(arrays, 200), 5, old.indices[old.indices < 200],
                      frontier=old.frontier)  # fmt: skip
    with pytest.raises(ValueError, match="left after 20 picks; the selection has 10"):
        greedy_extend(*arrays, 5, old.indices[:10], frontier=old.frontier)
    twice = np.concatenate([old.indices[:-1], old.indices[:1]])
    with pytest.raises(ValueError, match="must not repeat"):
        greedy_extend(*arrays, 5, twice, frontier=old.frontier)
    with pytest.raises(TypeError, match="frontier must be a Frontier"):
        greedy_extend(*arrays, 5, old.indices, frontier=old.indices)


def test_a_frontier_still_checks_the_appended_rows_for_overflow():
    indptr, ids, scores, prop = _arrays(300, 40, 6)
    old = greedy_select(indptr[:251], ids[: indptr[250]], scores[:250], prop, 20)
    counts = np.diff(indptr)
    row = 250 + int(np.argmax(counts[250:]))  # an appended row with the most labels
    huge = scores.copy()
    huge[row] = 1e307  # its gain bound overflows, the coverage bound does not
    with pytest.raises(ValueError, match="overflow float64"):
        greedy_extend(indptr, ids, huge, prop, 5, old.indices, frontier=old.frontier)
    grown, _ = greedy_extend(indptr, ids, scores, prop, 5, old.indices, frontier=old.frontier)
    assert grown.indices.size == 5


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


# ---------------------------------------------------------------------------- appended rows
def _labelled_table(rows):
    import pyarrow as pa

    labels = pa.array([r[0] for r in rows], type=pa.list_(pa.string()))
    return pa.table({"labels": labels, "score": pa.array([float(r[1]) for r in rows])})


APPEND_ROWS = [
    (["a", "b"], 1),
    (["a", "a", "zz"], 2),  # a repeat and a label outside the vocabulary
    ([], 3),
    (["c"], 0),
    (["b", "yy", "c", "b"], 5),
    (["zz"], 1),
    (["a"], 4),
]


@pytest.mark.parametrize("n_old", [0, 1, 3, 6, 7])
def test_encoding_appended_rows_equals_encoding_the_whole(n_old):
    from hf_mig.core.encoding import encode_appended, encode_pool

    vocab = ["a", "b", "c"]
    union = _labelled_table(APPEND_ROWS)
    old = encode_pool(union.slice(0, n_old), vocab)
    grown = encode_appended(old, union)
    whole = encode_pool(union, vocab)
    for name in ("indptr", "label_ids", "scores", "label_occurrences"):
        np.testing.assert_array_equal(getattr(grown, name), getattr(whole, name))
    assert grown.report == whole.report
    again = encode_appended(grown, union)  # nothing appended
    np.testing.assert_array_equal(again.label_ids, whole.label_ids)
    copy = _labelled_table(APPEND_ROWS)  # the same data in other memory: compared by value
    np.testing.assert_array_equal(encode_appended(old, copy).label_ids, whole.label_ids)


def test_encoding_appended_rows_needs_the_same_first_rows():
    from hf_mig.core.encoding import encode_appended, encode_pool

    vocab = ["a", "b", "c"]
    union = _labelled_table(APPEND_ROWS)
    old = encode_pool(union.slice(0, 4), vocab)
    changed = _labelled_table([APPEND_ROWS[0], (["a"], 2), *APPEND_ROWS[2:]])
    assert encode_appended(old, changed) is None
    assert encode_appended(old, union.slice(0, 3)) is None
    bad_tail = _labelled_table([*APPEND_ROWS, (["a", " "], 1)])
    with pytest.raises(PoolValidationError, match="row 7"):
        encode_appended(old, bad_tail)


def test_selector_extend_encodes_only_the_appended_rows(pools, monkeypatch):
    import hf_mig.selectors.mig as mig_module

    graph, old, union = pools
    reference = MIGSelector(25, label_graph=graph)
    reference.select(old)
    with monkeypatch.context() as patch:  # encoded whole and compared row by row
        patch.setattr(mig_module, "encode_appended", lambda *args, **kwargs: None)
        expected = reference.extend(union, 15)["row"]

    def refuse(*args, **kwargs):
        raise AssertionError("the whole pool was encoded again")

    sel = MIGSelector(25, label_graph=graph)
    sel.select(old)
    monkeypatch.setattr(mig_module, "encode_pool", refuse)
    assert sel.extend(union, 15)["row"] == expected
    assert sel.encoding_report_ == reference.encoding_report_


def test_views_of_the_same_memory_are_told_apart_from_copies():
    import pyarrow as pa

    from hf_mig.core.encoding import _same_memory

    table = _labelled_table(APPEND_ROWS)
    grown = pa.concat_tables([table, _labelled_table(APPEND_ROWS[:2])])
    assert _same_memory(grown.slice(0, table.num_rows), table)
    assert not _same_memory(_labelled_table(APPEND_ROWS), table)  # equal values, other memory
    assert not _same_memory(grown.slice(1, table.num_rows), table)


def test_extend_after_set_params_replays_instead_of_reusing_the_frontier(pools):
    from hf_mig.core.information import LabelInformation

    graph, old, union = pools
    sel = MIGSelector(20, label_graph=graph)
    sel.select(old)
    first = sel.result_.indices.tolist()
    sel.set_params(phi_b=0.5, gain="exact", prop_weight=0.5)
    out = sel.extend(union, 10)["row"]
    assert out[:20] == [old["row"][i] for i in first]
    info = LabelInformation.build(sel._encoding, graph.propagation_matrix(0.5), norm=False)
    arrays = (sel._encoding.indptr, sel._encoding.label_ids, info.weights, info.propagation)
    replayed, _ = greedy_extend(*arrays, 10, np.array(first), sel.objective, gain="exact")
    assert sel.result_.indices[20:].tolist() == replayed.indices.tolist()
    # a GreedyState left by gradient gains continues with exact gains by its state alone
    arrays = _arrays(300, 40, 7)
    _, state = greedy_extend(*arrays, 5, greedy_select(*arrays, 10).indices)
    more, _ = greedy_extend(*arrays, 5, state, gain="exact")
    assert more.indices.size == 5


@pytest.mark.parametrize("copy_selector", ["deepcopy", "pickle"])
def test_a_copied_selector_extends_from_its_frontier(pools, monkeypatch, copy_selector):
    import copy
    import pickle

    import hf_mig.core.incremental as incremental

    graph, old, union = pools
    sel = MIGSelector(20, label_graph=graph)
    sel.select(old)
    expected = copy.deepcopy(sel).extend(union, 10)["row"]
    twin = copy.deepcopy(sel) if copy_selector == "deepcopy" else pickle.loads(pickle.dumps(sel))

    def refuse(*args, **kwargs):
        raise AssertionError("the picks were replayed instead of continuing from the frontier")

    monkeypatch.setattr(incremental, "_replayed", refuse)
    assert twin.extend(union, 10)["row"] == expected
    twin.label_graph_ = copy.deepcopy(graph)  # another graph object: its frontier is not reused
    with pytest.raises(AssertionError, match="replayed"):
        twin.extend(union, 5)


def test_extend_refuses_a_label_graph_changed_since_the_selection(pools, tmp_path):
    import copy

    graph, old, union = pools
    sel = MIGSelector(20, label_graph=graph)
    sel.select(old)
    sel.set_params(label_graph=copy.deepcopy(graph))
    with pytest.raises(ValueError, match="label_graph was changed since the selection"):
        sel.extend(union, 5)
    sel.set_params(label_graph=graph)  # back to the graph it selected with
    assert sel.extend(union, 5).num_rows == 25
    graph.save(tmp_path / "g.npz")
    by_path = MIGSelector(20, label_graph=str(tmp_path / "g.npz"))
    by_path.select(old)
    by_path.set_params(label_graph=tmp_path / "g.npz")  # the same file, named another way
    assert by_path.extend(union, 5).num_rows == 25


@pytest.mark.parametrize("seed", range(6))
def test_row_bounds_bound_every_gain_and_seed_the_next_candidates(seed):
    """The candidate engine leaves a float32 gain per row whose widened bound no later gain
    exceeds; a continuation seeded from them picks what the full scan picks."""
    rng = np.random.default_rng(seed)
    n_old, grow, k, k_more = 400, 60, 30, 40
    indptr, ids, _, prop = _arrays(n_old + grow, 40, seed)
    scores = rng.random(n_old + grow) * 5  # no ties: bounds rounded to float32 matter
    arrays = (indptr, ids, scores, prop)
    old = greedy_select(*_head(arrays, n_old), k, candidates=25)
    bounds = old.frontier.row_bounds
    assert bounds.dtype == np.float32 and bounds.shape == (n_old,)
    state = replay_state(*_head(arrays, n_old), old.indices)
    dense = np.zeros((n_old, prop.shape[0]))
    for i in range(n_old):
        dense[i, ids[indptr[i] : indptr[i + 1]]] = scores[i]
    gains = dense @ (prop @ state.g)  # u_i . phi'(x) at the end of the run
    free = np.ones(n_old, dtype=bool)
    free[old.indices] = False
    from hf_mig.core.greedy import _bound32

    widened = np.array([_bound32.py_func(b) for b in bounds])  # as the kernels read them
    assert (gains[free] <= widened[free]).all()
    assert (widened >= bounds).all() and np.allclose(widened, bounds, rtol=1e-6)
    scan, _ = greedy_extend(*arrays, k_more, old.indices, engine="scan")
    for compiled in (True, False):
        seeded, after = greedy_extend(
            *arrays, k_more, old.indices, frontier=old.frontier, candidates=25, compiled=compiled
        )
        assert seeded.indices.tolist() == scan.indices.tolist()
        np.testing.assert_array_equal(seeded.gains, scan.gains)
        assert after.frontier.row_bounds.shape == (n_old + grow,)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("compiled", [True, False])
def test_gains_beyond_float32_are_kept_as_infinite_bounds(compiled):
    """Gains above float32's range (float64 holds them) are kept as ``inf``, which still bounds
    them, without an overflow warning; the continuation picks what the scan picks."""
    indptr, ids, prop = np.arange(5), np.arange(4), sp.identity(4, format="csr")
    w = np.array([1e39, 2e39, 5e38, 3e39])
    old = greedy_select(indptr, ids, w, prop, 1, compiled=compiled, candidates=1)
    assert np.isinf(old.frontier.row_bounds[[0, 1]]).all()
    more, _ = greedy_extend(indptr, ids, w, prop, 2, old.indices, frontier=old.frontier,
                            compiled=compiled, candidates=1)  # fmt: skip
    assert old.indices.tolist() + more.indices.tolist() == [3, 1, 0]
