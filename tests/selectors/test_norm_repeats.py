"""``norm=True`` divides a row's score by its label count *with repeats*, as the reference does.

The reference (the authors' ``LabelGraph.vectorize``) computes ``n_labels = len(dp.labels)`` on
the record's tag list after the vocabulary filter, repeats kept, and assigns
``score / n_labels`` to each of the row's labels (a repeated label is assigned twice, not
added). :func:`reference_loop` below transcribes that loop and the sampler's greedy directly,
independently of ``hf_mig``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from hf_mig import LabelGraph, MIGSelector
from hf_mig.cli import main as cli
from hf_mig.core.encoding import encode_pool
from hf_mig.data.formats import MIGAnnotations
from hf_mig.selectors.mig import arrow_columns


def reference_loop(
    rows: list[list[str]],
    scores: list[float],
    graph: LabelGraph,
    k: int,
    *,
    norm: bool,
    phi_a: float = 1e-6,
    phi_b: float = 0.8,
    prop_weight: float = 1.0,
) -> list[int]:
    """The authors' ``vectorize`` + ``MIGSampler.sample`` on ``rows`` (each a tag list whose
    tags are all in the graph), in float64, lowest index on ties."""
    index = {label: j for j, label in enumerate(graph.labels)}
    n, n_labels = len(rows), graph.num_labels
    vec = np.zeros((n, n_labels))
    for i, (labels, score) in enumerate(zip(rows, scores)):
        count = len(labels)
        for label in labels:
            vec[i, index[label]] = score if not norm else score / count
    w = graph.weights.toarray()
    mask = np.eye(n_labels)
    p = w * mask + w * (1 - mask) * prop_weight
    p = p / p.sum(axis=0)
    prop = vec @ p
    x = np.zeros(n_labels)
    available = np.ones(n, dtype=bool)
    picks: list[int] = []
    while len(picks) < k:
        g = phi_b * (x + phi_a) ** (phi_b - 1)
        gains = np.where(available, prop @ g, -np.inf)
        i = int(np.argmax(gains))
        picks.append(i)
        available[i] = False
        x += prop[i]
    return picks


def _graph(labels, pairs=()):
    rows = [labels.index(a) for a, _, _ in pairs] + [labels.index(b) for _, b, _ in pairs]
    cols = [labels.index(b) for _, b, _ in pairs] + [labels.index(a) for a, _, _ in pairs]
    weights = [w for *_, w in pairs] * 2
    return LabelGraph.from_edges(labels, rows, cols, weights)


def test_repeats_change_the_first_pick_as_in_the_reference():
    # row 0: 3.0 over ["a", "a", "a", "b"] -> 0.75 on a and b (distinct count: 1.5 on each);
    # row 1: 1.6 over ["c", "d"] -> 0.8 on c and d. The reference takes row 1 first.
    graph = _graph(["a", "b", "c", "d"])
    rows = [["a", "a", "a", "b"], ["c", "d"]]
    ds = Dataset.from_dict({"labels": rows, "score": [3.0, 1.6]})
    expected = reference_loop(rows, [3.0, 1.6], graph, 2, norm=True)
    assert expected == [1, 0]
    sel = MIGSelector(2, label_graph=graph, norm=True)
    assert sel.select_indices(ds).tolist() == expected
    assert sel._encoding.weights(True).tolist() == pytest.approx([0.75, 0.8])
    assert sel._encoding.weights(True, distinct=True).tolist() == pytest.approx([1.5, 0.8])
    # without norm, repeats change nothing: 3.0 on two labels beats 1.6 on two
    assert MIGSelector(2, label_graph=graph).select_indices(ds).tolist() == [0, 1]


def test_occurrences_are_counted_after_the_vocabulary_filter():
    ds = Dataset.from_dict(
        {"labels": [["a", "zzz", "a", "b"], ["zzz"], ["b", "b"], []], "score": [4.0] * 4}
    )
    enc = encode_pool(arrow_columns(ds, ["labels", "score"]), ["a", "b"])
    assert enc.label_occurrences.tolist() == [3, 0, 2, 0]
    assert enc.label_counts().tolist() == [2, 0, 1, 0]
    assert enc.weights(True).tolist() == pytest.approx([4 / 3, 0.0, 2.0, 0.0])
    assert enc.weights(False).tolist() == [4.0] * 4
    assert enc.report["repeated_labels"] == 2


@pytest.mark.parametrize("engine", ["lazy", "scan"])
@pytest.mark.parametrize("gain", ["gradient"])
def test_random_pool_with_repeats_matches_the_reference_loop(engine, gain):
    rng = np.random.default_rng(5)
    labels = [f"t{i:02d}" for i in range(24)]
    pairs = []
    for _ in range(30):
        a, b = rng.choice(24, size=2, replace=False)
        pairs.append((labels[a], labels[b], float(rng.uniform(0.7, 1.0))))
    pairs = list({(a, b): (a, b, w) for a, b, w in pairs if a < b}.values())
    graph = _graph(labels, pairs)
    rows = []
    for _ in range(300):
        distinct = list(rng.choice(labels, size=int(rng.integers(1, 5)), replace=False))
        repeats = list(rng.choice(distinct, size=int(rng.integers(0, 4))))
        row = distinct + repeats
        rng.shuffle(row)
        rows.append([str(t) for t in row])
    scores = [float(s) for s in rng.uniform(0.5, 30.0, size=300)]
    assert sum(len(r) != len(set(r)) for r in rows) > 100
    ds = Dataset.from_dict({"labels": rows, "score": scores})
    expected = reference_loop(rows, scores, graph, 60, norm=True)
    sel = MIGSelector(60, label_graph=graph, norm=True, engine=engine, gain=gain)
    assert sel.select_indices(ds).tolist() == expected
    # the distinct-count rule picks differently on this pool: the test can tell them apart
    distinct_rows = [sorted(set(r)) for r in rows]
    assert reference_loop(distinct_rows, scores, graph, 60, norm=True) != expected


def _record(i: int, tags: list[str], quality: list[float], complexity: list[float]) -> dict:
    return {
        "id": i,
        "annotation": {
            "instag": {"content": tags},
            "deita": {"quality_scores": quality, "complexity_scores": complexity},
        },
    }


def test_annotations_keep_repeats_and_count_dropped_occurrences():
    batch = {"annotation": [_record(0, ["x", "a", "x", "q", "x"], [1.0], [2.0])["annotation"]]}
    out = MIGAnnotations(["x", "a"])(batch, [0])
    assert out["labels"] == [["x", "a", "x", "x"]]
    assert out["labels_dropped"] == [1]
    assert len(out["labels"][0]) + out["labels_dropped"][0] == 5


def test_cli_mig_authors_pool_with_repeats_selects_like_the_reference(tmp_path):
    """The authors' record format through ``hf-mig select --format mig-authors --norm``: tags
    repeated in ``annotation.instag.content``, one outside the vocabulary, multi-turn scores."""
    rng = np.random.default_rng(11)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    records, ref_rows, ref_scores = [], [], []
    for i in range(40):
        distinct = list(rng.choice(vocab, size=int(rng.integers(1, 4)), replace=False))
        tags = [str(t) for t in distinct + list(rng.choice(distinct, size=int(rng.integers(0, 3))))]
        if i % 7 == 0:
            tags.append("not in vocabulary")
        rng.shuffle(tags)
        turns = int(rng.integers(1, 3))
        quality = [float(q) for q in rng.uniform(1, 6, size=turns)]
        complexity = [float(c) for c in rng.uniform(1, 6, size=turns)]
        records.append(_record(i, tags, quality, complexity))
        # the reference's MIGDataPoint: labels filtered by the vocabulary, repeats kept;
        # score = mean over turns of quality x complexity
        ref_rows.append([t for t in tags if t in vocab])
        ref_scores.append(sum(q * c for q, c in zip(quality, complexity)) / turns)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    graph = _graph(sorted(vocab), [("alpha", "beta", 0.93), ("gamma", "delta", 0.91)])
    graph.save(tmp_path / "graph.npz")
    expected = reference_loop(ref_rows, ref_scores, graph, 12, norm=True)
    assert reference_loop([sorted(set(r)) for r in ref_rows], ref_scores, graph, 12, norm=True) != (
        expected
    )
    out = tmp_path / "subset.jsonl"
    indices = tmp_path / "indices.json"
    code = cli.main(
        [
            "select",
            str(pool),
            "--format",
            "mig-authors",
            "--vocabulary",
            str(tmp_path / "vocab.json"),
            "--graph",
            str(tmp_path / "graph.npz"),
            "--norm",
            "-k",
            "12",
            "--out",
            str(out),
            "--indices-out",
            str(indices),
            "--no-card",
        ]
    )
    assert code == 0
    assert json.loads(indices.read_text())["positions"] == expected
