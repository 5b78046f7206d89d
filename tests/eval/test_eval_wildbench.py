"""WildBench v2: WB-Score / WB-Reward against the leaderboard's files, golden values, judging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_server import JudgeServer, wb_choice
from judge_server import wb_score as server_score

from hf_mig.eval import wildbench as wb
from hf_mig.eval.judge import JudgeClient

GEMMA = "eval_results/v2.0625/score.v2/eval=gpt-4o-2024-05-13/gemma-2b-it.json"
LEGACY = [
    "eval_results/v2.0522/score.v2/eval=gpt-4-turbo-2024-04-09/Llama-3-8B-Tulu-330K.json",
    "eval_results/v2.0522/score.v2/eval=gpt-4-turbo-2024-04-09/Llama-3-8B-ShareGPT-112K.json",
]


@pytest.fixture(scope="module")
def wb_dir(data_dir: Path) -> Path:
    d = data_dir / "wildbench"
    if not d.is_dir():
        pytest.skip("wildbench data not available")
    return d


@pytest.fixture(scope="module")
def leaderboard(wb_dir: Path) -> tuple[dict, dict]:
    return wb.load_leaderboard(wb_dir / "leaderboard" / "data_dir")


# ------------------------------------------------------------------------------ real data


def test_wb_score_of_gemma_reproduces_the_leaderboard(wb_dir, leaderboard):
    scores, stats = leaderboard
    res = wb.wb_score(wb.load_records(wb_dir / GEMMA))
    pub = scores["gemma-2b-it"]
    assert res.model == "gemma-2b-it"
    assert res.total == pub["total"] == 1021 and res.n_invalid == 0
    assert res.score == pytest.approx(pub["score"], abs=1e-12)
    assert res.adjusted_score == pytest.approx(pub["adjusted_score"], abs=1e-12)
    assert res.WB_score == pytest.approx(stats["gemma-2b-it"]["WB_score"], abs=1e-9)
    # lengths skip the empty output (1 of 1021), as the leaderboard does
    assert res.avg_len == pytest.approx(pub["avg_len"], abs=1e-9)
    assert stats["gemma-2b-it"]["Length"] == pytest.approx(res.avg_len)
    # without the tasks' tags the categories are not computable, and that is said
    assert res.task_macro_score is None and not res.categories_available


def test_task_macro_with_official_weights_for_every_leaderboard_model(leaderboard):
    scores, stats = leaderboard
    assert len(scores) == 61
    for name, rec in scores.items():
        macro = wb.task_macro(rec["task_categorized_scores"])
        assert macro == pytest.approx(rec["task_macro_score"], abs=1e-9), name
        assert stats[name]["WB_score.task_macro"] == pytest.approx(macro * 10, abs=1e-9), name
        assert stats[name]["WB_score"] == pytest.approx(rec["adjusted_score"] * 10, abs=1e-9)


def test_reward_aggregation_for_every_leaderboard_model(leaderboard):
    # per-reference task macro from the per-category rewards (official weights), the mixture
    # over the three references, and RewardScore_Avg
    _, stats = leaderboard
    cats = list(wb.TASK_WEIGHTS)
    n_checked = 0
    for name, st in stats.items():
        for ref in ("haiku", "llama", "gpt4t"):
            per_cat = {c: st[f"{ref}_reward.{c}.K=-1"] for c in cats}
            if all(v == 0 for v in per_cat.values()):
                continue  # no pairwise run against this reference (the leaderboard writes 0)
            assert wb.task_macro(per_cat) == pytest.approx(
                st[f"{ref}_reward.task_macro.K=-1"], abs=1e-9
            ), (name, ref)
            n_checked += 1
        rewards = [st[f"{r}_reward.K=-1"] for r in ("haiku", "llama", "gpt4t")]
        assert wb.mixture_of_rewards(rewards) == pytest.approx(st["mixture_of_rewards.K=-1"])
        macros = [st[f"{r}_reward.task_macro.K=-1"] for r in ("haiku", "llama", "gpt4t")]
        assert wb.mixture_of_rewards(macros) == pytest.approx(st["task_macro_reward.K=-1"])
        assert (st["WB_score.task_macro"] + st["task_macro_reward.K=-1"]) / 2 == pytest.approx(
            st["RewardScore_Avg"]
        )
    assert n_checked >= 140  # 144 (model, reference) pairs with pairwise results


def test_score_parser_on_every_real_judgment(wb_dir):
    # each record's parsed judge reply, as JSON and as a Python repr -> the recorded score
    n = 0
    for rel in [GEMMA, *LEGACY]:
        for rec in wb.load_records(wb_dir / rel):
            reply = rec["parsed_result"]
            assert wb.parse_score(json.dumps(reply)) == float(rec["score"])
            assert wb.parse_score(str(reply)) == float(rec["score"])
            n += 1
    assert n == 1021 + 1018 + 1021


def test_cli_score_with_published_numbers(wb_dir, capsys, tmp_path):
    out = tmp_path / "r.json"
    wb.main(
        [
            "score",
            "--records",
            str(wb_dir / GEMMA),
            "--leaderboard-dir",
            str(wb_dir / "leaderboard" / "data_dir"),
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert "WB_score              -5.25" in text and "published: WB_score -5.25" in text
    assert "n/a" in text  # task macro needs the tasks
    res = json.loads(out.read_text())
    assert res["primary_metric"] == "WB_score" and res["total"] == 1021


# ------------------------------------------------------------------------------ golden


def test_wb_score_with_categories_golden_by_hand():
    records = [
        {"session_id": "s1", "score": "8", "model_output": "abc"},
        {"session_id": "s2", "score": "4", "model_output": "abcdef"},
        {"session_id": "s3", "score": 6, "model_output": ""},
        {"session_id": "s4", "score": "n/a", "model_output": "x"},
    ]
    cats = {
        "s1": ["Creative Tasks", "Planning & Reasoning"],
        "s2": ["Planning & Reasoning", "Planning & Reasoning"],  # Reasoning + Planning
        "s3": ["Coding & Debugging"],
        "s4": ["Coding & Debugging"],
    }
    res = wb.wb_score(records, cats, model="m")
    assert res.n_invalid == 1 and res.total == 4
    assert res.score == pytest.approx(6.0) and res.WB_score == pytest.approx(20.0)
    assert res.avg_len == pytest.approx(4.5)  # the empty output is not counted
    assert res.task_categorized_scores == pytest.approx(
        {"Creative Tasks": 6.0, "Planning & Reasoning": 2 * (16 / 3 - 5)}
    )
    assert res.task_macro_score == pytest.approx((6 * 0.5 + 2 * (16 / 3 - 5) * 1.25) / 4.75)
    d = res.to_dict()
    assert d["WB_score.task_macro"] == pytest.approx(8.0701754, abs=1e-6)


def _pair(sid: str, model_is_a: bool, choice: str | None, n_model: int, n_ref: int) -> dict:
    rec = {"session_id": sid, "model_is_A": model_is_a, "model_output": "m" * n_model}
    rec["ref_output"] = "r" * n_ref
    if choice is None:
        rec["judgment"] = "no verdict"
    else:
        rec["choice"] = choice
    return rec


def _pairwise_records() -> list[dict]:
    return [
        _pair("r1", True, "A++", 1, 1),  # win much
        _pair("r2", False, "A+", 20, 25),  # the reference (A) slightly better: lose
        _pair("r3", True, "A+", 100, 30),  # win
        _pair("r4", False, "B++", 1, 1),  # the model (B) much better: win much
        _pair("r5", True, "A=B", 1, 1),  # tie
        _pair("r6", True, None, 1, 1),  # unparseable
    ]


def test_wb_reward_golden_by_hand():
    recs = _pairwise_records()
    cats = {"r1": ["Creative Tasks"], "r2": ["Creative Tasks"]}
    cats.update({k: ["Coding & Debugging"] for k in ("r3", "r4", "r5", "r6")})
    r = wb.wb_reward(recs, categories=cats, model="m", reference="ref")
    assert (r.win_much, r.win, r.tie, r.lose, r.lose_much) == (2, 1, 1, 1, 0)
    assert r.n_invalid == 1 and r.total == 6
    assert r.reward == pytest.approx(100 * (2 + 0.5 - 0.5) / 6)
    assert r.task_categorized_rewards == pytest.approx(
        {"Creative Tasks": 25.0, "Coding & Debugging": 37.5}
    )
    assert r.task_macro_reward == pytest.approx((25 * 0.5 + 37.5 * 1.25) / 4.75)
    # length penalty K=10: r3's slight win (100 > 30 + 10 chars) becomes a tie; r2's slight loss
    # stays (the reference is 25 chars, not more than 20 + 10)
    k = wb.wb_reward(recs, K=10)
    assert (k.win_much, k.win, k.tie, k.lose, k.lose_much) == (2, 0, 2, 1, 0)
    assert k.reward == pytest.approx(100 * (2 - 0.5) / 6)
    assert wb.paper_scale(wb.mixture_of_rewards([k.reward, -50.0, 10.0])) == pytest.approx(
        (100 * 1.5 / 6 - 50 + 10) / 3 / 2 + 50
    )


def test_choice_parser_forms():
    assert wb.parse_pairwise_choice('```\n{"choice": "B++"}\n```') == "B++"
    assert wb.parse_pairwise_choice('{"analysis": "x", "choice": "A+",}') == "A+"  # bad JSON
    assert wb.parse_pairwise_choice('"choice": "[A=B]"') == "A=B"
    assert wb.parse_pairwise_choice("I prefer A") is None
    assert wb.parse_score('{"score": "[7]"}') == 7.0
    assert wb.parse_score('{"score": "11"}') is None


def test_task_categories_from_tags():
    tasks = [
        {"session_id": "a", "primary_tag": "Reasoning", "secondary_tags": ["Planning", "Math"]},
        {"id": "b", "primary_tag": "Others", "secondary_tags": []},
    ]
    cats = wb.task_categories(tasks)
    assert cats == {
        "a": ["Planning & Reasoning", "Planning & Reasoning", "Math & Data Analysis"],
        "b": ["Creative Tasks"],
    }
    with pytest.raises(KeyError, match="unknown WildBench tag"):
        wb.task_categories([{"session_id": "c", "primary_tag": "Cooking"}])


# ------------------------------------------------------------------------------ judging


def _tasks_and_outputs(wb_dir: Path, data_dir: Path, k: int = 5):
    # real WildBench session ids and real model outputs (gemma-2b-it, Tulu-330K as the
    # reference); the user queries are real MT-Bench questions in the WildBench task schema
    gemma = wb.load_records(wb_dir / GEMMA)
    tulu = {r["session_id"]: r for r in wb.load_records(wb_dir / LEGACY[0])}
    questions = [
        json.loads(line)
        for line in (data_dir / "mt_bench/mt_bench/question.jsonl").read_text().splitlines()
    ]
    picked = [r for r in gemma if r["session_id"] in tulu and r["model_output"].strip()][: k - 1]
    picked.append(next(r for r in gemma if not r["model_output"].strip()))  # the empty one
    tasks, outputs, refs = [], {}, {}
    for r, q in zip(picked, questions):
        sid = r["session_id"]
        tasks.append(
            {
                "session_id": sid,
                "conversation_input": [{"role": "user", "content": q["turns"][0]}],
                "checklist": ["Is it correct?", "Is it clear?"],
                "primary_tag": "Reasoning",
                "secondary_tags": ["Math"],
            }
        )
        outputs[sid] = {
            "session_id": sid,
            "output": [r["model_output"]],
            "generator": "gemma-2b-it",
        }
        refs[sid] = {"session_id": sid, "output": [tulu[sid]["model_output"]], "generator": "tulu"}
    return tasks, outputs, refs


def test_judge_scores_and_pairwise_through_the_server(wb_dir, data_dir, tmp_path):
    tasks, outputs, refs = _tasks_and_outputs(wb_dir, data_dir)
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, cache=tmp_path / "c.sqlite")
        recs = wb.judge_scores(client, tasks, outputs)
        assert server.requests == 4  # the empty output is scored 1 without a call
        for rec in recs:
            out = rec["model_output"]
            expected = 1 if not out.strip() else server_score(wb._shorten(out))
            assert float(rec["score"]) == expected
        res = wb.wb_score(recs, wb.task_categories(tasks))
        assert res.categories_available and res.task_macro_score is not None

        pair = wb.judge_pairwise(client, tasks, outputs, refs, "tulu")
        assert server.requests == 8
        for rec in pair[:-1]:
            a, b = (
                (rec["model_output"], rec["ref_output"])
                if rec["model_is_A"]
                else (rec["ref_output"], rec["model_output"])
            )
            assert rec["choice"] == wb_choice(wb._shorten(a), wb._shorten(b))
        # empty model output: the reference wins much, by rule
        last = pair[-1]
        assert last["choice"] == ("B++" if last["model_is_A"] else "A++")
        assert wb.outcome(last) == "lose_much"
        # re-judging is free
        wb.judge_pairwise(client, tasks, outputs, refs, "tulu")
        assert server.requests == 8


def test_judge_counts_malformed_and_retries_5xx(wb_dir, data_dir, tmp_path):
    tasks, outputs, _ = _tasks_and_outputs(wb_dir, data_dir, k=3)
    sid0, sid1 = tasks[0]["session_id"], tasks[1]["session_id"]
    outputs[sid0] = dict(outputs[sid0], output=["fine answer <<MALFORMED>>"])
    outputs[sid1] = dict(outputs[sid1], output=["flaky answer <<FAIL5XX:2>>"])
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, backoff=0.01)
        recs = wb.judge_scores(client, tasks, outputs)
        assert recs[0]["score"] is None and recs[0]["judging"] == "malformed"
        assert float(recs[1]["score"]) == server_score("flaky answer <<FAIL5XX:2>>")
        assert client.stats.malformed == 1 and client.stats.errors == 0
        # the third task has an empty output (no call); the flaky one succeeds on attempt 3
        assert client.stats.http_attempts == 1 + 3
    res = wb.wb_score(recs)
    assert res.n_invalid == 1


def test_paper_mode_judges_against_three_references_and_averages(wb_dir, data_dir, tmp_path):
    tasks, outputs, refs = _tasks_and_outputs(wb_dir, data_dir, k=4)
    tasks_file = tmp_path / "tasks.json"
    tasks_file.write_text(json.dumps(tasks))
    out_file = tmp_path / "outputs.json"
    out_file.write_text(json.dumps(list(outputs.values())))
    ref_specs = []
    for i, name in enumerate(wb.REFERENCE_MODELS.values()):
        # three references of different lengths: the reference truncated to 50, 500, all chars
        cut = [50, 500, None][i]
        rows = [dict(r, output=[r["output"][0][:cut]]) for r in refs.values()]
        path = tmp_path / f"ref{i}.json"
        path.write_text(json.dumps(rows))
        ref_specs.append(f"{name}={path}")
    with JudgeServer() as server:
        argv = [
            "judge", "--tasks", str(tasks_file), "--outputs", str(out_file), "--mode", "paper",
            "--reference-outputs", *ref_specs, "--out", str(tmp_path / "j.json"),
            "--judge-base-url", server.base_url, "--judge-model", "judge",
        ]  # fmt: skip
        assert wb.main(argv) == 0
        assert server.requests == 3 * 3  # 3 non-empty outputs x 3 references
    files = sorted(tmp_path.glob("j.ref=*.json"))
    assert len(files) == 3
    out = tmp_path / "score.json"
    wb.main(["score", "--kind", "pairwise", "--mode", "paper", "--records",
             *map(str, files), "--tasks", str(tasks_file), "--out", str(out)])  # fmt: skip
    res = json.loads(out.read_text())
    by_hand = []
    for f in files:
        recs = json.loads(f.read_text())
        total = 0.0
        for r in recs:
            a, b = (
                (r["model_output"], r["ref_output"])
                if r["model_is_A"]
                else (r["ref_output"], r["model_output"])
            )
            choice = wb_choice(wb._shorten(a), wb._shorten(b)) if a.strip() and b.strip() else None
            if choice is None:  # the empty model output: the reference wins much
                total -= 1.0
                continue
            sign = 1 if r["model_is_A"] else -1
            total += sign * wb.REWARD_OF_CHOICE[choice]
        by_hand.append(100 * total / len(recs))
    assert res["mixture_of_rewards"] == pytest.approx(sum(by_hand) / 3)
    assert res["paper_scale"] == pytest.approx((sum(by_hand) / 3 + 100) / 2)
    assert "task_macro_reward" in res
