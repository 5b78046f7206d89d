"""``hf-mig select --explain N``: why the first picks were picked, printed after the summary."""

from __future__ import annotations

import json

from hf_mig.annotate.graph import LabelGraph

LABELS = ["code", "coding", "math", "poem"]


def _pool(tmp_path):
    rows = [
        {"id": "r0", "labels": ["code"], "score": 3.0},
        {"id": "r1", "labels": ["coding"], "score": 2.0},
        {"id": "r2", "labels": ["math"], "score": 1.0},
        {"id": "r3", "labels": ["poem"], "score": 0.5},
        {"id": "r4", "labels": ["math", "poem"], "score": 2.5},
    ]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    graph = tmp_path / "graph.npz"
    LabelGraph.from_edges(LABELS, [0, 1], [1, 0], [0.95, 0.95]).save(graph)
    return pool, graph


def test_explain_prints_the_first_picks_with_their_labels(tmp_path, run_main):
    pool, graph = _pool(tmp_path)
    args = ["select", pool, "-k", 4, "--graph", graph, "--no-card", "--explain", 3]
    code, out, _ = run_main([*args, "-o", tmp_path / "sub.jsonl"])
    assert code == 0
    table = out[out.index("why these picks") :].splitlines()
    assert len(table) == 2 + 3
    assert table[2].split()[:3] == ["1", "4", "r4"]
    assert "math*" in table[2] and "poem*" in table[2]
    assert table[3].split()[:3] == ["2", "0", "r0"]
    assert "code*" in table[3] and "coding " in table[3]  # its own label, then a neighbour
    # without --explain the output has no such table, and the subset is the same
    code, plain, _ = run_main([*args[:-2], "-o", tmp_path / "plain.jsonl"])
    assert code == 0 and "why these picks" not in plain
    assert (tmp_path / "sub.jsonl").read_text() == (tmp_path / "plain.jsonl").read_text()


def test_explain_refuses_other_methods_and_negative_counts(tmp_path, run_main):
    pool, graph = _pool(tmp_path)
    base = ["select", pool, "-k", 2, "--no-card", "-o", tmp_path / "s.jsonl"]
    code, _, err = run_main([*base, "--method", "random", "--explain", 2])
    assert code != 0 and "--explain applies to --method mig" in err
    code, _, err = run_main([*base, "--graph", graph, "--explain", -1])
    assert code != 0 and "--explain must be an integer >= 0" in err
    assert not (tmp_path / "s.jsonl").exists()
