"""LLM-as-a-judge client over any OpenAI-compatible endpoint.

:class:`JudgeClient` sends judge prompts through the shared
:class:`~hf_mig.generation.OpenAIBackend` (a thread pool with ``concurrency`` requests in flight,
per-request timeouts, retries with backoff on 5xx / 429 / timeouts / dropped connections) and
keeps every successful judge reply in an on-disk SQLite cache keyed by the judge model, the
decoding parameters and the prompt messages: a re-run sends no request for a prompt it has
already judged, and an interrupted run resumes.

Each :class:`JudgeRequest` carries a parser. A request may ask for first-token log-probabilities
(``top_logprobs > 0``, the AlpacaEval 2 protocol); when the server returns them the judgment is
``logprob-weighted``, otherwise the reply text is parsed (``discrete``): every
:class:`Judgment` says which was used. Replies that the parser cannot read are *malformed*:
they are kept (``value is None``, the raw text stored) and counted in :class:`JudgeStats`, never
silently dropped or replaced.

The API key is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``) at request time and is never written anywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DISCRETE",
    "LOGPROB_WEIGHTED",
    "Judgment",
    "JudgeClient",
    "JudgeRequest",
    "JudgeStats",
    "add_judge_args",
    "client_from_args",
]

LOGPROB_WEIGHTED = "logprob-weighted"
DISCRETE = "discrete"

#: ``parse_text(reply) -> value or None``; ``parse_logprobs({token: logprob}) -> value or None``.
TextParser = Callable[[str], Any]
LogprobParser = Callable[[dict[str, float]], Any]


@dataclass
class JudgeRequest:
    """One judge call.

    ``messages`` are OpenAI chat messages; ``parse_text`` reads the reply text;
    ``parse_logprobs`` (with ``top_logprobs > 0``) reads the first generated token's top
    log-probabilities. ``key`` is the caller's identifier (echoed in the :class:`Judgment`).
    """

    key: str
    messages: list[dict[str, str]]
    parse_text: TextParser
    max_tokens: int = 2048
    temperature: float = 0.0
    top_logprobs: int = 0
    parse_logprobs: LogprobParser | None = None


@dataclass
class Judgment:
    """The outcome of one :class:`JudgeRequest`.

    ``value`` is the parsed judgment (None when the call failed or the reply was malformed);
    ``method`` is ``logprob-weighted`` or ``discrete`` (None on failure); ``error`` is the
    transport error after retries; ``malformed`` is True when a reply arrived but could not be
    parsed; ``cached`` says the reply came from the cache (no request sent).
    """

    key: str
    value: Any
    method: str | None
    text: str | None
    top_logprobs: dict[str, float] | None = None
    error: str | None = None
    malformed: bool = False
    cached: bool = False

    @property
    def ok(self) -> bool:
        """A usable judgment (no error, parsed)."""
        return self.value is not None


@dataclass
class JudgeStats:
    """Counters over a :class:`JudgeClient`'s life."""

    judgments: int = 0
    cache_hits: int = 0
    http_attempts: int = 0
    errors: int = 0
    malformed: int = 0
    logprob_weighted: int = 0
    discrete: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"judgments {self.judgments}: {self.logprob_weighted} logprob-weighted, "
            f"{self.discrete} discrete, {self.malformed} malformed, {self.errors} failed; "
            f"{self.cache_hits} from cache, {self.http_attempts} HTTP attempts"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the counters."""
        return dict(self.__dict__)


class JudgeClient:
    """Judge requests through an OpenAI-compatible server, cached on disk.

    Args:
        model: the judge's served model name.
        base_url: API root, e.g. ``http://127.0.0.1:8000/v1`` or ``https://api.openai.com/v1``.
        cache: SQLite cache file or folder (``None``: no cache).
        api_key_env: environment variable holding the API key (unset: no auth header).
        concurrency, timeout, max_retries, backoff: see :class:`~hf_mig.generation.OpenAIBackend`.
        backend: an already-built backend with the same ``generate`` signature (tests, or a
            local judge through another backend); then the other connection options are unused.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        cache: str | Path | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 300.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        backend: Any = None,
        progress: bool = False,
    ) -> None:
        if backend is None:
            from hf_mig.generation import OpenAIBackend

            backend = OpenAIBackend(
                model,
                base_url=base_url,
                api_key_env=api_key_env,
                concurrency=concurrency,
                timeout=timeout,
                max_retries=max_retries,
                backoff=backoff,
                cache=cache,
                progress=progress,
            )
        self.backend = backend
        self.model = model
        self.stats = JudgeStats()

    def describe(self) -> dict[str, Any]:
        """The judge model and backend (for result files)."""
        info = {"judge_model": self.model}
        url = getattr(self.backend, "base_url", None)
        if url:
            info["judge_base_url"] = url
        return info

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgment]:
        """Run ``requests`` (grouped by decoding parameters); one :class:`Judgment` each."""
        out: list[Judgment | None] = [None] * len(requests)
        groups: dict[tuple[int, float, int], list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault((req.max_tokens, req.temperature, req.top_logprobs), []).append(i)
        attempts_before = getattr(self.backend, "attempts", 0)
        for (max_tokens, temperature, top), idx in groups.items():
            results = self.backend.generate(
                [requests[i].messages for i in idx],
                max_new_tokens=max_tokens,
                temperature=temperature,
                logprobs=top > 0,
                top_logprobs=top or None,
            )
            for i, res in zip(idx, results):
                out[i] = self._interpret(requests[i], res)
        self.stats.http_attempts += getattr(self.backend, "attempts", 0) - attempts_before
        final = [j for j in out if j is not None]
        assert len(final) == len(requests)
        return final

    def _interpret(self, req: JudgeRequest, res: Any) -> Judgment:
        st = self.stats
        st.judgments += 1
        if res.cached:
            st.cache_hits += 1
        if res.error is not None:
            st.errors += 1
            if len(st.examples) < 5:
                st.examples.append(f"{req.key}: error: {res.error}")
            return Judgment(req.key, None, None, None, error=res.error, cached=res.cached)
        top: dict[str, float] | None = None
        if req.top_logprobs and res.logprobs:
            first = res.logprobs[0]
            top = {tok: lp for tok, lp in first.top} if first.top else {first.token: first.logprob}
        if top is not None and req.parse_logprobs is not None:
            value = req.parse_logprobs(top)
            if value is not None:
                st.logprob_weighted += 1
                return Judgment(req.key, value, LOGPROB_WEIGHTED, res.text, top, cached=res.cached)
        value = req.parse_text(res.text or "")
        if value is None:
            st.malformed += 1
            if len(st.examples) < 5:
                st.examples.append(f"{req.key}: malformed reply: {(res.text or '')[:80]!r}")
            return Judgment(req.key, None, None, res.text, top, malformed=True, cached=res.cached)
        st.discrete += 1
        return Judgment(req.key, value, DISCRETE, res.text, top, cached=res.cached)


def add_judge_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every ``judge`` subcommand."""
    g = p.add_argument_group("judge")
    g.add_argument("--judge-base-url", required=True, help="OpenAI-compatible API root (…/v1)")
    g.add_argument("--judge-model", required=True, help="the judge's served model name")
    g.add_argument(
        "--judge-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable with the API key (default OPENAI_API_KEY)",
    )
    g.add_argument(
        "--judge-cache", help="SQLite judgment cache (default: <out dir>/judge_cache.sqlite)"
    )
    g.add_argument("--judge-concurrency", type=int, default=8)
    g.add_argument("--judge-timeout", type=float, default=300.0, help="seconds per request")
    g.add_argument("--judge-max-retries", type=int, default=5)


def client_from_args(args: argparse.Namespace, default_cache: Path) -> JudgeClient:
    """A :class:`JudgeClient` from :func:`add_judge_args` options."""
    return JudgeClient(
        args.judge_model,
        base_url=args.judge_base_url,
        cache=args.judge_cache or default_cache,
        api_key_env=args.judge_api_key_env,
        concurrency=args.judge_concurrency,
        timeout=args.judge_timeout,
        max_retries=args.judge_max_retries,
    )
