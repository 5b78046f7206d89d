"""MT-Bench: FastChat's judge prompts and rating parsing, means, and the full pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_server import JudgeServer, mt_rating

from hf_mig.eval import mt_bench as mt
from hf_mig.eval.judge import JudgeClient


@pytest.fixture(scope="module")
def mt_dir(data_dir: Path) -> Path:
    d = data_dir / "mt_bench"
    if not d.is_dir():
        pytest.skip("mt_bench data not available")
    return d


@pytest.fixture(scope="module")
def questions(mt_dir: Path) -> dict[int, dict]:
    return {q["question_id"]: q for q in mt.load_questions(mt_dir / "mt_bench/question.jsonl")}


@pytest.fixture(scope="module")
def references(mt_dir: Path) -> dict[int, list[str]]:
    return mt.load_reference_answers(mt_dir / "mt_bench/reference_answer/gpt-4.jsonl")


def test_data_shape(questions, references):
    assert len(questions) == 80
    assert all(len(q["turns"]) == 2 for q in questions.values())
    need_ref = [qid for qid, q in questions.items() if q["category"] in mt.NEED_REF_CATS]
    assert len(need_ref) == 30 and set(need_ref) <= set(references)


def test_packaged_prompts_are_fastchats(mt_dir):
    packaged = mt.load_judge_prompts()
    assert packaged == mt.load_judge_prompts(mt_dir / "judge_prompts.jsonl")
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= (
        set(packaged)
    )


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("Rating: [[7]]", 7.0),
        ("[[7.5]]", 7.5),
        ("Rating: [8]", 8.0),  # FastChat's backup pattern
        ("first [[3]] then [[9]]", 3.0),
        ("a [5] before [[9]]", 9.0),  # the [[x]] pattern wins wherever it is
        ("no rating at all", -1.0),
        ("[[ten]]", -1.0),
    ],
)
def test_parse_rating(text, rating):
    assert mt.parse_rating(text) == rating


def test_judge_prompt_names():
    assert mt.judge_prompt_name("writing", 1) == "single-v1"
    assert mt.judge_prompt_name("humanities", 2) == "single-v1-multi-turn"
    assert mt.judge_prompt_name("math", 1) == "single-math-v1"
    assert mt.judge_prompt_name("coding", 2) == "single-math-v1-multi-turn"
    assert mt.judge_prompt_name("reasoning", 2) == "single-math-v1-multi-turn"


def test_judge_messages_on_real_questions(questions, references):
    prompts = mt.load_judge_prompts()
    q = questions[81]  # writing, no reference
    name, msgs = mt.build_judge_messages(q, ["ANSWER ONE", "ANSWER TWO"], 1, prompts)
    assert name == "single-v1" and msgs[0] == {
        "role": "system",
        "content": "You are a helpful assistant.",
    }
    assert msgs[1]["content"].endswith(
        "[Question]\n" + q["turns"][0] + "\n\n[The Start of Assistant's Answer]\nANSWER ONE\n"
        "[The End of Assistant's Answer]"
    )
    q = questions[111]  # math: both reference turns in the multi-turn prompt
    name, msgs = mt.build_judge_messages(q, ["A1", "A2"], 2, prompts, references[111])
    assert name == "single-math-v1-multi-turn"
    assert msgs[0]["content"] == prompts[name]["system_prompt"]
    user = msgs[1]["content"]
    assert user.startswith("<|The Start of Reference Answer|>\n\n### User:\n" + q["turns"][0])
    assert "### Reference answer:\n" + references[111][1] + "\n\n<|The End" in user
    assert user.endswith(
        "### Assistant A:\nA2\n\n<|The End of Assistant A's Conversation with User|>"
    )
    with pytest.raises(ValueError, match="needs a reference"):
        mt.build_judge_messages(questions[101], ["a", "b"], 1, prompts, None)


def test_means_golden_by_hand():
    judgments = [
        {"question_id": 81, "turn": 1, "score": 8},
        {"question_id": 101, "turn": 1, "score": 6},
        {"question_id": 111, "turn": 1, "score": -1},  # invalid: left out
        {"question_id": 81, "turn": 2, "judgment": "Rating: [[3]]"},
    ]
    cats = {81: "writing", 101: "reasoning", 111: "math"}
    res = mt.score_judgments(judgments, model="m", categories=cats)
    assert res.turn_1 == pytest.approx(7.0) and res.turn_2 == pytest.approx(3.0)
    assert res.overall == pytest.approx(17 / 3)  # over judgments, not the mean of turn means
    assert res.n_invalid == 1 and res.n_judgments == 4
    assert res.per_category == pytest.approx({"reasoning": 6.0, "writing": 5.5})
    paper = mt.score_judgments(judgments, mode="paper")
    assert paper.primary == pytest.approx(170 / 3)
    assert paper.to_dict()["primary_metric"] == "overall_x10"


def test_judge_answers_through_the_server(questions, references, tmp_path):
    picked = [questions[81], questions[101], questions[111]]
    answers = {
        81: ["Aloha from Hawaii, a short post.", "A rewrite <<BACKUP>>"],
        101: ["You are in second place.", "I cannot say <<MALFORMED>>"],
        111: ["The area is 3.", "The circle has radius sqrt(10)."],
    }
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, cache=tmp_path / "c.sqlite")
        recs = mt.judge_answers(client, picked, answers, references, model_id="m")
        assert server.requests == 6
        again = mt.judge_answers(client, picked, answers, references, model_id="m")
        assert server.requests == 6 and client.stats.cache_hits == 6
    assert [r["score"] for r in again] == [r["score"] for r in recs]
    by = {(r["question_id"], r["turn"]): r for r in recs}
    assert by[(81, 1)]["score"] == mt_rating(answers[81][0])
    assert by[(81, 2)]["score"] == mt_rating(answers[81][1])  # read from "[r]"
    assert by[(101, 2)]["score"] == -1 and by[(101, 2)]["judging"] == "malformed"
    assert by[(111, 1)]["judge"] == ["judge", "single-math-v1"]
    res = mt.score_judgments(recs)
    assert res.n_invalid == 1
    valid = [mt_rating(a) for qid in (81, 101, 111) for a in answers[qid]]
    valid.remove(mt_rating(answers[101][1]))
    assert res.overall == pytest.approx(sum(valid) / 5)


def test_all_with_a_tiny_model(tmp_path, mt_dir, tiny_llama_path):
    model = tiny_llama_path
    qfile = tmp_path / "q.jsonl"
    lines = (mt_dir / "mt_bench/question.jsonl").read_text().splitlines()
    # writing (sampled at 0.7 in official mode), reasoning and math (greedy, with references)
    keep = [ln for ln in lines if json.loads(ln)["question_id"] in (81, 101, 111)]
    qfile.write_text("\n".join(keep) + "\n")
    out = tmp_path / "run"
    with JudgeServer() as server:
        argv = [
            "all", "--model", str(model), "--backend", "transformers", "--device", "cpu",
            "--questions", str(qfile), "--references",
            str(mt_dir / "mt_bench/reference_answer/gpt-4.jsonl"), "--max-new-tokens", "6",
            "--judge-base-url", server.base_url, "--judge-model", "judge",
            "--out-dir", str(out), "--mode", "paper",
        ]  # fmt: skip
        assert mt.main(argv) == 0
        assert server.requests == 6
    answers = mt.load_answers(out / "answers.jsonl")
    assert sorted(answers) == [81, 101, 111] and all(len(a) == 2 for a in answers.values())
    res = json.loads((out / "mt_bench.json").read_text())
    ratings = [mt_rating(a) for qid in (81, 101, 111) for a in answers[qid]]
    assert res["overall"] == pytest.approx(sum(ratings) / 6)
    assert res["primary"] == pytest.approx(10 * sum(ratings) / 6)
    # turn 2 was generated with the model's own turn-1 answer in the conversation
    from hf_mig.models.generation import load_backend

    backend = load_backend("transformers", str(model), device="cpu")
    q = json.loads(keep[0])
    conv = [
        {"role": "user", "content": q["turns"][0]},
        {"role": "assistant", "content": answers[81][0]},
        {"role": "user", "content": q["turns"][1]},
    ]
    assert backend.generate([conv], max_new_tokens=6)[0].text == answers[81][1]


def test_official_mode_uses_fastchat_temperatures(tmp_path, questions, tiny_llama_path):
    from hf_mig.models.generation import load_backend

    inner = load_backend("transformers", str(tiny_llama_path), device="cpu")

    class Recorder:
        calls: list[tuple[int, float, int | None]] = []

        def generate(self, conversations, **kw):
            self.calls.append((len(conversations), kw["temperature"], kw.get("seed")))
            return inner.generate(conversations, **kw)

    rec = Recorder()
    picked = [questions[81], questions[131], questions[151]]  # writing, extraction, humanities
    report = mt.generate_answers(
        rec, picked, tmp_path / "a.jsonl", model_id="tiny", max_new_tokens=4
    )
    assert report.generated == 6 and report.failed == 0
    # turn 1 then turn 2, each grouped by temperature: 0.7 (seeded 0), 0.0 (greedy), 0.1
    assert sorted(rec.calls) == sorted([(1, 0.7, 0), (1, 0.0, None), (1, 0.1, 0)] * 2)
    assert [q["category"] for q in picked] == ["writing", "extraction", "humanities"]
