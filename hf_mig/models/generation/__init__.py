"""Text generation backends behind one small interface (:class:`GenerationBackend`).

* :class:`TransformersBackend` — ``transformers`` on CPU or GPU: chat template, left padding,
  length-sorted batches, greedy by default.
* :class:`VLLMBackend` — vLLM when installed (imported lazily; never required).
* :class:`OpenAIBackend` — any OpenAI-compatible ``/chat/completions`` server: a thread pool,
  retries with exponential backoff, per-request timeouts, logprobs.

Every backend can keep an on-disk :class:`ResponseCache` (SQLite), so re-runs are free and an
interrupted run resumes where it stopped::

    from hf_mig.models.generation import load_backend
    backend = load_backend("openai", "my-model", base_url="http://127.0.0.1:8000/v1",
                           cache="runs/cache")
    results = backend.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=32)
"""

from __future__ import annotations

from typing import Any

from hf_mig.models.generation.base import (
    BackendStats,
    BaseBackend,
    GenerationBackend,
    GenerationParams,
    GenerationResult,
    TokenLogprob,
    validate_conversation,
)
from hf_mig.models.generation.cache import ResponseCache, cache_key, open_cache
from hf_mig.models.generation.openai_backend import OpenAIBackend
from hf_mig.models.generation.transformers_backend import TransformersBackend, resolve_device
from hf_mig.models.generation.vllm_backend import VLLMBackend

__all__ = [
    "BACKENDS",
    "BackendStats",
    "BaseBackend",
    "GenerationBackend",
    "GenerationParams",
    "GenerationResult",
    "OpenAIBackend",
    "ResponseCache",
    "TokenLogprob",
    "TransformersBackend",
    "VLLMBackend",
    "cache_key",
    "load_backend",
    "open_cache",
    "resolve_device",
    "validate_conversation",
]

#: Backend names accepted by :func:`load_backend`.
BACKENDS: dict[str, type[BaseBackend]] = {
    "transformers": TransformersBackend,
    "vllm": VLLMBackend,
    "openai": OpenAIBackend,
}


def load_backend(name: str, model: str, **kwargs: Any) -> BaseBackend:
    """Create the backend ``name`` (``"transformers"``, ``"vllm"`` or ``"openai"``) for ``model``.

    ``kwargs`` go to the backend's constructor (e.g. ``base_url=``, ``concurrency=``,
    ``batch_size=``, ``device=``, ``cache=``). Nothing is loaded or imported until the first
    ``generate``. Raises ``ValueError`` for an unknown name and ``TypeError`` for an option the
    backend does not take.
    """
    cls = BACKENDS.get(name)
    if cls is None:
        raise ValueError(f"unknown generation backend {name!r}; choose one of {sorted(BACKENDS)}")
    return cls(model, **kwargs)
