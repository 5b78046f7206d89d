"""Hostile inputs to the selectors: degenerate scores, label graphs that do not match the pool,
columns of the wrong or mixed type, truncated graph files and label graphs whose edges explode.

Each case must raise an error that says what is wrong and where (row, column, file) before the
work starts, instead of returning the first ``k`` rows in file order, crashing without context
or running the machine out of memory.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
from datasets import Dataset, load_dataset

import hf_mig
from hf_mig import LabelGraph, MIGSelector
from hf_mig.annotate import graph as graph_module
from hf_mig.core import encoding, greedy
from hf_mig.selectors import get_selector

TOY_GRAPH = LabelGraph.from_edges(["code", "coding", "math", "poem"], [0, 1], [1, 0], [0.95, 0.95])


def toy(labels, scores, **extra):
    return Dataset.from_dict({"labels": labels, "score": scores, **extra})


def no_model(texts):
    raise AssertionError(f"the embedder was called on {len(texts)} texts: work started")


def unit_rows(n, dim, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def conversations(n):
    return [
        [
            {"role": "user", "content": f"question number {i} about topic {i % 7}"},
            {"role": "assistant", "content": "answer " * (1 + i % 5)},
        ]
        for i in range(n)
    ]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load_jsonl(path, tmp_path):
    return load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )


@pytest.fixture(scope="module")
def parity_pool(parity_dir):
    return load_dataset("json", data_files=str(parity_dir / "pool.jsonl"), split="train")


# ============================================================================================
# MIG: degenerate pools and mismatched graphs


def test_graph_sharing_no_label_with_the_pool_is_refused():
    ds = toy([["x"], ["y"], ["z"]], [1.0, 2.0, 3.0])
    for floor in (0.5, 0.0):  # min_coverage=0 disables the floor, not this check
        with pytest.raises(
            encoding.DegeneratePoolError,
            match=r"no row of the pool has a label in the label graph \(4 labels\).*'x'",
        ):
            MIGSelector(2, label_graph=TOY_GRAPH, min_coverage=floor).select_indices(ds)


@pytest.mark.parametrize("use_graph", [True, False])
def test_pool_where_no_row_has_a_label_is_refused(use_graph):
    # all lists empty: Arrow infers list<null>, which used to fail with a type error
    ds = toy([[], [], []], [1.0, 2.0, 3.0])
    options = {"label_graph": TOY_GRAPH} if use_graph else {"embedder": no_model, "threshold": 0.9}
    with pytest.raises(encoding.DegeneratePoolError, match="no row of the pool has a label"):
        MIGSelector(2, **options).select_indices(ds)


def test_instag_on_a_pool_without_tags_is_refused():
    ds = toy([[], [], []], [3.0, 1.0, 2.0])
    with pytest.raises(encoding.DegeneratePoolError, match="no row of the pool has a tag"):
        get_selector("instag", 2).select_indices(ds)
    with pytest.raises(encoding.DegeneratePoolError, match="within the vocabulary"):
        get_selector("instag", 2, vocabulary=["code"]).select_indices(
            toy([["math"], ["poem"], []], [3.0, 1.0, 2.0])
        )


def test_all_zero_scores_are_refused():
    with pytest.raises(encoding.DegeneratePoolError, match="score 0.*column 'score'"):
        MIGSelector(2, label_graph=TOY_GRAPH).select_indices(
            toy([["code"], ["math"], ["poem"]], [0.0, 0.0, 0.0])
        )
    # a score on a row without a graph label carries no information either
    with pytest.raises(encoding.DegeneratePoolError, match="score 0"):
        MIGSelector(2, label_graph=TOY_GRAPH, min_coverage=0).select_indices(
            toy([["code"], ["zzz"], ["math"]], [0.0, 5.0, 0.0])
        )


@pytest.mark.parametrize(
    "scores, largest",
    [
        ([1e307, 1e307, 1e307], "1e\\+307"),
        ([1.0, 2.0, 1e308], "1e\\+308"),
        ([1e306] * 300, "1e\\+306"),  # each finite, the sum overflows
    ],
)
def test_scores_that_overflow_the_objective_are_refused(scores, largest):
    labels = [["code", "coding", "math"], ["math"], ["poem"]] * (len(scores) // 3)
    ds = toy(labels, scores)
    with pytest.raises(encoding.DegeneratePoolError, match=f"largest score {largest}.*Rescale"):
        MIGSelector(2, label_graph=TOY_GRAPH).select_indices(ds)


def test_greedy_refuses_weights_that_overflow():
    p = TOY_GRAPH.propagation_matrix()
    indptr, lab = np.array([0, 3, 4]), np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="overflow float64.*rescale"):
        greedy.greedy_select(indptr, lab, np.array([1e308, 1.0]), p, 1)


def test_large_but_safe_scores_still_select(parity_pool, parity_dir):
    graph = LabelGraph.load(parity_dir / "label_graph_t0.9.npz")
    big = parity_pool.map(lambda r: {"score": r["score"] * 1e290})
    sel = MIGSelector(50, label_graph=graph)
    assert len(sel.select_indices(big)) == 50
    assert np.isfinite(sel.result_.gains).all() and np.isfinite(sel.objective_trace_).all()


def test_partial_coverage_is_reported_and_refused_below_the_floor(caplog):
    # 3 of 10 rows have a graph label; 3 of 12 label occurrences are in the graph
    labels = [["code"], ["math", "x1"], ["poem"]] + [["x2"], ["x3", "x4"]] + [["x5"]] * 5
    ds = toy(labels, [1.0] * 10)
    with pytest.raises(
        encoding.DegeneratePoolError,
        match=r"only 3 of 10 rows \(30.0%\) have a label in the label graph, below "
        r"min_coverage=0.5; the label occurrences it covers: 25.0%.*min_coverage",
    ):
        MIGSelector(5, label_graph=TOY_GRAPH).select_indices(ds)
    sel = MIGSelector(5, label_graph=TOY_GRAPH, min_coverage=0.25)
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        picks = sel.select_indices(ds).tolist()
    report = sel.encoding_report_
    assert report["rows_with_labels"] == 3 and report["row_coverage"] == pytest.approx(0.3)
    assert report["occurrence_coverage"] == pytest.approx(3 / 12)
    assert report["rows_with_information"] == 3
    assert sorted(picks[:3]) == [0, 1, 2] and picks[3:] == [3, 4]  # the rest in file order
    assert "only 3 rows have a label" in caplog.text


@pytest.mark.parametrize(
    "floor, err", [(-0.1, ValueError), (1.5, ValueError), ("half", ValueError)]
)
def test_min_coverage_must_be_a_share(floor, err):
    with pytest.raises(err, match="min_coverage"):
        MIGSelector(1, label_graph=TOY_GRAPH, min_coverage=floor).select_indices(
            toy([["code"]], [1.0])
        )


@pytest.mark.parametrize("threshold", ["0.7", "0.8", "0.9"])
def test_parity_pools_pass_the_coverage_floor(parity_pool, parity_dir, threshold):
    sel = MIGSelector(10, label_graph=parity_dir / f"label_graph_t{threshold}.npz")
    sel.select_indices(parity_pool)
    assert sel.encoding_report_["row_coverage"] == 1.0
    assert sel.encoding_report_["occurrence_coverage"] == 1.0


# ============================================================================================
# score-ranking methods with scores that cannot rank


@pytest.mark.parametrize("method, column", [("score", "score"), ("ifd", "ifd")])
def test_score_ranking_on_a_constant_column_is_refused(method, column):
    ds = Dataset.from_dict({column: [0.5] * 6, "labels": [["a"]] * 6})
    with pytest.raises(encoding.DegeneratePoolError, match="same value 0.5.*first 3 rows"):
        get_selector(method, 3).select_indices(ds)
    # selecting every row needs no ranking
    assert get_selector(method, 6).select_indices(ds).tolist() == list(range(6))


def test_score_ranking_where_no_row_has_a_value_is_refused():
    ds = Dataset.from_dict({"score": [None, None, None], "x": [1, 2, 3]})
    with pytest.raises(encoding.DegeneratePoolError, match="no row has a value"):
        get_selector("score", 2, nan="last").select_indices(ds)


def test_score_ranking_tie_at_the_cut_is_logged(caplog):
    ds = Dataset.from_dict({"score": [3.0, 1.0, 2.0, 2.0, 2.0]})
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        picks = get_selector("score", 2).select_indices(ds).tolist()
    assert picks == [0, 2]
    assert "3 rows share the value 2" in caplog.text


@pytest.mark.parametrize(
    "method, options",
    [("deita", {}), ("car", {}), ("qdit", {"alpha": 1.0})],
)
def test_embedding_methods_refuse_equal_scores_before_embedding(method, options):
    ds = Dataset.from_dict({"messages": conversations(8), "score": [2.0] * 8})
    with pytest.raises(encoding.DegeneratePoolError, match="same score 2.*file order"):
        get_selector(method, 3, embedder=no_model, **options).select_indices(ds)


def test_qdit_with_equal_scores_warns_and_is_pure_diversity(caplog):
    emb = unit_rows(40, 8)
    ds = Dataset.from_dict({"embedding": emb.tolist(), "score": [1.0] * 40})
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        picks = get_selector("qdit", 5).select_indices(ds).tolist()
    assert "pure diversity" in caplog.text
    assert picks == get_selector("qdit", 5, alpha=0.0).select_indices(ds).tolist()


def test_kcenter_start_by_score_with_equal_scores_warns(caplog):
    ds = Dataset.from_dict({"embedding": unit_rows(20, 4).tolist(), "score": [1.0] * 20})
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        picks = get_selector("kcenter", 3).select_indices(ds).tolist()
    assert picks[0] == 0 and "starts from row 0" in caplog.text


# ============================================================================================
# columns of the wrong or mixed type


def test_mixed_type_score_column_names_the_row(tmp_path):
    rows = [
        {"labels": ["code"], "score": 1.0, "messages": conversations(1)[0]},
        {"labels": ["math"], "score": "high", "messages": conversations(1)[0]},
        {"labels": ["poem"], "score": 2, "messages": conversations(1)[0]},
    ]
    ds = load_jsonl(write_jsonl(tmp_path / "pool.jsonl", rows), tmp_path)
    selectors = [
        MIGSelector(1, label_graph=TOY_GRAPH),
        MIGSelector(1, embedder=no_model, threshold=0.9),
        get_selector("score", 1),
        get_selector("deita", 1, embedder=no_model),
        get_selector("qdit", 1, embedder=no_model),
        get_selector("kcenter", 1, embedder=no_model),
        get_selector("instag", 1),
    ]
    for sel in selectors:
        with pytest.raises(
            encoding.PoolValidationError,
            match=r"column 'score' must hold numbers.*row 1 holds 'high' \(a string\)",
        ):
            sel.select_indices(ds)


def test_numbers_written_as_text_say_how_to_convert():
    ds = toy([["code"], ["math"]], ["1.5", "2"])
    with pytest.raises(encoding.PoolValidationError, match="written as text.*cast_column"):
        MIGSelector(1, label_graph=TOY_GRAPH).select_indices(ds)


@pytest.mark.parametrize(
    "second, found",
    [
        ("math", r"row 1 holds 'math' \(a string\)"),
        (["math", 3], r"row 1 holds 3 \(an integer\) at position 1"),
        (["math", ["x"]], r"row 1 holds \['x'\] \(a list\) at position 1"),
    ],
)
def test_mixed_type_labels_column_names_the_row(tmp_path, second, found):
    rows = [{"labels": ["code"], "score": 1.0}, {"labels": second, "score": 2.0}]
    ds = load_jsonl(write_jsonl(tmp_path / "pool.jsonl", rows), tmp_path)
    with pytest.raises(encoding.PoolValidationError, match=f"column 'labels' must hold.*{found}"):
        MIGSelector(1, label_graph=TOY_GRAPH).select_indices(ds)


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
@pytest.mark.parametrize("use_graph", [True, False])
def test_blank_labels_raise_naming_the_row(blank, use_graph):
    ds = toy([["code"], ["poem"], ["math", blank]], [1.0, 1.0, 1.0])
    options = {"label_graph": TOY_GRAPH} if use_graph else {"embedder": no_model, "threshold": 0.9}
    with pytest.raises(
        encoding.PoolValidationError,
        match=re.escape(f"row 2: column 'labels' contains the label {blank!r}, empty or only"),
    ):
        MIGSelector(1, **options).select_indices(ds)


def test_selectors_that_need_no_scores_ignore_a_text_score_column():
    n = 30
    base = {
        "labels": [[f"t{i % 4}", f"u{i % 3}"] for i in range(n)],
        "messages": conversations(n),
        "embedding": unit_rows(n, 6).tolist(),
    }
    words = Dataset.from_dict({**base, "score": [f"very good {i}" for i in range(n)]})
    plain = Dataset.from_dict(base)
    for method, options in [
        ("random", {}),
        ("zip", {}),
        ("kcenter", {"start": "random"}),
        ("instag", {"score_column": None}),
        ("qdit", {"alpha": 0.0}),
    ]:
        got = get_selector(method, 5, **options).select_indices(words).tolist()
        assert got == get_selector(method, 5, **options).select_indices(plain).tolist(), method
        assert len(set(got)) == 5


def test_selectors_that_need_scores_refuse_a_text_score_column_before_work():
    n = 6
    ds = Dataset.from_dict(
        {
            "labels": [["code"], ["math"]] * 3,
            "messages": conversations(n),
            "score": ["1.0", "2.0", "n/a", "3", "4", "5"],
        }
    )
    for method, options in [
        ("mig", {"label_graph": TOY_GRAPH}),
        ("mig", {"embedder": no_model, "threshold": 0.9}),
        ("score", {}),
        ("deita", {"embedder": no_model}),
        ("car", {"embedder": no_model}),
        ("qdit", {"embedder": no_model}),
        ("kcenter", {"embedder": no_model}),
        ("instag", {}),
    ]:
        with pytest.raises(encoding.PoolValidationError, match="row 2 holds 'n/a'"):
            get_selector(method, 2, **options).select_indices(ds)


# ============================================================================================
# label graph files


@pytest.fixture()
def graph_file(tmp_path, parity_dir):
    path = tmp_path / "graph.npz"
    LabelGraph.load(parity_dir / "label_graph_t0.8.npz").save(path)
    return path


def test_truncated_graph_names_the_file(graph_file, parity_pool):
    data = graph_file.read_bytes()
    cut = graph_file.with_name("cut.npz")
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(graph_module.LabelGraphFormatError, match=f"{cut}: truncated or corrupted"):
        LabelGraph.load(cut)
    with pytest.raises(ValueError, match=f"{cut}: truncated"):
        MIGSelector(5, label_graph=cut).select_indices(parity_pool)


def test_corrupted_graph_member_names_the_file(graph_file):
    data = bytearray(graph_file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    graph_file.write_bytes(bytes(data))
    with pytest.raises(graph_module.LabelGraphFormatError, match=f"{graph_file}: truncated"):
        LabelGraph.load(graph_file)


def test_files_that_are_not_graphs_name_the_file(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("labels, rows, cols\n")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    single = tmp_path / "single.npy"
    np.save(single, np.arange(3))
    other = tmp_path / "other.npz"
    np.savez(other, labels=np.array(["a", "b"]), weights=np.ones(2))
    bad_rows = tmp_path / "bad_rows.npz"
    np.savez(
        bad_rows,
        labels=np.array(["a", "b"]),
        rows=np.array([0, 5]),
        cols=np.array([1, 0]),
        weights=np.ones(2),
    )
    cases = [
        (text, "not an .npz"),
        (empty, "an empty file"),
        (single, "not an .npz"),
        (other, r"missing arrays \['rows', 'cols'\]"),
        (bad_rows, r"not a valid label graph: rows\[1\] = 5"),
    ]
    for path, what in cases:
        with pytest.raises(graph_module.LabelGraphFormatError, match=f"{path}: .*{what}"):
            LabelGraph.load(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        LabelGraph.load(tmp_path / "missing.npz")


def test_interrupted_save_leaves_the_previous_graph(graph_file, monkeypatch):
    before = graph_file.read_bytes()

    def fail_midway(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        LabelGraph.from_edges(["a", "b"], [0], [1], [0.9], symmetrize=True).save(graph_file)
    assert graph_file.read_bytes() == before
    assert [p.name for p in graph_file.parent.iterdir()] == [graph_file.name]


# ============================================================================================
# label graphs whose edges explode


def near_duplicates(n, dim=8, noise=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=dim)
    return (base + noise * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture()
def counted_blocks(monkeypatch):
    calls = []
    real = graph_module._similarities

    def counting(emb, start, stop, col_start):
        calls.append((start, stop))
        return real(emb, start, stop, col_start)

    monkeypatch.setattr(graph_module, "_similarities", counting)
    return calls


def test_near_duplicate_labels_are_refused_before_the_blocks(counted_blocks):
    n = 20_000
    vectors = near_duplicates(n)
    labels = [f"tag {i}" for i in range(n)]
    with pytest.raises(
        graph_module.GraphTooLargeError,
        match=r"20,000 labels at threshold 0.9 would have about [\d,]+ edges .* GB of memory, "
        r"above max_edges=20,000,000.*max_degree.*estimated from",
    ) as err:
        LabelGraph.from_labels(labels, embedder=lambda xs: vectors, threshold=0.9)
    estimate = int(str(err.value).split("about ")[1].split(" edges")[0].replace(",", ""))
    assert 0.9 * n * (n - 1) / 2 < estimate <= n * (n - 1) / 2
    assert counted_blocks == []  # refused before any of the 10 blocks was thresholded


def test_running_edge_count_stops_the_build_early(counted_blocks, monkeypatch):
    # an estimate that misses the near-duplicates: the running count still stops the loop
    monkeypatch.setattr(graph_module, "_estimate_edges", lambda *args: (0.0, 1))
    vectors = near_duplicates(20_000)
    with pytest.raises(graph_module.GraphTooLargeError, match="stopped after 1 of 10 blocks"):
        LabelGraph.from_embeddings(
            [f"t{i}" for i in range(20_000)], vectors, threshold=0.9, max_edges=1_000_000
        )
    assert len(counted_blocks) == 1


def test_max_degree_bounds_the_graph(caplog):
    n = 3000
    vectors = near_duplicates(n, noise=0.05, seed=1)  # all pairs above 0.9, distinct cosines
    labels = [f"tag {i}" for i in range(n)]
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        graph = LabelGraph.from_labels(
            labels, embedder=lambda xs: vectors, threshold=0.9, max_degree=4
        )
    assert graph.degrees().max() <= 4
    assert 0 < graph.stats()["num_edges"] <= n * 4 // 2
    assert graph.metadata["labels_over_max_degree"] == n
    assert graph.metadata["edges_above_threshold"] == n * (n - 1) // 2
    assert "more than max_degree=4" in caplog.text
    assert (graph.weights != graph.weights.T).nnz == 0
    # every kept edge is among the 4 most similar labels of both ends
    e = vectors.astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    fourth = np.sort(sims, axis=1)[:, -4]
    rows, cols = graph.weights.nonzero()
    off = rows != cols
    assert np.all(sims[rows[off], cols[off]] >= fourth[rows[off]] - 1e-6)
    assert np.all(sims[rows[off], cols[off]] >= fourth[cols[off]] - 1e-6)


def test_max_degree_that_binds_no_label_keeps_every_edge():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    emb = (centres[rng.integers(0, 30, size=150)] + 0.3 * rng.normal(size=(150, 16))).astype(
        np.float32
    )
    labels = [f"label {i}" for i in range(150)]
    full = LabelGraph.from_embeddings(labels, emb, threshold=0.8)
    top = int(full.degrees().max())
    capped = LabelGraph.from_embeddings(labels, emb, threshold=0.8, max_degree=top)
    assert capped.metadata["labels_over_max_degree"] == 0
    assert capped.metadata["edges_above_threshold"] == full.stats()["num_edges"]
    np.testing.assert_allclose(capped.weights.toarray(), full.weights.toarray(), atol=1e-6)
    fewer = LabelGraph.from_embeddings(labels, emb, threshold=0.8, max_degree=top - 1)
    assert fewer.stats()["num_edges"] < full.stats()["num_edges"]
    assert fewer.metadata["labels_over_max_degree"] == int((full.degrees() == top).sum())


def test_max_degree_ties_go_to_the_lower_index():
    emb = np.ones((6, 3), dtype=np.float32)  # six identical labels
    graph = LabelGraph.from_embeddings(list("abcdef"), emb, threshold=0.9, max_degree=2)
    # each label keeps the two lowest other indices; mutual: a-b, a-c, b-c; d, e, f isolated
    assert [n for n, _ in graph.neighbors("a")] == ["b", "c"]
    assert graph.stats()["num_edges"] == 3
    assert graph.stats()["isolated_labels"] == 3


@pytest.mark.parametrize(
    "option, value", [("max_degree", 0), ("max_edges", -1), ("max_degree", 2.5)]
)
def test_graph_limits_are_validated(option, value):
    with pytest.raises(ValueError, match=option):
        LabelGraph.from_embeddings(["a", "b"], np.eye(2), threshold=0.5, **{option: value})


def test_mig_builds_its_graph_within_the_limits():
    n = 3000
    vectors = near_duplicates(n, seed=2)
    labels = [f"tag {i}" for i in range(n)]
    ds = toy([[t] for t in labels], [1.0 + (i % 7) for i in range(n)])
    embed = lambda xs: vectors[[labels.index(x) for x in xs]]  # noqa: E731
    with pytest.raises(graph_module.GraphTooLargeError, match="max_edges=100,000"):
        MIGSelector(5, embedder=embed, threshold=0.9, max_edges=100_000).select_indices(ds)
    sel = MIGSelector(5, embedder=embed, threshold=0.9, max_edges=100_000, max_degree=3)
    assert len(sel.select_indices(ds)) == 5
    assert sel.label_graph_.degrees().max() <= 3


# ============================================================================================
# record_gains and existing columns


def test_record_gains_refuses_existing_gain_columns_before_work(parity_pool, parity_dir):
    ds = toy([["code"], ["math"], ["poem"]], [1.0, 2.0, 3.0], mig_rank=[7, 8, 9])
    with pytest.raises(ValueError, match=r"existing column\(s\) \['mig_rank'\].*overwrite"):
        MIGSelector(2, embedder=no_model, threshold=0.9, record_gains=True).select(ds)
    with pytest.raises(ValueError, match="mig_rank"):
        hf_mig.select(ds, 2, label_graph=TOY_GRAPH, record_gains=True)
    subset = MIGSelector(
        2, label_graph=TOY_GRAPH, record_gains=True, overwrite_gain_columns=True
    ).select(ds)
    assert subset["mig_rank"] == [0, 1]
    # without record_gains the pool's columns pass through untouched
    assert MIGSelector(2, label_graph=TOY_GRAPH).select(ds)["mig_rank"] == [9, 8]
