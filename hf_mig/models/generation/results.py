"""What a generation backend returns: one :class:`GenerationResult` per conversation, with
optional per-token :class:`TokenLogprob` entries; both round-trip through JSON-ready dicts (the
response cache stores them so)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GenerationResult", "TokenLogprob", "finished"]


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, its log-probability and the top alternatives.

    ``top`` holds ``(token, logprob)`` pairs, most likely first (empty unless ``top_logprobs``
    was requested). Log-probabilities are natural logarithms of the model's next-token
    distribution (before temperature or other sampling transforms).
    """

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"token", "logprob", "top": [[token, logprob], ...]}``."""
        return {"token": self.token, "logprob": self.logprob, "top": [list(p) for p in self.top]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenLogprob:
        """Inverse of :meth:`to_dict`."""
        top = tuple((str(t), float(lp)) for t, lp in data.get("top", ()))
        return cls(token=str(data["token"]), logprob=float(data["logprob"]), top=top)


@dataclass
class GenerationResult:
    """The outcome of one conversation.

    Attributes:
        text: the generated text (stop strings removed), or ``None`` when ``error`` is set.
        finish_reason: ``"stop"`` (EOS or a stop string), ``"length"`` (``max_new_tokens``
            reached), another server-given reason, or ``None`` on error.
        error: ``None`` on success, else a message saying what failed.
        logprobs: per generated token, when requested and available, else ``None``.
        prompt_tokens, completion_tokens: token counts when the backend knows them.
        cached: ``True`` when served from the response cache.
    """

    text: str | None
    finish_reason: str | None = None
    error: str | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Whether the generation succeeded (``error is None``)."""
        return self.error is None

    @classmethod
    def failure(cls, message: str) -> GenerationResult:
        """A failed result with ``error=message``."""
        return cls(text=None, error=message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``cached`` is not stored)."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "logprobs": None if self.logprobs is None else [t.to_dict() for t in self.logprobs],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], cached: bool = False) -> GenerationResult:
        """Inverse of :meth:`to_dict`."""
        logprobs = data.get("logprobs")
        return cls(
            text=data.get("text"),
            finish_reason=data.get("finish_reason"),
            error=data.get("error"),
            logprobs=None if logprobs is None else [TokenLogprob.from_dict(t) for t in logprobs],
            prompt_tokens=data.get("prompt_tokens"),
            completion_tokens=data.get("completion_tokens"),
            cached=cached,
        )


def finished(results: list[GenerationResult | None]) -> list[GenerationResult]:
    """``results`` once every position holds a result (an ``AssertionError`` names the first
    position still empty)."""
    out: list[GenerationResult] = []
    for position, result in enumerate(results):
        assert result is not None, f"no result for conversation {position}"
        out.append(result)
    return out
