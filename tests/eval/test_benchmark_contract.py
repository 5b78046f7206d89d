"""Every registered benchmark (:data:`hf_mig.eval.base.BENCHMARKS`) keeps one contract: the
interface, a command line whose steps parse ``--help``, and table cells from its own ``score``
result on a tiny offline input."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hf_mig.eval import compare
from hf_mig.eval.base import BENCHMARKS, Benchmark, is_number

GPT4 = "input_response_data_gpt4_20231107_145030.jsonl"


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _mt_bench(tmp: Path, data_dir: Path) -> list[str]:
    judgments = [
        {"question_id": 81, "turn": 1, "score": 8},
        {"question_id": 81, "turn": 2, "score": 6},
        {"question_id": 101, "turn": 1, "score": -1},
    ]
    return ["score", "--judgments", str(_write_jsonl(tmp / "j.jsonl", judgments))]


def _alpaca_eval(tmp: Path, data_dir: Path) -> list[str]:
    records = [
        {"instruction": f"i{k}", "output_1": "a" * (k + 3), "output_2": "b" * (2 * k + 1),
         "generator_1": "base", "generator_2": "tiny", "preference": p}
        for k, p in enumerate([2.0, 1.0, 1.5, 1.8, 1.2])
    ]  # fmt: skip
    path = tmp / "annotations.json"
    path.write_text(json.dumps(records))
    return ["score", "--annotations", str(path), "--no-lc"]


def _wildbench(tmp: Path, data_dir: Path) -> list[str]:
    records = [
        {"session_id": "s1", "score": "8", "model_output": "x" * 10, "model_test": "tiny"},
        {"session_id": "s2", "score": "4", "model_output": "y" * 20, "model_test": "tiny"},
    ]
    path = tmp / "scores.json"
    path.write_text(json.dumps(records))
    return ["score", "--records", str(path)]


def _ifeval(tmp: Path, data_dir: Path) -> list[str]:
    d = data_dir / "ifeval"
    if not d.is_dir():
        pytest.skip("ifeval data not available")
    return ["score", "--ifeval-input", str(d / "input_data.jsonl"),
            "--ifeval-responses", str(d / GPT4), "--model-name", "gpt-4"]  # fmt: skip


def _tasks(tmp: Path, data_dir: Path) -> list[str]:
    results = {"results": {"gsm8k_cot_zeroshot": {"exact_match,flexible-extract": 0.25}},
               "groups": {"mmlu": {"acc,none": 0.5}}, "configs": {}}  # fmt: skip
    path = tmp / "results.json"
    path.write_text(json.dumps(results))
    return ["score", "--lm-eval-results", str(path), "--model-name", "tiny"]


#: A ``score`` command line on a tiny offline input, for each registered benchmark.
TINY_SCORE: dict[str, Callable[[Path, Path], list[str]]] = {
    "alpaca_eval": _alpaca_eval,
    "ifeval": _ifeval,
    "mt_bench": _mt_bench,
    "tasks": _tasks,
    "wildbench": _wildbench,
}
#: The cells each tiny result gives.
EXPECTED_CELLS = {
    "alpaca_eval": {"AE"},
    "ifeval": {"IFEval"},
    "mt_bench": {"MT"},
    "tasks": {"GSM8K", "MMLU"},
    "wildbench": {"WB-Score"},
}


def _steps(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_the_registry_holds_every_benchmark_module():
    assert list(BENCHMARKS) == sorted(TINY_SCORE)
    with pytest.raises(KeyError, match="unknown benchmark 'nope'; known: alpaca_eval"):
        BENCHMARKS["nope"]


@pytest.mark.parametrize("name", sorted(TINY_SCORE))
def test_interface(name):
    cls = BENCHMARKS[name]
    assert issubclass(cls, Benchmark) and cls.name == name
    assert cls.description and cls.prog and cls.result_benchmark
    for method in ("add_steps", "score", "table_cells"):
        assert getattr(cls, method) is not getattr(Benchmark, method), method
    if cls.judged:
        for method in ("generate_outputs", "judge_inputs", "judge_outputs"):
            assert getattr(cls, method) is not getattr(Benchmark, method), method
    bench = cls()
    for method in ("generate", "judge", "score", "table_cells", "run_all", "main"):
        assert callable(getattr(bench, method))
    assert bench.table_cells({"benchmark": "something else"}) == {}


@pytest.mark.parametrize("name", sorted(TINY_SCORE))
def test_every_step_parses_help(name, capsys):
    parser = BENCHMARKS[name]().build_parser()
    steps = _steps(parser)
    assert {"generate", "judge", "score", "all"} <= set(steps)
    for argv in [["--help"], *([step, "--help"] for step in steps)]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(TINY_SCORE))
def test_table_cells_from_a_tiny_offline_result(name, tmp_path, data_dir, capsys):
    out = tmp_path / "result.json"
    bench = BENCHMARKS[name]()
    assert bench.main([*TINY_SCORE[name](tmp_path, data_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["benchmark"] == bench.result_benchmark
    cells = bench.table_cells(result)
    assert set(cells) == EXPECTED_CELLS[name]
    assert all(is_number(v) for v in cells.values())
    # the comparison table reads the same cells; no other benchmark disagrees on them
    assert compare.values_of(result) == cells
    for other in BENCHMARKS.values():
        theirs = other().table_cells(result)
        assert all(cells[k] == v for k, v in theirs.items())
