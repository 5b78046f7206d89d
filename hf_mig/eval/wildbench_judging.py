"""WildBench v2 judging: the judge prompts, the parsing of the judge's replies, and the judge
calls that turn model outputs into WB-Score records (:func:`judge_scores`) and WB-Reward records
against one reference model (:func:`judge_pairwise`).

Prompts follow WildBench v2's templates (``templates/wildbench_eval_template.*.v2.md``): the
conversation history, the query and the responses are shortened to :data:`MAX_WORDS_TO_EVAL`
words, an empty response is shown as :data:`EMPTY_RESPONSE`, and the model is A or B by a
deterministic coin per session and reference (:func:`model_is_a`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EMPTY_RESPONSE",
    "JUDGE_MAX_TOKENS",
    "MAX_WORDS_TO_EVAL",
    "REWARD_OF_CHOICE",
    "TRUNCATION_MARK",
    "build_pairwise_prompt",
    "build_score_prompt",
    "empty_response_verdict",
    "history_and_query",
    "judge_pairwise",
    "judge_scores",
    "model_is_a",
    "parse_pairwise_choice",
    "parse_score",
]

#: Reward (model's side, model shown as A) of each pairwise choice.
REWARD_OF_CHOICE = {"A++": 1.0, "A+": 0.5, "A=B": 0.0, "B+": -0.5, "B++": -1.0}
#: The end of an output cut by the generation budget (and of a shortened prompt part).
TRUNCATION_MARK = "... (truncated)"
#: v2 judge prompts shorten histories, queries and responses to this many words.
MAX_WORDS_TO_EVAL = 1000
#: What the judge sees in place of an empty response (pairwise), as in WildBench v2.
EMPTY_RESPONSE = "[This model response is empty.]"
JUDGE_MAX_TOKENS = 4096
TEMPLATES = Path(__file__).parent / "templates"


def _sid(task: dict[str, Any]) -> str:
    return str(task.get("session_id") or task.get("id"))


def _text(output: Any) -> str:
    if isinstance(output, list):
        return str(output[0]) if output else ""
    return "" if output is None else str(output)


# --------------------------------------------------------------------------------------------
# parsing judge replies

_SCORE_RE = re.compile(r"[\"']score[\"']\s*:\s*[\"']?\s*\[?\s*(\d+(?:\.\d+)?)")
_CHOICE_RE = re.compile(r"[\"']choice[\"']\s*:\s*[\"']?\s*\[?\s*(A\+\+|A\+|A=B|B\+\+|B\+|A|B|tie)")


def _json_block(text: str) -> dict[str, Any] | None:
    text = text.strip()
    fenced = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, flags=re.S)
    candidates = fenced + [text[text.find("{") : text.rfind("}") + 1]] if "{" in text else fenced
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def parse_score(text: str) -> float | None:
    """The 1-10 ``score`` of a WB-Score judgment (JSON reply, or a ``"score": "N"`` fragment);
    ``None`` when absent or outside [1, 10]."""
    obj = _json_block(text or "")
    value: Any = obj.get("score") if obj else None
    if value is None:
        m = _SCORE_RE.search(text or "")
        value = m.group(1) if m else None
    try:
        score = float(str(value).strip().strip("[]"))
    except (TypeError, ValueError):
        return None
    return score if 1 <= score <= 10 else None


def parse_pairwise_choice(text: str) -> str | None:
    """The ``choice`` of a WB-Reward judgment: one of A++, A+, A=B, B+, B++ (or None)."""
    obj = _json_block(text or "")
    value = obj.get("choice") if obj else None
    if not isinstance(value, str):
        m = _CHOICE_RE.search(text or "")
        value = m.group(1) if m else None
    if value is None:
        return None
    value = value.strip().strip("[]").strip()
    return value if value in REWARD_OF_CHOICE else None


# --------------------------------------------------------------------------------------------
# judge prompts


def _shorten(text: str, max_words: int = MAX_WORDS_TO_EVAL) -> str:
    words = text.split(" ")
    if max_words > 0 and len(words) > max_words:
        return " ".join(words[:max_words]) + TRUNCATION_MARK
    return text


def history_and_query(conversation: Sequence[dict[str, str]]) -> tuple[str, str]:
    """WildBench's rendering of a conversation: prior turns as ``USER: ...`` / ``ASSISTANT: ...``
    paragraphs, and the last user message as the query."""
    history = ""
    for turn in conversation[:-1]:
        role = "USER" if turn["role"] == "user" else "ASSISTANT"
        history += f"{role}: {turn['content']}\n\n"
    return history, conversation[-1]["content"]


def _checklist_text(checklist: Sequence[str]) -> str:
    return "".join(f"- {c}\n" for c in checklist)


def build_score_prompt(task: dict[str, Any], output: str, template: str) -> str:
    """The WB-Score judge prompt for one task and model output (template placeholders
    ``{$history}``, ``{$user_query}``, ``{$model_output}``, ``{$checklist}``); history, query and
    output are shortened to :data:`MAX_WORDS_TO_EVAL` words."""
    history, query = history_and_query(task["conversation_input"])
    return (
        template.replace("{$history}", _shorten(history))
        .replace("{$user_query}", _shorten(query))
        .replace("{$model_output}", _shorten(output))
        .replace("{$checklist}", _checklist_text(task.get("checklist") or []))
    )


def build_pairwise_prompt(task: dict[str, Any], output_a: str, output_b: str, template: str) -> str:
    """The WB-Reward judge prompt (``{$candidate_A}``, ``{$candidate_B}``; an empty response is
    shown as :data:`EMPTY_RESPONSE`)."""
    history, query = history_and_query(task["conversation_input"])
    a = _shorten(output_a)
    b = _shorten(output_b)
    return (
        template.replace("{$history}", _shorten(history))
        .replace("{$user_query}", _shorten(query))
        .replace("{$candidate_A}", a if a.strip() else EMPTY_RESPONSE)
        .replace("{$candidate_B}", b if b.strip() else EMPTY_RESPONSE)
        .replace("{$checklist}", _checklist_text(task.get("checklist") or []))
    )


def empty_response_verdict(output_a: str, output_b: str) -> str | None:
    """WildBench's verdict without a judge call when a response is empty: ``A=B`` if both are,
    ``B++`` if only A is, ``A++`` if only B is; None otherwise."""
    a_empty, b_empty = not output_a.strip(), not output_b.strip()
    if a_empty and b_empty:
        return "A=B"
    if a_empty:
        return "B++"
    if b_empty:
        return "A++"
    return None


def model_is_a(session_id: str, reference: str, seed: int = 42) -> bool:
    """Deterministic A/B assignment per (session, reference): the model is A about half the time."""
    return random.Random(f"{seed}:{reference}:{session_id}").random() < 0.5


# --------------------------------------------------------------------------------------------
# judge calls


def _record_judgments(
    client: Any,
    requests: list[Any],
    rows: list[dict[str, Any]],
    field: str,
    convert: Callable[[Any], Any],
) -> None:
    """Judge ``requests`` (keyed by session id) and write into each judged row ``field``
    (``convert`` of the value), ``judgment``, ``judging`` and ``error``; rows settled without a
    judge call are left as they are."""
    by_key = {j.key: j for j in client.judge(requests)}
    for rec in rows:
        j = by_key.get(rec["session_id"])
        if j is not None:
            rec.update({field: convert(j.value)}, judgment=j.text, judging=j.judging, error=j.error)


def judge_scores(
    client: Any,
    tasks: Sequence[dict[str, Any]],
    outputs: dict[str, dict[str, Any]],
    *,
    template: str | None = None,
) -> list[dict[str, Any]]:
    """WB-Score judge records (the leaderboard's ``eval_results`` format: ``session_id``,
    ``model_test``, ``score``, ``model_output``, plus ``judgment`` and ``judging``).

    An empty output gets score 1 without a judge call (as WildBench does); a malformed reply or
    a failed call gets ``score: None`` (counted invalid by
    :func:`hf_mig.eval.wildbench.wb_score`)."""
    from hf_mig.eval.judge import JudgeRequest

    template = template or (TEMPLATES / "wildbench_eval_template.score.v2.md").read_text()
    requests, rows = [], []
    for t in tasks:
        sid = _sid(t)
        if sid not in outputs:
            raise KeyError(f"no model output for session {sid}")
        out = _text(outputs[sid].get("output"))
        rec = {
            "session_id": sid,
            "model_test": outputs[sid].get("generator", "model"),
            "model_output": out,
        }
        rows.append(rec)
        if not out.strip():
            rec.update(score="1", judgment=None, judging="empty-output-rule")
            continue
        prompt = build_score_prompt(t, out, template)
        requests.append(
            JudgeRequest(
                sid, [{"role": "user", "content": prompt}], parse_score, max_tokens=JUDGE_MAX_TOKENS
            )
        )
    _record_judgments(client, requests, rows, "score", lambda v: None if v is None else str(v))
    return rows


def judge_pairwise(
    client: Any,
    tasks: Sequence[dict[str, Any]],
    outputs: dict[str, dict[str, Any]],
    reference: dict[str, dict[str, Any]],
    reference_name: str,
    *,
    template: str | None = None,
    seed: int = 42,
) -> list[dict[str, Any]]:
    """WB-Reward judge records against one reference model: ``session_id``, ``model_output``,
    ``ref_output``, ``model_is_A`` (random per session, :func:`model_is_a`), ``choice``
    (A++ .. B++ as the judge saw them, or None), ``judgment``, ``generator``,
    ``ref_generator``. Empty responses follow WildBench's rule (:func:`empty_response_verdict`)
    without a judge call."""
    from hf_mig.eval.judge import JudgeRequest

    template = template or (TEMPLATES / "wildbench_eval_template.pairwise.v2.md").read_text()
    requests, rows = [], []
    for t in tasks:
        sid = _sid(t)
        if sid not in outputs or sid not in reference:
            raise KeyError(f"session {sid}: missing model or reference output")
        out = _text(outputs[sid].get("output"))
        ref = _text(reference[sid].get("output"))
        a_is_model = model_is_a(sid, reference_name, seed)
        a, b = (out, ref) if a_is_model else (ref, out)
        rec = {
            "session_id": sid,
            "generator": outputs[sid].get("generator", "model"),
            "ref_generator": reference_name,
            "model_output": out,
            "ref_output": ref,
            "model_is_A": a_is_model,
        }
        rows.append(rec)
        verdict = empty_response_verdict(a, b)
        if verdict is not None:
            rec.update(choice=verdict, judgment=None, judging="empty-output-rule")
            continue
        prompt = build_pairwise_prompt(t, a, b, template)
        requests.append(
            JudgeRequest(
                sid,
                [{"role": "user", "content": prompt}],
                parse_pairwise_choice,
                max_tokens=JUDGE_MAX_TOKENS,
            )
        )
    _record_judgments(client, requests, rows, "choice", lambda v: v)
    return rows
