"""The generation interface shared by every backend (transformers, vLLM, OpenAI-compatible HTTP).

A backend turns chat conversations (OpenAI ``messages``: lists of ``{"role", "content"}`` dicts)
into one :class:`GenerationResult` per conversation, in input order::

    results = backend.generate(conversations, max_new_tokens=256)          # greedy by default
    for r in results:
        print(r.text if r.error is None else f"failed: {r.error}")

Contract of :meth:`GenerationBackend.generate` (every backend here implements it through
:class:`BaseBackend`):

* one result per input conversation, same order; the call never drops a row;
* a row that fails (invalid conversation, prompt too long, HTTP error after the retries, a model
  exception) gets ``text=None`` and ``error`` set to a message; other rows are unaffected. Only
  configuration errors that concern every row (a model that cannot be loaded, a missing
  dependency, invalid parameters) raise;
* ``temperature=0`` is greedy decoding; ``stop`` strings end the text and are not included in it;
* ``logprobs=True`` asks for the log-probability of each generated token and ``top_logprobs=k``
  for the ``k`` most likely alternatives at each position (:class:`TokenLogprob`);
* with a response cache (:class:`hf_mig.models.generation.cache.ResponseCache`), successful
  results are stored under a key of :meth:`GenerationBackend.describe` (the backend name, the
  model and, for backends that run local weights, the model's content identity, see
  :mod:`hf_mig.models.identity`; the output-affecting backend options), the parameters and the
  messages, and served from the cache (``cached=True``) on a re-run (logged at INFO). Failures
  are never cached, so a re-run retries them;
* ``accept(text) -> bool`` (optional) is the caller's check of a generated text, e.g. that it
  parses: a result whose text it rejects is returned as generated (the caller records why it is
  unusable) but is neither stored in the response cache nor served from it, so a re-run asks for
  it again.
"""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from hf_mig.models.generation.cache import cache_key, open_cache
from hf_mig.models.generation.results import GenerationResult, TokenLogprob, finished

logger = logging.getLogger(__name__)

__all__ = [
    "BackendStats",
    "BaseBackend",
    "GenerationBackend",
    "GenerationCall",
    "GenerationParams",
    "GenerationResult",
    "TokenLogprob",
    "validate_conversation",
]

Conversation = Sequence[Mapping[str, Any]]
#: ``on_result(position, result)``: called by a backend as soon as one result is final.
ResultCallback = Callable[[int, "GenerationResult"], None]

_ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass(frozen=True)
class GenerationParams:
    """Validated decoding parameters of one :meth:`GenerationBackend.generate` call.

    ``temperature == 0`` means greedy decoding (``top_p`` is then ignored). ``stop`` is a tuple of
    non-empty strings. ``top_logprobs > 0`` implies ``logprobs``. ``seed`` seeds sampling where
    the backend supports it.
    """

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None

    @classmethod
    def build(
        cls,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: str | Sequence[str] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        seed: int | None = None,
    ) -> GenerationParams:
        """Validate and normalise; raise ``ValueError`` on an invalid value."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        top_p = float(top_p)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")
        if stop is None:
            stops: tuple[str, ...] = ()
        elif isinstance(stop, str):
            stops = (stop,)
        else:
            stops = tuple(stop)
        for s in stops:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop strings must be non-empty strings, got {s!r}")
        k = 0 if top_logprobs is None else top_logprobs
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 20:
            raise ValueError(f"top_logprobs must be an integer in [0, 20], got {top_logprobs!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        return cls(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stops,
            logprobs=bool(logprobs) or k > 0,
            top_logprobs=k,
            seed=seed,
        )

    @property
    def greedy(self) -> bool:
        """``temperature == 0``."""
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``stop`` as a list), e.g. for cache keys."""
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


class GenerationCall(NamedTuple):
    """What :meth:`BaseBackend._generate` gets: the validated conversations not served from the
    cache, the decoding parameters, and ``on_result(position, result)`` to call as soon as the
    result of one conversation is final."""

    conversations: list[list[dict[str, Any]]]
    params: GenerationParams
    on_result: ResultCallback


@runtime_checkable
class GenerationBackend(Protocol):
    """What taggers, scorers and evaluation code need from a text generator.

    ``name`` is the backend family (``"transformers"``, ``"vllm"``, ``"openai"``); ``model`` the
    model id, path or served model name. :meth:`describe` returns a small JSON-ready dict of
    everything that changes outputs (used in fingerprints and cache keys): for backends that read
    the weights themselves it includes the weights' content identity, never only their path.
    """

    name: str
    model: str

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: str | Sequence[str] | None = None,
        top_p: float = 1.0,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        seed: int | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> list[GenerationResult]:
        """One :class:`GenerationResult` per conversation, in order (see the module docstring)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend name, model, the model's content identity where the backend reads local
        weights, and output-affecting options (JSON-ready)."""
        ...


def validate_conversation(conversation: Any) -> list[dict[str, Any]] | str:
    """Return ``conversation`` as a list of plain ``{"role", "content"}`` dicts, or an error text.

    A conversation must be a non-empty list of dicts with a string ``role`` (``system``,
    ``user``, ``assistant``, ``tool`` or ``developer``) and a string ``content`` (``None`` is
    accepted for assistant turns). Extra keys are kept.
    """
    if isinstance(conversation, (str, bytes)) or not isinstance(conversation, Sequence):
        return f"a conversation must be a list of messages, got {type(conversation).__name__}"
    if not conversation:
        return "the conversation is empty"
    out: list[dict[str, Any]] = []
    for j, message in enumerate(conversation):
        if not isinstance(message, Mapping):
            return f"message {j} must be a dict with 'role' and 'content', got {message!r:.80}"
        role = message.get("role")
        if role not in _ROLES:
            return f"message {j}: role must be one of {_ROLES}, got {role!r:.40}"
        content = message.get("content")
        if not isinstance(content, str) and not (content is None and role == "assistant"):
            return f"message {j}: content must be a string, got {type(content).__name__}"
        out.append(dict(message))
    return out


def _check_conversations(
    conversations: Sequence[Conversation],
) -> tuple[list[list[dict[str, Any]] | None], list[GenerationResult | None]]:
    """Validate each conversation (:func:`validate_conversation`).

    Returns ``(checked, results)``, both one entry per conversation: the plain messages of a
    valid one (else ``None``) and the failure result of an invalid one (else ``None``).
    ``TypeError`` when ``conversations`` is a string or a mapping rather than a list.
    """
    if isinstance(conversations, (str, bytes, Mapping)):
        raise TypeError("conversations must be a list of conversations (lists of messages)")
    conversations = list(conversations)
    n = len(conversations)
    results: list[GenerationResult | None] = [None] * n
    checked: list[list[dict[str, Any]] | None] = [None] * n
    for i, conversation in enumerate(conversations):
        valid = validate_conversation(conversation)
        if isinstance(valid, str):
            results[i] = GenerationResult.failure(f"invalid conversation: {valid}")
        else:
            checked[i] = valid
    return checked, results


@dataclass
class BackendStats:
    """Counters over the life of one backend object (in this process)."""

    conversations: int = 0
    generated: int = 0
    cache_hits: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)

    def record_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append(message)


class BaseBackend(ABC):
    """Shared machinery: parameter validation, input checks, the response cache, counters.

    Subclasses set :attr:`name`, implement :meth:`_generate` (the misses of one call, already
    validated) and may extend :meth:`describe` with output-affecting options.

    Args:
        model: model id, local path or served model name.
        cache: a :class:`~hf_mig.models.generation.cache.ResponseCache`, a path (a ``.sqlite`` /
            ``.db`` file, or any other path: a folder that gets ``responses.sqlite``), or
            ``None`` for no cache.
        progress: show a ``tqdm`` progress bar over the conversations of long calls.
    """

    name: str = "base"

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        cache: Any = None,
        progress: bool = True,
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model):
            raise ValueError(f"model must be a non-empty string or path, got {model!r}")
        self.model = str(model)
        self.cache = open_cache(cache)
        self.progress = bool(progress)
        self.stats = BackendStats()

    # ------------------------------------------------------------------ description

    def describe(self) -> dict[str, Any]:
        """``{"backend": name, "model": model}`` plus :meth:`_options` and :meth:`_content`."""
        return {"backend": self.name, "model": self.model, **self._options(), **self._content()}

    def _options(self) -> dict[str, Any]:
        """Output-affecting options beyond the model (JSON-ready); none by default."""
        return {}

    def _content(self) -> dict[str, Any]:
        """Content identities of the model files this backend reads (JSON-ready); none by
        default (a served model is known by its name only)."""
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}(model={self.model!r}{', ' if options else ''}{options})"

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: str | Sequence[str] | None = None,
        top_p: float = 1.0,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        seed: int | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> list[GenerationResult]:
        """Generate one reply per conversation; see the module docstring for the contract."""
        params = GenerationParams.build(
            max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            seed=seed,
        )
        checked, results = _check_conversations(conversations)
        keys = self._serve_cached(checked, params, results, accept)
        todo = [i for i in range(len(results)) if results[i] is None]
        if todo:
            self._generate_missing(todo, checked, params, results, keys, accept)
        return self._finish_call(results, len(todo))

    def _serve_cached(
        self,
        checked: list[list[dict[str, Any]] | None],
        params: GenerationParams,
        results: list[GenerationResult | None],
        accept: Callable[[str], bool] | None,
    ) -> dict[int, str]:
        """Fill ``results`` from the response cache for the valid conversations in ``checked``
        whose cached text ``accept`` takes, and log how many were served.

        Returns each valid conversation's cache key by position (empty without a cache).
        """
        keys: dict[int, str] = {}
        if self.cache is None:
            return keys
        described = self.describe()
        for i, messages in enumerate(checked):
            if messages is not None:
                keys[i] = cache_key(described, params.to_dict(), messages)
        hits = self.cache.get_many(list(set(keys.values())))
        served = rejected = 0
        for i, key in keys.items():
            hit = hits.get(key)
            if hit is None:
                continue
            if accept is not None and not accept(hit.text or ""):
                rejected += 1
                continue
            results[i] = hit
            served += 1
        self.stats.cache_hits += served
        if served or rejected:
            logger.info(
                "%s(%s): %d of %d results served from the response cache %s%s",
                type(self).__name__,
                self.model,
                served,
                len(results),
                self.cache.path,
                f" ({rejected} cached results failed the caller's check: asked again)"
                if rejected
                else "",
            )
        return keys

    def _generate_missing(
        self,
        todo: list[int],
        checked: list[list[dict[str, Any]] | None],
        params: GenerationParams,
        results: list[GenerationResult | None],
        keys: Mapping[int, str],
        accept: Callable[[str], bool] | None,
    ) -> None:
        """Run :meth:`_generate` on the conversations at positions ``todo`` and put each result
        in ``results``; a success that ``accept`` takes is stored in the response cache under
        ``keys`` as soon as it is final. ``RuntimeError`` when the backend returns another
        number of results than it was given conversations."""

        def on_result(position: int, result: GenerationResult) -> None:
            # Each success is stored at once (~0.1 ms in SQLite's WAL mode), so a killed run
            # keeps everything it had generated.
            row = todo[position]
            results[row] = result
            if (
                self.cache is not None
                and result.error is None
                and row in keys
                and (accept is None or accept(result.text or ""))
            ):
                self.cache.put_many([(keys[row], result)], model=self.model)

        missed: list[Any] = [checked[i] for i in todo]  # valid: the invalid have results
        returned = self._generate(GenerationCall(missed, params, on_result))
        if len(returned) != len(todo):
            raise RuntimeError(
                f"{type(self).__name__} returned {len(returned)} results for "
                f"{len(todo)} conversations"
            )
        for position, result in enumerate(returned):
            if results[todo[position]] is None:
                on_result(position, result)

    def _finish_call(
        self, results: list[GenerationResult | None], generated: int
    ) -> list[GenerationResult]:
        """The call's final results; counts the call (``generated`` of them asked of the
        backend) in :attr:`stats` and logs a warning when any failed."""
        out = finished(results)
        n = len(results)
        self.stats.conversations += n
        self.stats.generated += generated
        failed = [r.error for r in out if r.error is not None]
        for message in failed:
            self.stats.record_error(message)
        if failed:
            logger.warning(
                "%s(%s): %d of %d generations failed; first: %s",
                type(self).__name__,
                self.model,
                len(failed),
                n,
                failed[0],
            )
        return out

    @abstractmethod
    def _generate(self, call: GenerationCall) -> list[GenerationResult]:
        """Generate for ``call.conversations``; return one result per conversation, in order.

        Implementations may call ``call.on_result(position, result)`` as soon as a result is
        final (from the calling thread), so that it reaches the cache before the whole call ends;
        the returned list must still hold every result.
        """

    def _progress_bar(self, total: int, desc: str, min_total: int = 1) -> Any:
        """A ``tqdm`` bar over ``total`` conversations, shown when :attr:`progress` is on and
        ``total >= min_total`` (short calls stay quiet)."""
        from tqdm.auto import tqdm

        disable = not self.progress or total < min_total
        return tqdm(total=total, desc=desc, unit="conv", leave=False, disable=disable)
