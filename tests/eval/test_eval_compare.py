"""The paper's table (golden averages by hand), result-file collection, the paper's rows, the
chart; and the objective benchmarks' lm-eval plumbing."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from hf_mig.eval import compare
from hf_mig.eval import tasks as obj


def _write(path: Path, data: dict | list) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def result_files(tmp_path: Path) -> list[Path]:
    # model A: every benchmark; model B: subjective ones only (objective averages missing)
    return [
        _write(tmp_path / "a_ae.json", {"benchmark": "alpaca_eval_2", "model": "A",
                                        "win_rate": 10.0, "length_controlled_winrate": 12.0}),
        _write(tmp_path / "a_mt.json", {"benchmark": "mt_bench", "model": "A", "overall": 7.0,
                                        "mode": "paper", "primary": 70.0}),
        _write(tmp_path / "a_wb.json", {"benchmark": "wildbench_v2", "model": "A",
                                        "mixture_of_rewards": -20.0}),
        _write(tmp_path / "a_obj.json", {"benchmark": "objective", "model": "A", "scores": {
            "ARC-c": 50.0, "BBH": 60.0, "GSM8K": 70.0, "HumanEval": 40.0, "MMLU": 65.0,
            "IFEval": 55.0}}),
        _write(tmp_path / "b.json", [
            {"benchmark": "alpaca_eval_2", "model": "B", "win_rate": 4.0},
            {"benchmark": "mt_bench", "model": "B", "overall": 6.5},
            {"benchmark": "wildbench_v2", "model": "B", "mixture_of_rewards": -40.0},
        ]),
    ]  # fmt: skip


def test_averages_golden_by_hand(result_files):
    rows = {r["model"]: r for r in compare.build_table(compare.collect(result_files))}
    a, b = rows["A"], rows["B"]
    assert a["Avg_obj"] == pytest.approx(340 / 6)  # (50+60+70+40+65+55)/6 = 56.667
    assert a["Avg_sub"] == pytest.approx((10 + 70 + 40) / 3)  # AE, MT x10, (Wild+100)/2 = 40
    assert a["Avg"] == pytest.approx((340 / 6 + 40) / 2)  # 48.333
    assert b["Avg_sub"] == pytest.approx((4 + 65 + 30) / 3)  # 33.0
    assert "Avg_obj" not in b and "Avg" not in b  # never computed from missing values


def test_markdown_csv_and_paper_rows(result_files, tmp_path, capsys):
    md, csv_path, png = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.png"
    code = compare.main(
        [*map(str, result_files), "--paper", "--rename", "A=MIG-50K",
         "--md", str(md), "--csv", str(csv_path), "--png", str(png)]
    )  # fmt: skip
    assert code == 0
    text = md.read_text()
    assert text == capsys.readouterr().out.split("chart written")[0].split("matplotlib")[0]
    lines = text.splitlines()
    assert lines[0].startswith(
        "| Model | ARC-c | BBH | GSM8K | HumanEval | MMLU | IFEval | Avg_obj"
    )
    mig = next(ln for ln in lines if ln.startswith("| MIG-50K |"))
    assert "| 56.67 |" in mig and "| 40.00 | 48.33 |" in mig
    paper = next(ln for ln in lines if ln.startswith("| MIG (paper) |"))
    # published AE, MT, Wild, Avg; Avg_sub computed from them: (14.66 + 73.2 + 41.115) / 3
    assert "| 14.66 | 7.32 | -17.77 | 42.99 | 55.32 |" in paper
    cells = [c.strip() for c in paper.split("|")[2:-1]]
    assert cells[:7] == [""] * 7  # six objective columns and Avg_obj: missing, not zero
    assert any(ln.startswith("| ZIP (paper) |") and ln.endswith("| 47.44 |") for ln in lines)
    rows = csv_path.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["model", "ARC-c", "BBH"]
    assert float(rows[1].split(",")[7]) == pytest.approx(340 / 6)
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_without_matplotlib_says_so(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    why = compare.bar_chart([{"model": "A", "Avg": 1.0}], tmp_path / "x.png")
    assert "matplotlib is not installed" in why and not (tmp_path / "x.png").exists()


def test_chart_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"model": "A", "Avg_obj": 50.0, "Avg_sub": 40.0, "Avg": 45.0}, {"model": "B"}]
    assert compare.bar_chart(rows, tmp_path / "c.png") is None
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_conflicting_results_and_unusable_files_are_errors(tmp_path):
    f1 = _write(tmp_path / "1.json", {"benchmark": "mt_bench", "model": "A", "overall": 7.0})
    f2 = _write(tmp_path / "2.json", {"benchmark": "mt_bench", "model": "A", "overall": 6.0})
    with pytest.raises(ValueError, match="another file says"):
        compare.collect([f1, f2])
    with pytest.raises(ValueError, match="no result the table can use"):
        compare.collect([_write(tmp_path / "3.json", {"hello": 1})])


def test_wb_score_results_are_not_the_wild_column(tmp_path):
    f = _write(tmp_path / "wb.json", {"benchmark": "wildbench_v2", "model": "A",
                                      "WB_score": -5.25, "WB_score.task_macro": -9.69})  # fmt: skip
    rows = compare.build_table(compare.collect([f]))
    assert "Wild" not in rows[0] and rows[0]["WB-Score"] == pytest.approx(-9.69)
    assert "WB-Score" in compare.to_markdown(rows).splitlines()[0]


# ------------------------------------------------------------------------------ objective


def test_lm_eval_results_to_columns(tmp_path):
    results = {
        "results": {
            "arc_challenge_chat": {"exact_match,remove_whitespace": 0.5},
            "gsm8k_cot_zeroshot": {"exact_match,flexible-extract": 0.25},
            "ifeval": {"prompt_level_strict_acc,none": 0.75, "inst_level_strict_acc,none": 0.8},
            "humaneval_instruct": {"pass@1,create_test": 0.125},
        },
        "groups": {"bbh_cot_fewshot": {"exact_match,get-answer": 0.4}, "mmlu": {"acc,none": 0.6}},
        "configs": {},
        "config": {"model_args": "pretrained=/ckpt/llama-mig-50k"},
    }
    assert obj.scores_from_lm_eval(results) == pytest.approx(
        {"ARC-c": 50.0, "BBH": 40.0, "GSM8K": 25.0, "HumanEval": 12.5, "MMLU": 60.0,
         "IFEval": 75.0}
    )  # fmt: skip
    table = compare.collect([_write(tmp_path / "lm.json", results)])
    assert table["llama-mig-50k"]["Avg_obj" if False else "MMLU"] == pytest.approx(60.0)
    assert compare.derive(table["llama-mig-50k"])["Avg_obj"] == pytest.approx(262.5 / 6)


def test_lm_eval_commands_use_the_papers_shots():
    cmds = {c[c.index("--tasks") + 1]: c for c in obj.lm_eval_commands("m", "out")}
    shots = {t: int(c[c.index("--num_fewshot") + 1]) for t, c in cmds.items()}
    assert shots == {
        "arc_challenge_chat": 0, "bbh_cot_fewshot": 3, "gsm8k_cot_zeroshot": 0,
        "humaneval_instruct": 0, "mmlu": 5, "ifeval": 0,
    }  # fmt: skip
    assert all("--apply_chat_template" in c for c in cmds.values())
    assert "--confirm_run_unsafe_code" in cmds["humaneval_instruct"]


def test_objective_generate_without_lm_eval(monkeypatch, tmp_path):
    monkeypatch.setattr(obj.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="optional extra"):
        obj.main(["generate", "--model", "m", "--out-dir", str(tmp_path)])
