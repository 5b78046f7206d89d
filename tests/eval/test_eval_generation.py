"""Benchmark generation with a real chat model: SmolLM2-135M-Instruct (the ``smollm2_path``
session fixture) answers three MT-Bench questions, two turns each, greedily, through
:func:`hf_mig.eval.mt_bench.generate_answers` and the transformers backend: non-empty answers,
the same file on a second run, a resumed run that ends with the file an uninterrupted run
writes, and prompts rendered with the model's own chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_mig.eval import mt_bench as mt
from hf_mig.models.generation import TransformersBackend

MAX_NEW = 16
QIDS = (81, 101, 131)  # writing, reasoning, extraction


@pytest.fixture(scope="module")
def questions(data_dir: Path) -> list[dict]:
    path = data_dir / "mt_bench/mt_bench/question.jsonl"
    if not path.is_file():
        pytest.skip("mt_bench data not available")
    by_id = {q["question_id"]: q for q in mt.load_questions(path)}
    return [by_id[qid] for qid in QIDS]


def _backend(model: Path) -> TransformersBackend:
    # batch_size=1: every prompt is decoded on its own, so a resumed run (other batches) must
    # give the very same tokens as an uninterrupted one
    return TransformersBackend(model, device="cpu", batch_size=1, progress=False)


def _generate(model: Path, questions: list[dict], out: Path, **kw):
    return mt.generate_answers(
        _backend(model), questions, out, model_id="smollm2", mode="paper",
        max_new_tokens=MAX_NEW, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def first_run(smollm2_path, questions, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mt-smollm2") / "answers.jsonl"
    report = _generate(smollm2_path, questions, out)
    assert (report.generated, report.already_done, report.failed) == (6, 0, 0)
    return out


def test_greedy_answers_are_non_empty(first_run, questions):
    records = [json.loads(line) for line in first_run.read_text().splitlines()]
    assert [r["question_id"] for r in records] == list(QIDS)
    assert all(r["model_id"] == "smollm2" and r["answer_id"] == f"smollm2-{r['question_id']}"
               for r in records)  # fmt: skip
    for rec in records:
        turns = rec["choices"][0]["turns"]
        assert len(turns) == 2
        assert all(isinstance(t, str) and t.strip() for t in turns)
    progress_file = Path(str(first_run) + ".progress.jsonl")
    progress = [json.loads(line) for line in progress_file.read_text().splitlines()]
    # every turn is in the progress file; with 16 new tokens some answers hit the budget
    assert {p["key"] for p in progress} == {f"{q}:{t}" for q in QIDS for t in (1, 2)}
    assert all(p["finish_reason"] in ("length", "stop") for p in progress)
    assert any(p["finish_reason"] == "length" for p in progress)


def test_deterministic_across_runs(first_run, smollm2_path, questions, tmp_path):
    again = tmp_path / "answers.jsonl"
    report = _generate(smollm2_path, questions, again)
    assert report.generated == 6
    assert again.read_text() == first_run.read_text()


def test_interrupted_run_resumes_to_the_same_file(first_run, smollm2_path, questions, tmp_path):
    out = tmp_path / "answers.jsonl"
    # a run limited to the first question: its two turns are in the progress file
    part = _generate(smollm2_path, questions[:1], out)
    assert (part.generated, part.already_done) == (2, 0)
    assert [json.loads(x)["question_id"] for x in out.read_text().splitlines()] == [QIDS[0]]

    # then a run over all three that is killed in its second chunk of one prompt, after one
    # more turn-1 answer was written: no answers file, the progress file keeps what was done
    class Killed(Exception):
        pass

    class DiesOnSecondCall:
        def __init__(self, inner: TransformersBackend) -> None:
            self.inner, self.calls = inner, 0

        def generate(self, conversations, **kw):
            self.calls += 1
            if self.calls == 2:
                raise Killed
            return self.inner.generate(conversations, **kw)

    out.unlink()
    with pytest.raises(Killed):
        mt.generate_answers(
            DiesOnSecondCall(_backend(smollm2_path)), questions, out, model_id="smollm2",
            mode="paper", max_new_tokens=MAX_NEW, chunk_size=1,
        )  # fmt: skip
    assert not out.exists()
    progress_file = Path(str(out) + ".progress.jsonl")
    done = [json.loads(x)["key"] for x in progress_file.read_text().splitlines()]
    assert set(done) == {f"{QIDS[0]}:1", f"{QIDS[0]}:2", f"{QIDS[1]}:1"}

    # the resumed run generates only what is missing and writes the uninterrupted run's file
    rest = _generate(smollm2_path, questions, out)
    assert (rest.already_done, rest.generated, rest.failed) == (3, 3, 0)
    assert out.read_text() == first_run.read_text()


def test_prompts_use_the_models_chat_template(first_run, smollm2_path, questions):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    model.eval()
    answers = mt.load_answers(first_run)
    q = questions[0]

    def greedy(ids: list[int]) -> str:
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tokenizer.eos_token_id,
            )  # fmt: skip
        return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)

    def chat_ids(messages: list[dict]) -> list[int]:
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return list(enc["input_ids"])

    turn1 = [{"role": "user", "content": q["turns"][0]}]
    rendered = tokenizer.apply_chat_template(turn1, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")  # SmolLM2's ChatML template
    assert f"<|im_start|>user\n{q['turns'][0]}<|im_end|>" in rendered
    assert greedy(chat_ids(turn1)) == answers[QIDS[0]][0]
    # the raw question without the template continues differently
    raw = tokenizer(q["turns"][0], add_special_tokens=False)["input_ids"]
    assert greedy(raw) != answers[QIDS[0]][0]
    # turn 2: the template renders the model's own turn-1 answer before the second question
    turn2 = [*turn1, {"role": "assistant", "content": answers[QIDS[0]][0]},
             {"role": "user", "content": q["turns"][1]}]  # fmt: skip
    assert greedy(chat_ids(turn2)) == answers[QIDS[0]][1]
