"""IFEval without lm-eval: ``ifeval.py ifeval`` generates with a real (tiny, offline) model
through the shared backends, resumes from its progress file and writes ``objective.json`` with
``scores["IFEval"]``; ``ifeval.py score`` fills the same column from real GPT-4 responses.
Both results reach the comparison table (:func:`hf_mig.eval.compare.collect`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_mig.eval import compare
from hf_mig.eval import ifeval as obj
from hf_mig.models.generation import TransformersBackend

GPT4 = "input_response_data_gpt4_20231107_145030.jsonl"


@pytest.fixture(scope="module")
def ifeval_dir(data_dir: Path) -> Path:
    d = data_dir / "ifeval"
    if not d.is_dir():
        pytest.skip("ifeval data not available")
    return d


def _followed_over_covered(inputs: list[dict], responses: list[dict]) -> tuple[int, int]:
    """(prompts whose every instruction is followed, prompts whose every instruction is
    checkable), counted instruction by instruction with check_instruction."""
    by_prompt = {r["prompt"]: r["response"] for r in responses}
    followed = covered = 0
    for item in inputs:
        if item["prompt"] not in by_prompt:
            continue
        checks = [
            obj.check_instruction(iid, by_prompt[item["prompt"]], kw)
            for iid, kw in zip(item["instruction_id_list"], item["kwargs"])
        ]
        if all(c is not None for c in checks):
            covered += 1
            followed += all(checks)
    return followed, covered


def test_ifeval_generates_scores_resumes_and_reaches_the_table(
    tiny_llama_path, ifeval_dir, tmp_path, capsys
):
    out_dir = tmp_path / "ifeval-run"
    argv = ["ifeval", "--model", str(tiny_llama_path), "--backend", "transformers",
            "--device", "cpu", "--input", str(ifeval_dir / "input_data.jsonl"), "--limit", "4",
            "--max-new-tokens", "16", "--out-dir", str(out_dir),
            "--model-name", "tiny-sft"]  # fmt: skip
    assert obj.main(argv) == 0
    assert "4 items: 0 already done, 4 generated, 0 failed" in capsys.readouterr().out
    inputs = obj._read_jsonl(ifeval_dir / "input_data.jsonl")[:4]
    responses = obj._read_jsonl(out_dir / "ifeval_responses.jsonl")
    assert [r["prompt"] for r in responses] == [i["prompt"] for i in inputs]
    assert all(set(r) == {"prompt", "response"} for r in responses)
    # the responses are the model's greedy replies through its chat template
    backend = TransformersBackend(tiny_llama_path, device="cpu")
    direct = backend.generate(
        [[{"role": "user", "content": inputs[0]["prompt"]}]], max_new_tokens=16
    )[0]
    assert responses[0]["response"] == direct.text

    result = json.loads((out_dir / "objective.json").read_text())
    assert result["benchmark"] == "objective" and result["model"] == "tiny-sft"
    followed, covered = _followed_over_covered(inputs, responses)
    assert covered > 0
    assert result["scores"]["IFEval"] == pytest.approx(100 * followed / covered)
    res = obj.ifeval_score(inputs, responses)
    assert result["ifeval_offline"] == json.loads(json.dumps(res.to_dict()))
    assert result["scores"]["IFEval"] == pytest.approx(res.prompt_strict_covered)
    metric = result["ifeval_metric"]
    assert "prompt-level strict" in metric and "4 IFEval prompts" in metric
    assert "offline checkers" in metric
    if res.n_prompts_covered == 4:
        assert "all 4 prompts fully covered" in metric
    else:  # without langdetect some language checks are not covered
        assert f"only {res.n_prompts_covered} of 4 prompts fully covered" in metric
    assert result["ifeval_generation"]["max_new_tokens"] == 16
    assert result["ifeval_generation"]["backend"]["backend"] == "transformers"

    # a re-run generates nothing: every response comes from the progress file
    progress = out_dir / "ifeval_responses.progress.jsonl"
    before = progress.read_text()
    assert len(before.splitlines()) == 4
    assert obj.main(argv) == 0
    assert "4 items: 4 already done, 0 generated, 0 failed" in capsys.readouterr().out
    assert progress.read_text() == before
    assert json.loads((out_dir / "objective.json").read_text())["scores"] == result["scores"]

    table = compare.collect([out_dir / "objective.json"])
    assert table == {"tiny-sft": {"IFEval": pytest.approx(100 * followed / covered)}}
    markdown = compare.to_markdown(compare.build_table(table))
    header, _, row = markdown.splitlines()
    assert "IFEval" in header.split(" | ") and row.startswith("| tiny-sft |")


def test_ifeval_reports_an_incomplete_generation_and_scores_nothing(
    tiny_llama_path, ifeval_dir, tmp_path, capsys
):
    # the tiny model's window is 1024 tokens: 1020 new tokens leave no room for any prompt
    out_dir = tmp_path / "run"
    argv = ["ifeval", "--model", str(tiny_llama_path), "--backend", "transformers",
            "--device", "cpu", "--input", str(ifeval_dir / "input_data.jsonl"), "--limit", "2",
            "--max-new-tokens", "1020", "--out-dir", str(out_dir)]  # fmt: skip
    assert obj.main(argv) == 1
    text = capsys.readouterr().out
    assert "2 failed" in text and "nothing scored" in text
    assert not (out_dir / "objective.json").exists()
    assert not (out_dir / "ifeval_responses.jsonl").exists()


def test_score_fills_the_ifeval_column_from_real_gpt4_responses(ifeval_dir, tmp_path):
    out = tmp_path / "objective.json"
    argv = ["score", "--ifeval-input", str(ifeval_dir / "input_data.jsonl"),
            "--ifeval-responses", str(ifeval_dir / GPT4), "--model-name", "gpt-4-0613",
            "--out", str(out)]  # fmt: skip
    assert obj.main(argv) == 0
    result = json.loads(out.read_text())
    inputs = obj._read_jsonl(ifeval_dir / "input_data.jsonl")
    responses = obj._read_jsonl(ifeval_dir / GPT4)
    followed, covered = _followed_over_covered(inputs, responses)
    assert result["scores"]["IFEval"] == pytest.approx(100 * followed / covered)
    if obj._langdetect_available():
        # every instruction is checked; prompt 2785 has no response of its current wording
        assert (followed, covered) == (417, 540)
        metric = result["ifeval_metric"]
        assert "only 540 of 541 prompts fully covered (1 without a response)" in metric
    assert result["ifeval_offline"]["unmatched"] == [2785]
    table = compare.collect([out])
    assert table["gpt-4-0613"]["IFEval"] == pytest.approx(result["scores"]["IFEval"])

    # an lm-eval IFEval result keeps its place; the offline one stays under ifeval_offline
    lm_eval = tmp_path / "lm.json"
    lm_eval.write_text(json.dumps({"results": {"ifeval": {"prompt_level_strict_acc,none": 0.5}}}))
    both = obj.main([*argv[:-2], "--lm-eval-results", str(lm_eval), "--out", str(out)])
    assert both == 0
    result = json.loads(out.read_text())
    assert result["scores"]["IFEval"] == pytest.approx(50.0)
    assert "lm-eval" in result["ifeval_metric"]
    assert result["ifeval_offline"]["n_prompts_covered"] == covered


def test_the_metric_says_which_prompts_were_left_out(ifeval_dir, tmp_path, monkeypatch):
    # without langdetect the three language checks are not covered: the score is over the rest
    monkeypatch.setattr(obj, "_langdetect_available", lambda: False)
    out = tmp_path / "objective.json"
    argv = ["score", "--ifeval-input", str(ifeval_dir / "input_data.jsonl"),
            "--ifeval-responses", str(ifeval_dir / GPT4), "--out", str(out)]  # fmt: skip
    assert obj.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["scores"]["IFEval"] == pytest.approx(100 * 338 / 445)
    metric = result["ifeval_metric"]
    assert "only 445 of 541 prompts fully covered (1 without a response; 95 with an " in metric
    assert "change_case:english_lowercase" in metric
    lower = result["ifeval_offline"]["prompt_strict_lower"]
    assert f"between {lower:.2f} and" in metric
