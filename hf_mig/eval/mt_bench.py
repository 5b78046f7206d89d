"""MT-Bench: 80 questions x 2 turns, single-answer grading 1-10 (FastChat's ``llm_judge``).

- Generation: each question's two turns in one conversation (turn 2 sees the model's turn-1
  answer), the model's chat template, at most 1024 new tokens. ``official`` mode uses FastChat's
  per-category temperatures (:data:`TEMPERATURES`; 0 = greedy); ``paper`` mode decodes greedily
  everywhere (OpenCompass, as the MIG paper did).
- Judging: FastChat's ``single-v1`` prompt (turn 1), ``single-v1-multi-turn`` (turn 2), and the
  ``single-math-v1*`` variants with GPT-4 reference answers for the math, reasoning and coding
  questions (:data:`NEED_REF_CATS`). The rating is the first ``[[x]]`` in the judgment, else the
  first ``[x]``, else the judgment is invalid (FastChat's -1) and left out of the means.
- Score: per-turn means and the overall mean over all valid judgments (FastChat's
  ``show_result``); ``paper`` mode reports the overall mean x 10.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.eval.base import (
    Benchmark,
    add_all_step,
    add_generate_step,
    add_mode_arg,
    is_number,
    read_jsonl,
    register_benchmark,
    write_result,
)
from hf_mig.eval.judge import (
    add_judge_args,
    load_judge_prompts,
    parse_rating,
    rating_or_none,
    single_answer_messages,
)

__all__ = [
    "NEED_REF_CATS",
    "TEMPERATURES",
    "MTBench",
    "MTBenchScore",
    "build_judge_messages",
    "judge_prompt_name",
    "load_answers",
    "load_judge_prompts",
    "load_questions",
    "load_reference_answers",
    "main",
    "parse_rating",
    "score_judgments",
]

#: FastChat's per-category sampling temperatures (``fastchat/llm_judge/common.py``).
TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
#: Categories graded against a reference answer.
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
MAX_NEW_TOKENS = 1024
JUDGE_MAX_TOKENS = 2048


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    """MT-Bench questions (``question_id``, ``category``, ``turns``) from FastChat's
    ``question.jsonl``."""
    return read_jsonl(path)


def load_reference_answers(path: str | Path) -> dict[int, list[str]]:
    """``{question_id: [turn-1 reference, turn-2 reference]}`` from a FastChat answer file
    (e.g. ``reference_answer/gpt-4.jsonl``)."""
    return {int(r["question_id"]): list(r["choices"][0]["turns"]) for r in read_jsonl(path)}


def load_answers(path: str | Path) -> dict[int, list[str]]:
    """A model's answers ``{question_id: [turn 1, turn 2]}`` from a FastChat answer file."""
    return load_reference_answers(path)


def judge_prompt_name(category: str, turn: int) -> str:
    """The FastChat single-grading prompt for a question category and turn (1 or 2)."""
    ref = category in NEED_REF_CATS
    base = "single-math-v1" if ref else "single-v1"
    return base + ("-multi-turn" if turn == 2 else "")


def build_judge_messages(
    question: dict[str, Any],
    answer: Sequence[str],
    turn: int,
    prompts: dict[str, dict[str, Any]],
    reference: Sequence[str] | None = None,
) -> tuple[str, list[dict[str, str]]]:
    """``(prompt name, [system, user] messages)`` to grade ``answer`` (both turns) at ``turn``.

    As FastChat: turn 1 fills ``question``/``answer``; turn 2 fills ``question_1/2`` and
    ``answer_1/2``; reference categories add ``ref_answer_1`` (and ``ref_answer_2``). Raises
    ``ValueError`` when a reference category has no reference.
    """
    name = judge_prompt_name(question["category"], turn)
    spec = prompts[name]
    kwargs: dict[str, str] = {}
    if question["category"] in NEED_REF_CATS:
        if reference is None:
            raise ValueError(f"question {question['question_id']} needs a reference answer")
        kwargs["ref_answer_1"] = reference[0]
        if turn == 2:
            kwargs["ref_answer_2"] = reference[1]
    if turn == 1:
        kwargs.update(question=question["turns"][0], answer=answer[0])
    else:
        kwargs.update(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=answer[0],
            answer_2=answer[1],
        )
    return name, single_answer_messages(spec, **kwargs)


@dataclass
class MTBenchScore:
    """MT-Bench result of one model (scores 1-10; ``primary`` x10 in paper mode)."""

    model: str
    mode: str
    turn_1: float
    turn_2: float
    overall: float
    n_judgments: int
    n_invalid: int
    per_category: dict[str, float] = field(default_factory=dict)
    judging: str = "discrete"

    @property
    def primary(self) -> float:
        """The headline number: overall mean (official) or overall mean x 10 (paper)."""
        return self.overall * 10 if self.mode == "paper" else self.overall

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``primary`` included)."""
        out = dict(self.__dict__)
        out.update(
            benchmark="mt_bench",
            primary=self.primary,
            primary_metric="overall_x10" if self.mode == "paper" else "overall",
        )
        return out


def score_judgments(
    judgments: Sequence[dict[str, Any]],
    *,
    mode: str = "official",
    model: str | None = None,
    categories: dict[int, str] | None = None,
) -> MTBenchScore:
    """Per-turn and overall means of single-answer judgments (FastChat ``show_result``).

    Each judgment has ``turn`` (1/2) and ``score`` (or ``judgment`` text, parsed with
    :func:`parse_rating`). Scores of -1 (invalid) are counted in ``n_invalid`` and excluded;
    ``overall`` is the mean over all valid judgments of both turns. ``categories`` maps
    question ids to categories for per-category means.
    """
    if mode not in ("official", "paper"):
        raise ValueError(f"mode must be 'official' or 'paper', got {mode!r}")
    by_turn: dict[int, list[float]] = {1: [], 2: []}
    by_cat: dict[str, list[float]] = {}
    n_invalid = 0
    for j in judgments:
        s = j.get("score")
        s = parse_rating(j.get("judgment", "")) if s is None else float(s)
        if s == -1:
            n_invalid += 1
            continue
        by_turn[int(j["turn"])].append(s)
        if categories is not None:
            by_cat.setdefault(categories[int(j["question_id"])], []).append(s)
    valid = by_turn[1] + by_turn[2]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else math.nan

    name = model or (str(judgments[0].get("model", "model")) if judgments else "model")
    return MTBenchScore(
        model=name,
        mode=mode,
        turn_1=mean(by_turn[1]),
        turn_2=mean(by_turn[2]),
        overall=mean(valid),
        n_judgments=len(judgments),
        n_invalid=n_invalid,
        per_category={c: mean(v) for c, v in sorted(by_cat.items())},
    )


def format_score(res: MTBenchScore) -> str:
    """Human-readable MT-Bench summary."""
    lines = [
        f"MT-Bench [{res.mode}] {res.model} (judging: {res.judging})",
        f"  turn 1   {res.turn_1:.3f}",
        f"  turn 2   {res.turn_2:.3f}",
        f"  overall  {res.overall:.3f}   (n {res.n_judgments}, invalid {res.n_invalid})",
    ]
    for c, v in res.per_category.items():
        lines.append(f"    {c:12s} {v:.3f}")
    if res.mode == "paper":
        lines.append(f"  => MT x10 = {res.primary:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# pipelines: generate / judge

#: The MIG paper's OpenCompass runs generated up to 4096 new tokens (FastChat: 1024).
PAPER_MAX_NEW_TOKENS = 4096


def generate_answers(
    backend: Any,
    questions: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    model_id: str,
    mode: str = "official",
    max_new_tokens: int | None = None,
    chunk_size: int = 32,
) -> Any:
    """Two-turn answers in FastChat's answer format, resumable.

    Turn 1 of every question is generated first, then turn 2 with the model's own turn-1
    answer in the conversation. ``official``: FastChat's per-category temperatures
    (:data:`TEMPERATURES`, sampling seeded with 0 as FastChat does); ``paper``: greedy. Progress
    goes to ``<out>.progress.jsonl``; ``out`` (JSON lines: ``question_id``, ``model_id``,
    ``choices[0].turns``) is written when both turns of every question are done. Returns the
    combined :class:`~hf_mig.eval.generate.GenerationReport`.
    """
    from hf_mig.eval.generate import GenerationItem, GenerationReport, generate_incremental

    if mode not in ("official", "paper"):
        raise ValueError(f"mode must be 'official' or 'paper', got {mode!r}")
    budget = max_new_tokens or (MAX_NEW_TOKENS if mode == "official" else PAPER_MAX_NEW_TOKENS)
    progress = str(out) + ".progress.jsonl"

    def temp(q: dict[str, Any]) -> float:
        return TEMPERATURES.get(q["category"], 0.7) if mode == "official" else 0.0

    def seed(q: dict[str, Any]) -> int | None:
        return 0 if temp(q) > 0 else None

    first = [
        GenerationItem(
            f"{q['question_id']}:1",
            [{"role": "user", "content": q["turns"][0]}],
            budget,
            temp(q),
            seed=seed(q),
        )
        for q in questions
    ]
    done, r1 = generate_incremental(backend, first, progress, chunk_size=chunk_size)
    second = []
    for q in questions:
        a1 = done.get(f"{q['question_id']}:1")
        if a1 is None:
            continue
        messages = [
            {"role": "user", "content": q["turns"][0]},
            {"role": "assistant", "content": a1["output"]},
            {"role": "user", "content": q["turns"][1]},
        ]
        second.append(
            GenerationItem(f"{q['question_id']}:2", messages, budget, temp(q), seed=seed(q))
        )
    done, r2 = generate_incremental(backend, second, progress, chunk_size=chunk_size)
    report = GenerationReport(
        total=2 * len(questions),
        already_done=r1.already_done + r2.already_done,
        generated=r1.generated + r2.generated,
        failed=r1.failed + r2.failed + (len(questions) - len(second)),
        failures=(r1.failures + r2.failures)[:5],
        skipped_bad_lines=r1.skipped_bad_lines,
    )
    keys = [f"{q['question_id']}:{t}" for q in questions for t in (1, 2)]
    if all(k in done for k in keys):
        with open(out, "w", encoding="utf-8") as fh:
            for q in questions:
                qid = q["question_id"]
                rec = {
                    "question_id": qid,
                    "answer_id": f"{model_id}-{qid}",
                    "model_id": model_id,
                    "choices": [
                        {
                            "index": 0,
                            "turns": [done[f"{qid}:1"]["output"], done[f"{qid}:2"]["output"]],
                        }
                    ],
                }
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return report


def judge_answers(
    client: Any,
    questions: Sequence[dict[str, Any]],
    answers: dict[int, list[str]],
    references: dict[int, list[str]],
    *,
    model_id: str,
    prompts: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Single-answer judgments of both turns of every question (FastChat's judgment format:
    ``question_id``, ``model``, ``judge``, ``user_prompt``, ``judgment``, ``score`` (-1 when
    the rating could not be read or the call failed), ``turn``; plus ``judging``)."""
    from hf_mig.eval.judge import JudgeRequest

    prompts = prompts or load_judge_prompts()
    requests, meta = [], []
    for q in questions:
        qid = int(q["question_id"])
        if qid not in answers:
            raise KeyError(f"no answer for question {qid}")
        for turn in (1, 2):
            name, messages = build_judge_messages(
                q, answers[qid], turn, prompts, references.get(qid)
            )
            requests.append(
                JudgeRequest(f"{qid}:{turn}", messages, rating_or_none, max_tokens=JUDGE_MAX_TOKENS)
            )
            meta.append((qid, turn, name, messages[1]["content"]))
    records = []
    for (qid, turn, name, user), j in zip(meta, client.judge(requests)):
        records.append(
            {
                "question_id": qid,
                "model": model_id,
                "judge": [client.model, name],
                "user_prompt": user,
                "judgment": j.text,
                "score": -1 if j.value is None else j.value,
                "turn": turn,
                "judging": j.judging,
                "error": j.error,
            }
        )
    return records


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", required=True, help="FastChat mt_bench/question.jsonl")
    p.add_argument("--limit", type=int, help="only the first N questions")


@register_benchmark("mt_bench")
class MTBench(Benchmark):
    """MT-Bench: two-turn answers, FastChat single-answer grading, per-turn and overall means."""

    description = "MT-Bench"
    prog = "mt_bench.py"
    result_benchmark = "mt_bench"
    all_files = ("answers.jsonl", "judgments.jsonl", "mt_bench.json")
    items = "questions"

    def add_steps(self, sub: argparse._SubParsersAction) -> None:
        p_gen = add_generate_step(sub, "two-turn answers", _add_data_args)
        add_mode_arg(p_gen)
        p_gen.add_argument(
            "--out", required=True, help="answers .jsonl (FastChat format, resumable)"
        )
        p_judge = sub.add_parser("judge", help="single-answer grading")
        _add_data_args(p_judge)
        p_judge.add_argument("--answers", required=True)
        p_judge.add_argument("--references", required=True, help="reference_answer/gpt-4.jsonl")
        p_judge.add_argument("--judge-prompts", help="judge_prompts.jsonl (default: packaged copy)")
        p_judge.add_argument("--out", required=True, help="judgments .jsonl")
        add_judge_args(p_judge)
        p_score = sub.add_parser("score", help="means from judgments")
        p_score.add_argument("--judgments", required=True)
        p_score.add_argument("--questions", help="question.jsonl, for per-category means")
        add_mode_arg(p_score)
        p_score.add_argument("--out")
        p_all = add_all_step(sub, "generate, judge and score", _add_data_args)
        p_all.add_argument("--references", required=True)
        p_all.add_argument("--judge-prompts")

    def generate_outputs(self, backend: Any, args: argparse.Namespace, model_id: str) -> Any:
        return generate_answers(
            backend,
            load_questions(args.questions)[: args.limit],
            args.out,
            model_id=model_id,
            mode=args.mode,
            max_new_tokens=args.max_new_tokens,
            chunk_size=args.chunk_size,
        )

    def judge_inputs(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "questions": load_questions(args.questions)[: args.limit],
            "answers": load_answers(args.answers),
            "model_id": next(iter(read_jsonl(args.answers)), {}).get("model_id", "model"),
        }

    def judge_outputs(
        self, client: Any, data: dict[str, Any], args: argparse.Namespace
    ) -> list[dict[str, Any]]:
        records = judge_answers(
            client,
            data["questions"],
            data["answers"],
            load_reference_answers(args.references),
            model_id=data["model_id"],
            prompts=load_judge_prompts(args.judge_prompts),
        )
        with open(args.out, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return records

    def chain_judge(self, args: argparse.Namespace) -> None:
        args.answers = args.out

    def chain_score(self, args: argparse.Namespace, judged: Any) -> None:
        args.judgments = args.out

    def score(self, args: argparse.Namespace) -> dict[str, Any]:
        cats = None
        if args.questions:
            cats = {int(q["question_id"]): q["category"] for q in load_questions(args.questions)}
        res = score_judgments(read_jsonl(args.judgments), mode=args.mode, categories=cats)
        print(format_score(res))
        out = res.to_dict()
        if args.out:
            write_result(args.out, out)
        return out

    def table_cells(self, result: Mapping[str, Any]) -> dict[str, float]:
        """``MT``: the overall mean (1-10, whatever the mode)."""
        if result.get("benchmark") == "mt_bench" and is_number(result.get("overall")):
            return {"MT": float(result["overall"])}
        return {}


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/mt_bench.py`` argument parser (subcommands generate / judge / score / all)."""
    return MTBench().build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/mt_bench.py``; returns the exit status.

    ``generate`` -> answers (FastChat format); ``judge`` -> judgments; ``score`` -> per-turn
    and overall means (x10 in paper mode); ``all`` runs the three into ``--out-dir``.
    """
    return MTBench().main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
