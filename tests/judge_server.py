"""A deterministic LLM judge on top of the project's test server (``tests/openai_server.py``).

:class:`JudgeServer` is an :class:`~openai_server.OpenAIServer` (a real OpenAI-compatible HTTP
server on 127.0.0.1, with its fault markers ``<<FAIL5XX:n>>``, ``<<FAIL429:n>>``, ``<<SLOW:s>>``,
... and its optional API-key check) whose replies are those of a judge, computed from the prompt
so that tests can work out every expected judgment by hand:

- AlpacaEval (prompt contains ``## Best Model Identifier``): with ``a`` and ``b`` the character
  lengths of the outputs shown as ``m`` and ``M``, ``P(m) = (a + 1) / (a + b + 2)``. The reply
  is ``m`` when ``P(m) >= 0.5`` else ``M``; when log-probabilities are requested (and the
  server's ``logprobs`` switch is on) the first token's top log-probabilities are ``m`` and ``M``
  with ``log P(m)`` and ``log (1 - P(m))``. With ``logprobs=False`` the server returns none.
- MT-Bench (``[[rating]]`` in the prompt): ``Rating: [[r]]`` with ``r = 1 + len(answer) % 10``,
  ``answer`` being the answer graded (the second turn's for multi-turn prompts).
- WildBench score (``<|begin_of_response|>``): a JSON reply with ``"score": "r"``,
  ``r = 1 + len(response) % 10``.
- WildBench pairwise (``<|begin_of_response_A|>``): with ``d = len(A) - len(B)``: ``A++`` if
  ``d > 100``, ``A+`` if ``0 < d <= 100``, ``A=B`` if ``d == 0``, ``B+`` / ``B++`` symmetrically.
- anything else: ``OK``.

Judge-specific markers: ``<<MALFORMED>>`` gives a reply no parser accepts (and no ``m``/``M``
log-probabilities), ``<<BACKUP>>`` gives MT-Bench's ``[r]`` form.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from openai_server import OpenAIServer


def _between(text: str, start: str, end: str) -> str:
    i = text.find(start)
    if i < 0:
        return ""
    i += len(start)
    j = text.find(end, i)
    return text[i:j] if j >= 0 else text[i:]


def alpaca_p_first(out_m: str, out_big_m: str) -> float:
    """The judge's P(m) for AlpacaEval outputs shown as m and M."""
    a, b = len(out_m), len(out_big_m)
    return (a + 1) / (a + b + 2)


def mt_rating(answer: str) -> int:
    """The judge's MT-Bench rating of an answer."""
    return 1 + len(answer) % 10


def wb_score(response: str) -> int:
    """The judge's WildBench score of a response."""
    return 1 + len(response) % 10


def wb_choice(a: str, b: str) -> str:
    """The judge's WildBench pairwise choice."""
    d = len(a) - len(b)
    if d > 100:
        return "A++"
    if d > 0:
        return "A+"
    if d == 0:
        return "A=B"
    if d >= -100:
        return "B+"
    return "B++"


def _prompt(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages") or [])


def _alpaca_outputs(prompt: str) -> tuple[str, str]:
    outputs = re.findall(r'"output": """(.*?)"""', prompt, flags=re.S)
    return outputs[0], outputs[1]


def judge_responder(body: dict[str, Any]) -> str:
    """The judge's reply text for a request body."""
    prompt = _prompt(body)
    malformed = "<<MALFORMED>>" in prompt
    if "## Best Model Identifier" in prompt:
        if malformed:
            return "I cannot tell."
        return "m" if alpaca_p_first(*_alpaca_outputs(prompt)) >= 0.5 else "M"
    if "[[rating]]" in prompt:
        if "<|The Start of Assistant A's Conversation with User|>" in prompt:
            convo = _between(
                prompt,
                "<|The Start of Assistant A's Conversation with User|>",
                "<|The End of Assistant A's Conversation with User|>",
            )
            answer = convo.split("### Assistant A:\n")[-1].removesuffix("\n\n")
        else:
            answer = _between(
                prompt, "[The Start of Assistant's Answer]\n", "\n[The End of Assistant's Answer]"
            )
        if malformed:
            return "The answer is fine but I will not rate it."
        if "<<BACKUP>>" in prompt:
            return f"Explanation. Rating: [{mt_rating(answer)}]"
        return f"The assistant's answer is graded. Rating: [[{mt_rating(answer)}]]"
    if "<|begin_of_response_A|>" in prompt:
        if malformed:
            return "Both are fine."
        a = _between(prompt, "<|begin_of_response_A|>\n\n", "\n\n<|end_of_response_A|>")
        b = _between(prompt, "<|begin_of_response_B|>\n\n", "\n\n<|end_of_response_B|>")
        reply = {
            "analysis of A": "a",
            "analysis of B": "b",
            "reason of A=B": "-",
            "reason of A>B": "-",
            "reason of B>A": "-",
            "choice": wb_choice(a, b),
        }
        return "```\n" + json.dumps(reply, indent=4) + "\n```"
    if "<|begin_of_response|>" in prompt:
        if malformed:
            return "It is a response."
        resp = _between(prompt, "<|begin_of_response|>\n\n", "\n\n<|end_of_response|>")
        reply = {"strengths": "s", "weaknesses": "w", "score": str(wb_score(resp))}
        return "```\n" + json.dumps(reply, indent=4) + "\n```"
    return "OK"


class JudgeServer(OpenAIServer):
    """``with JudgeServer() as server: server.base_url`` (…/v1); see the module docstring.

    Args:
        logprobs: return log-probabilities when asked (False: never, like some servers).
        api_key: require ``Authorization: Bearer <api_key>`` (HTTP 401 otherwise).
    """

    def __init__(self, *, logprobs: bool = True, api_key: str | None = None) -> None:
        super().__init__(judge_responder, api_key=api_key)
        self.logprobs = logprobs

    def answer(self, body: dict[str, Any], nth: int) -> tuple[int, dict[str, str], bytes]:
        status, headers, payload = super().answer(body, nth)
        if status != 200 or not body.get("logprobs"):
            return status, headers, payload
        data = json.loads(payload)
        choice = data["choices"][0]
        prompt = _prompt(body)
        if not self.logprobs:
            choice.pop("logprobs", None)
        elif "## Best Model Identifier" in prompt and "<<MALFORMED>>" not in prompt:
            p = alpaca_p_first(*_alpaca_outputs(prompt))
            top = sorted([("m", math.log(p)), ("M", math.log(1 - p))], key=lambda x: -x[1])
            k = int(body.get("top_logprobs") or 0)
            first = choice["logprobs"]["content"][0]
            first["logprob"] = dict(top)[first["token"]]
            first["top_logprobs"] = [{"token": t, "logprob": lp} for t, lp in top[:k]]
        return status, headers, json.dumps(data).encode("utf-8")
