"""``hf-mig select`` and ``hf-mig graph`` at their edges: existing outputs, crashes mid-write,
columns the summary cannot average, and the summary's own numbers (run in process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hf_mig
from hf_mig.annotate.graph import LabelGraph
from hf_mig.cli import main as cli
from hf_mig.data import io

LABELS = ["algebra", "cooking", "geometry", "poetry", "python", "recipes"]


@pytest.fixture
def pool_and_graph(tmp_path):
    """A 60-row pool (every 10th row unlabelled) and a graph over its labels."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        labels = [] if i % 10 == 0 else sorted(rng.choice(LABELS, 2, replace=False).tolist())
        rows.append({"id": i, "labels": labels, "score": float(rng.uniform(1, 5))})
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    graph = LabelGraph.from_edges(LABELS, [0, 2, 1, 5], [2, 0, 5, 1], [0.9, 0.9, 0.85, 0.85])
    graph_path = tmp_path / "graph.npz"
    graph.save(graph_path)
    return pool, graph_path, rows


def _select(pool, graph, *extra):
    return cli.main(["-q", "select", str(pool), "--graph", str(graph), *map(str, extra)])


def test_existing_output_is_refused_before_work_and_kept(pool_and_graph, tmp_path, capsys):
    pool, graph, _ = pool_and_graph
    out = tmp_path / "subset.jsonl"
    out.write_text("precious\n")
    # the pool is unreadable: the output check must come first, so the error is about OUT
    assert cli.main(["-q", "select", str(tmp_path / "missing.jsonl"), "-k", "5", "-o", str(out)])
    err = capsys.readouterr().err
    assert "subset.jsonl: the output file exists" in err and "--overwrite" in err
    assert out.read_text() == "precious\n"


def test_overwrite_replaces_a_file_but_never_a_foreign_folder(pool_and_graph, tmp_path, capsys):
    pool, graph, rows = pool_and_graph
    out = tmp_path / "subset.jsonl"
    out.write_text("old\n")
    assert _select(pool, graph, "-k", 5, "-o", out, "--overwrite") == 0
    assert len(out.read_text().splitlines()) == 5
    # a folder holding other files (here: the pool itself) is never replaced
    assert _select(pool, graph, "-k", 5, "-o", tmp_path, "--overwrite") == 2
    assert "holding other files" in capsys.readouterr().err
    assert pool.is_file() and len(hf_mig.load_pool(pool)) == len(rows)


def test_two_flags_naming_one_file_are_refused(pool_and_graph, tmp_path, capsys):
    pool, graph, _ = pool_and_graph
    same = tmp_path / "x.json"
    assert _select(pool, graph, "-k", 5, "-o", same, "--summary-json", same) == 2
    assert "name the same file" in capsys.readouterr().err
    assert not same.exists()


def test_a_crash_while_writing_leaves_no_output(pool_and_graph, tmp_path, monkeypatch):
    pool, graph, _ = pool_and_graph
    out = tmp_path / "subset.jsonl"

    def half_written(dataset, path, suffix):
        path.write_text('{"id": 0}\n{"id"')
        raise OSError("disk full")

    monkeypatch.setattr(io, "_write_dataset", half_written)
    with pytest.raises(OSError, match="disk full"):
        _select(pool, graph, "-k", 5, "-o", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.npz", "pool.jsonl"]


def test_graph_command_refuses_an_existing_output(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("algebra\ngeometry\n")
    out = tmp_path / "g.npz"
    out.write_bytes(b"not mine")
    assert cli.main(["-q", "graph", "--vocabulary", str(vocab), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"not mine"


def test_summary_counts_unlabelled_rows_and_matches_the_subset(pool_and_graph, tmp_path):
    pool, graph, rows = pool_and_graph
    summary = tmp_path / "summary.json"
    indices = tmp_path / "indices.json"
    out = tmp_path / "s.parquet"
    args = ("-k", 30, "-o", out, "--summary-json", summary, "--indices-out", indices)
    assert _select(pool, graph, *args) == 0
    numbers = json.loads(summary.read_text())
    picked = [rows[i] for i in json.loads(indices.read_text())["positions"]]
    assert numbers["pool_unlabelled_rows"] == 6
    assert numbers["selected_unlabelled_rows"] == sum(1 for r in picked if not r["labels"])
    assert numbers["selected_mean_score"] == pytest.approx(np.mean([r["score"] for r in picked]))
    assert numbers["pool_mean_score"] == pytest.approx(np.mean([r["score"] for r in rows]))
    assert numbers["selected_labels"] == len({label for r in picked for label in r["labels"]})
    assert 0 < numbers["select_seconds"] <= numbers["seconds"]


def test_random_with_text_scores_writes_everything(tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    rows = [{"labels": ["a"], "score": "high" if i % 2 else "low"} for i in range(20)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = tmp_path / "summary.json"
    out = tmp_path / "o.jsonl"
    argv = ["select", str(pool), "--method", "random", "-k", "4", "-o", str(out)]
    assert cli.main([*argv, "--summary-json", str(summary)]) == 0
    numbers = json.loads(summary.read_text())
    assert numbers["not_summarised"] == {"score": "not numeric (string)"}
    assert "column 'score' not summarised" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 4


def test_degenerate_pools_exit_2_with_the_options_to_go_on(pool_and_graph, tmp_path, capsys):
    pool, _, rows = pool_and_graph
    other = tmp_path / "other.npz"
    LabelGraph.from_edges(["chemistry", "history"], [], [], []).save(other)
    out = tmp_path / "o.jsonl"
    assert _select(pool, other, "-k", 5, "-o", out) == 2
    assert "label" in capsys.readouterr().err and not out.exists()
    # a graph covering a third of the rows: refused at the default floor, accepted below it
    part = tmp_path / "part.npz"
    LabelGraph.from_edges(["poetry"], [], [], []).save(part)
    covered = sum(1 for r in rows if "poetry" in r["labels"]) / len(rows)
    assert covered < 0.5
    assert _select(pool, part, "-k", 5, "-o", out) == 2
    assert "below min_coverage=0.5" in capsys.readouterr().err
    assert _select(pool, part, "-k", 5, "-o", out, "--min-coverage", covered / 2) == 0
    picked = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert all("poetry" in rows[i]["labels"] for i in picked)


def test_graph_command_bounds_the_edges(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("python programming\npython coding\ncode in python\ncooking recipe\n")
    out = tmp_path / "g.npz"
    argv = ["-q", "graph", "--vocabulary", str(vocab), "-o", str(out), "--threshold", "0.0"]
    assert cli.main([*argv, "--max-edges", "2"]) == 2
    assert "edges" in capsys.readouterr().err and not out.exists()
    assert cli.main([*argv, "--max-degree", "1"]) == 0
    graph = LabelGraph.load(out)
    assert max(len(graph.neighbors(label)) for label in graph.labels) <= 1
