"""AlpacaEval 2 judging: the judge prompt (alpaca_eval's ``alpaca_eval_clf_gpt4_turbo``
template, ChatML), the per-instruction order of the two outputs, the parsing of the judge's
reply, and :func:`judge_outputs`, which turns model outputs and reference outputs into
annotations in the AlpacaEval format.

The judge names the better of two outputs: ``m`` (the first shown) or ``M`` (the second).
``official`` mode reads the first token's top log-probabilities
(:func:`preference_from_logprobs`), ``paper`` mode the discrete reply (:func:`parse_discrete`);
see :mod:`hf_mig.eval.alpaca_eval` for the two modes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "TEMPLATES",
    "TEMPLATE_OFFICIAL",
    "build_judge_messages",
    "chatml_to_messages",
    "is_swapped",
    "judge_outputs",
    "parse_discrete",
    "preference_from_logprobs",
]

TEMPLATES = Path(__file__).parent / "templates"

TEMPLATE_OFFICIAL = "alpaca_eval_clf_gpt4_turbo.txt"


def chatml_to_messages(text: str) -> list[dict[str, str]]:
    """Split an alpaca_eval ChatML prompt (``<|im_start|>role ... <|im_end|>``) into messages."""
    messages = []
    for chunk in text.split("<|im_start|>")[1:]:
        body = chunk.split("<|im_end|>")[0]
        role, _, content = body.partition("\n")
        messages.append({"role": role.strip(), "content": content.strip()})
    if not messages:
        raise ValueError("template has no <|im_start|> blocks")
    return messages


def _fill(template: str, values: dict[str, str]) -> str:
    # alpaca_eval substitutes exact "{key}" placeholders; other braces in the template stay
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def is_swapped(instruction: str, seed: int = 0) -> bool:
    """Deterministic per-instruction order randomisation (half of the instructions swapped)."""
    digest = hashlib.sha256(f"{seed}:{instruction}".encode()).digest()
    return digest[0] % 2 == 1


def build_judge_messages(
    instruction: str, output_1: str, output_2: str, template: str
) -> list[dict[str, str]]:
    """Judge messages for one comparison, ``output_1`` shown as ``m``, ``output_2`` as ``M``."""
    filled = [
        {
            "role": m["role"],
            "content": _fill(
                m["content"],
                {"instruction": instruction, "output_1": output_1, "output_2": output_2},
            ),
        }
        for m in chatml_to_messages(template)
    ]
    return filled


def preference_from_logprobs(top_logprobs: dict[str, float]) -> float | None:
    """alpaca_eval's ``logprob_parser``: P(m) / (P(m) + P(M)) over the first token's top
    log-probabilities, returned as the probability that the *first shown* output is better;
    ``None`` when neither token is among them."""
    pm = math.exp(top_logprobs["m"]) if "m" in top_logprobs else 0.0
    p_big = math.exp(top_logprobs["M"]) if "M" in top_logprobs else 0.0
    if pm + p_big == 0:
        return None
    return pm / (pm + p_big)


def parse_discrete(text: str) -> str | None:
    """Discrete judge answer: ``"m"`` or ``"M"`` (the first such token in the reply) or None."""
    found = re.search(r"(?<![A-Za-z])([mM])(?![A-Za-z])", text or "")
    return found.group(1) if found else None


# --------------------------------------------------------------------------------------------
# judge calls


def judge_outputs(
    client: Any,
    model_outputs: Sequence[dict[str, Any]],
    reference: Sequence[dict[str, Any]],
    *,
    mode: str = "official",
    template: str | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Annotations (AlpacaEval format) of ``model_outputs`` against ``reference``.

    Pairs are matched by instruction text; the order shown to the judge is randomised per
    instruction (:func:`is_swapped`). ``official``: one-token reply with the top-5 first-token
    log-probabilities, preference = the probability-weighted ``m``/``M`` choice (falls back to the
    discrete reply when the server returns no log-probabilities; ``judging`` says which).
    ``paper``: the discrete reply. Malformed replies and failed calls get ``preference: None``
    (invalid; counted by :func:`hf_mig.eval.alpaca_eval.win_rate`).
    """
    if mode not in ("official", "paper"):
        raise ValueError(f"mode must be 'official' or 'paper', got {mode!r}")
    template = template or (TEMPLATES / TEMPLATE_OFFICIAL).read_text()
    pairs = _pair_with_reference(model_outputs, reference)
    swaps = [is_swapped(m["instruction"], seed) for m, _ in pairs]
    requests = [
        _judge_request(str(i), m, ref, swapped, template, mode)
        for i, ((m, ref), swapped) in enumerate(zip(pairs, swaps))
    ]
    judgments = client.judge(requests)
    annotator = f"{'weighted_' if mode == 'official' else 'discrete_'}alpaca_eval:{client.model}"
    return [
        _annotation(m, ref, swapped, j, annotator)
        for (m, ref), swapped, j in zip(pairs, swaps, judgments)
    ]


def _pair_with_reference(
    model_outputs: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(model output, reference output)`` per model output, matched by instruction text;
    ``ValueError`` naming the first model output whose instruction the reference lacks."""
    ref_by_instruction = {r["instruction"]: r for r in reference}
    pairs = []
    for i, m in enumerate(model_outputs):
        ref = ref_by_instruction.get(m["instruction"])
        if ref is None:
            raise ValueError(f"model output {i}: instruction not in the reference outputs")
        pairs.append((m, ref))
    return pairs


def _first_preferred(text: str) -> float | None:
    """1.0 when the judge's discrete reply prefers the first shown output, 0.0 the second."""
    choice = parse_discrete(text)
    return None if choice is None else (1.0 if choice == "m" else 0.0)


def _judge_request(
    key: str,
    m: dict[str, Any],
    ref: dict[str, Any],
    swapped: bool,
    template: str,
    mode: str,
) -> Any:
    """The judge request of one pair: the reference shown first unless ``swapped``."""
    from hf_mig.eval.judge import JudgeRequest

    first, second = (m["output"], ref["output"]) if swapped else (ref["output"], m["output"])
    messages = build_judge_messages(m["instruction"], first or "", second or "", template)
    if mode == "official":
        return JudgeRequest(
            key,
            messages,
            _first_preferred,
            max_tokens=1,
            temperature=0.0,
            top_logprobs=5,
            parse_logprobs=preference_from_logprobs,
        )
    return JudgeRequest(key, messages, _first_preferred, max_tokens=2048, temperature=0.0)


def _annotation(
    m: dict[str, Any], ref: dict[str, Any], swapped: bool, j: Any, annotator: str
) -> dict[str, Any]:
    """One AlpacaEval annotation from a judgment ``j`` of the first shown output (preference in
    [1, 2] from the model's side: 2 = the model wins)."""
    pref = None
    if j.value is not None:
        p_first = float(j.value)
        pref = 1.0 + p_first if swapped else 2.0 - p_first
    return {
        "instruction": m["instruction"],
        "dataset": m.get("dataset", ref.get("dataset", "")),
        "output_1": ref["output"],
        "generator_1": ref.get("generator", "reference"),
        "output_2": m["output"],
        "generator_2": m.get("generator", "model"),
        "annotator": annotator,
        "preference": pref,
        "judging": j.judging,
        "swapped": swapped,
        "raw_completion": j.text,
        "top_logprobs": j.top_logprobs,
        "error": j.error,
    }
