"""``hf-mig eval``: every registered benchmark is a subcommand, and a run through it is the
module's run (``python -m hf_mig.eval.<module>``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_mig.cli.main import main as hf_mig
from hf_mig.eval import mt_bench as mt
from hf_mig.eval.base import BENCHMARKS, Benchmark


def test_help_lists_every_registered_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        hf_mig(["eval", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert BENCHMARKS and all(f"\n    {name}" in text for name in BENCHMARKS)
    for name in BENCHMARKS:
        with pytest.raises(SystemExit) as exit_info:
            hf_mig(["eval", name, "--help"])
        assert exit_info.value.code == 0
        assert "score" in capsys.readouterr().out


def test_a_new_benchmark_reaches_the_command_line(monkeypatch, capsys):
    class Echo(Benchmark):
        """Echo: a benchmark that only scores."""

        description = "echo"
        judged = False

        def add_steps(self, sub):
            sub.add_parser("score").add_argument("--value", type=float, required=True)

        def score(self, args):
            print(f"echo {args.value}")
            return {"benchmark": "echo", "value": args.value}

        def table_cells(self, result):
            return {}

    list(BENCHMARKS)  # every module registered
    monkeypatch.setitem(BENCHMARKS, "echo", Echo)
    with pytest.raises(SystemExit):
        hf_mig(["eval", "--help"])
    assert "Echo: a benchmark that only scores." in capsys.readouterr().out
    assert hf_mig(["eval", "echo", "score", "--value", "2.5"]) == 0
    assert capsys.readouterr().out == "echo 2.5\n"


def test_an_offline_run_is_the_modules_run(tmp_path, data_dir, capsys):
    questions = data_dir / "mt_bench" / "mt_bench" / "question.jsonl"
    if not questions.is_file():
        pytest.skip("mt_bench data not available")
    judgments = tmp_path / "judgments.jsonl"
    rows = [{"question_id": q, "turn": t, "judgment": f"Rating: [[{(q + t) % 10 + 1}]]"}
            for q in (81, 101, 111) for t in (1, 2)]  # fmt: skip
    judgments.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(entry, out: Path) -> tuple[int, str, dict]:
        argv = ["score", "--judgments", str(judgments), "--questions", str(questions),
                "--mode", "paper", "--out", str(out)]  # fmt: skip
        code = entry(argv)
        return code, capsys.readouterr().out, json.loads(out.read_text())

    by_module = run(mt.main, tmp_path / "module.json")
    by_cli = run(lambda argv: hf_mig(["eval", "mt_bench", *argv]), tmp_path / "cli.json")
    assert by_cli == by_module
    assert by_cli[0] == 0 and by_cli[2]["benchmark"] == "mt_bench"


def test_a_step_error_is_the_cli_error(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    code = hf_mig(["eval", "mt_bench", "score", "--judgments", str(missing)])
    assert code == 2
    assert "hf-mig eval: error:" in capsys.readouterr().err
