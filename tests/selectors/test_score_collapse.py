"""Collapsed scores (all about equal, or most rows at one bound) are flagged by ``select``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset

from hf_mig import LabelGraph, MIGSelector
from hf_mig.cli import main as cli
from hf_mig.core.summary import format_summary, score_collapse, selection_summary

GRAPH = LabelGraph.from_edges(["a", "b", "c", "d"], [0, 1], [1, 0], [0.95, 0.95])


def test_single_value_and_nearly_single_value():
    info = score_collapse([4.0] * 12)
    assert info["reason"] == "single_value" and info["distinct_values"] == 1
    assert info["rows"] == 12 and info["min"] == info["max"] == 4.0
    assert "all 12 scores are 4" in info["message"]
    # DEITA expectations that differ in the 5th digit: still one value (rtol 1e-3)
    near = score_collapse([4.0001, 4.0002, 3.9999, 4.0])
    assert near["reason"] == "single_value" and near["distinct_values"] == 4
    assert score_collapse([4.0001, 4.0002, 3.9999, 4.0], rtol=1e-6) is None
    assert score_collapse([0.0, 0.0, 0.0])["reason"] == "single_value"


def test_most_rows_at_a_bound():
    low = score_collapse([1.0] * 90 + list(np.linspace(2, 6, 10)))
    assert low["reason"] == "at_minimum" and low["rows_at_min"] == 90
    assert low["share_at_min"] == pytest.approx(0.9)
    assert "90 of 100 scores (90.0%) sit at the minimum, 1" in low["message"]
    high = score_collapse(list(np.linspace(1, 5, 5)) + [36.0] * 95)
    assert high["reason"] == "at_maximum" and high["rows_at_max"] == 95
    assert score_collapse([1.0] * 89 + list(np.linspace(2, 6, 11))) is None  # 89% < 90%
    assert score_collapse([1.0] * 80 + [2.0] * 20, bound_share=0.8)["reason"] == "at_minimum"


def test_spread_scores_and_too_few_are_fine():
    assert score_collapse(np.random.default_rng(0).uniform(1, 36, 1000)) is None
    assert score_collapse([]) is None and score_collapse([3.0]) is None
    assert score_collapse([1.0, 2.0]) is None


def test_inputs_with_nulls_and_arrow_arrays():
    chunked = pa.chunked_array([[2.0, None, 2.0], [2.0, float("nan")]])
    info = score_collapse(chunked)
    assert info["reason"] == "single_value" and info["rows"] == 3
    assert score_collapse(pa.array([5, 5, 5, None], type=pa.int64()))["rows"] == 3
    assert score_collapse([7, None, 7])["reason"] == "single_value"
    with pytest.raises(ValueError, match="bound_share"):
        score_collapse([1.0, 2.0], bound_share=0)


def test_selection_summary_carries_it_and_prints_a_line():
    pool = Dataset.from_dict({"labels": [["a"], ["b"], ["c"]], "score": [3.0, 3.0, 3.0]})
    summary = selection_summary(pool, [0, 1])
    assert summary["score_collapse"]["reason"] == "single_value"
    text = format_summary(summary)
    assert "warning: score collapse (single_value): all 3 scores are 3" in text
    fine = selection_summary(pool.remove_columns("score").add_column("score", [1.0, 2.0, 3.0]), [0])
    assert fine["score_collapse"] is None and "score collapse" not in format_summary(fine)
    assert "score_collapse" not in selection_summary(pool.remove_columns("score"), [0])


def test_mig_selector_warns(caplog):
    pool = Dataset.from_dict(
        {"labels": [["a"], ["b"], ["c"], ["d"], ["a", "c"]] * 4, "score": [2.5] * 20}
    )
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        sel = MIGSelector(5, label_graph=GRAPH)
        sel.select_indices(pool)
    assert sel.score_collapse_["reason"] == "single_value"
    assert "scores in column 'score' have collapsed (single_value)" in caplog.text
    caplog.clear()
    spread = pool.remove_columns("score").add_column("score", [float(i + 1) for i in range(20)])
    with caplog.at_level(logging.WARNING, logger="hf_mig"):
        sel.select_indices(spread)
    assert sel.score_collapse_ is None and "collapsed" not in caplog.text


@pytest.mark.parametrize("method", ["mig", "random"])
def test_cli_select_reports_collapse_in_json_and_terminal(method, tmp_path, capsys):
    rows = [
        {"id": i, "labels": [["a"], ["b"], ["c"], ["d"]][i % 4], "score": 1.0 if i % 20 else 5.0}
        for i in range(40)
    ]  # 38 of 40 rows (95%) at the minimum
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    GRAPH.save(tmp_path / "graph.npz")
    summary_path = tmp_path / "summary.json"
    args = ["select", str(pool), "--graph", str(tmp_path / "graph.npz"), "-k", "6"]
    args += ["--method", method, "--out", str(tmp_path / "out.jsonl")]
    args += ["--summary-json", str(summary_path), "--no-card"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    collapse = json.loads(summary_path.read_text())["score_collapse"]
    assert collapse["reason"] == "at_minimum" and collapse["rows_at_min"] == 38
    assert "warning: score collapse (at_minimum): 38 of 40 scores (95.0%) sit at the minimum" in out
