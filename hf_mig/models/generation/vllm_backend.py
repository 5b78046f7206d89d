"""Generation with vLLM (optional: ``vllm`` is imported only when this backend first generates).

:class:`VLLMBackend` renders each conversation with the tokenizer's chat template (as the
transformers backend does, so both backends see identical prompt tokens), checks every prompt
against the model's context window (a too-long prompt is that row's error, not a crash of the
whole batch), and hands the token ids of all remaining prompts to one ``LLM.generate`` call,
which schedules them with continuous batching. Greedy when ``temperature == 0``.

:meth:`~hf_mig.models.generation.base.BaseBackend.describe` (and so every response-cache key)
carries ``model_content`` (and ``tokenizer_content``): the content identity of the model
(:func:`hf_mig.models.identity.model_identity`: a SHA-256 of a local folder's model files, or the
commit a Hub id's ``revision`` resolves to), never only its path.

The engine is created once per process (cached by model identity and engine options). With
several GPUs, either use ``tensor_parallel_size`` for one big model, or run one process per GPU
(e.g. ``hf-mig tag --shard I/N`` jobs with ``CUDA_VISIBLE_DEVICES`` set) — not ``num_proc``
workers, which would each start an engine on the same GPU.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hf_mig.models.generation.base import GenerationCall, GenerationParams
from hf_mig.models.generation.local import LocalModelBackend, RowResults, run_in_halves
from hf_mig.models.generation.results import GenerationResult, TokenLogprob, finished

logger = logging.getLogger(__name__)

__all__ = ["VLLM_INSTALL_HINT", "VLLMBackend", "import_vllm"]

#: What to install for this backend (named in the ImportError).
VLLM_INSTALL_HINT = (
    'the vLLM backend needs the optional "vllm" package (extra "vllm"): '
    'pip install "hf-mig[vllm]", or pip install vllm; it needs a supported GPU. '
    "Use backend 'transformers' on a machine without vLLM."
)

_ENGINES: dict[tuple[Any, ...], Any] = {}


def import_vllm() -> Any:
    """Import and return the ``vllm`` module; raise ``ImportError`` naming the extra if missing."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"{VLLM_INSTALL_HINT} ({err})") from err
    return vllm


class VLLMBackend(LocalModelBackend):
    """Offline batched generation with ``vllm.LLM``.

    Args:
        model: Hub id or local folder.
        tokenizer: tokenizer id or folder when it differs from ``model``.
        dtype: vLLM ``dtype`` (``"auto"``, ``"bfloat16"``, ``"float16"``, ``"float32"``).
        tensor_parallel_size: GPUs per model replica.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        max_model_len: context window override (default: the model's).
        chat_template: a Jinja template overriding the tokenizer's.
        trust_remote_code: passed to vLLM.
        seed: engine seed.
        engine_kwargs: any other ``vllm.LLM`` keyword arguments (e.g. ``{"enforce_eager": True}``).
        cache, progress: see :class:`~hf_mig.models.generation.base.BaseBackend`.

    Creating the object never imports vLLM; the first :meth:`generate` (or :meth:`load`) does
    and raises ``ImportError`` with an install hint when it is missing.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        chat_template: str | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
        engine_kwargs: dict[str, Any] | None = None,
        cache: Any = None,
        progress: bool = True,
    ) -> None:
        super().__init__(model, tokenizer, dtype, chat_template, cache=cache, progress=progress)
        tp = tensor_parallel_size
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise ValueError(f"tensor_parallel_size must be a positive integer, got {tp!r}")
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise ValueError(
                f"gpu_memory_utilization must lie in (0, 1], got {gpu_memory_utilization!r}"
            )
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = float(gpu_memory_utilization)
        self.max_model_len = max_model_len
        self.trust_remote_code = bool(trust_remote_code)
        self.seed = seed
        self.engine_kwargs = dict(engine_kwargs or {})
        self._llm: Any = None

    def _is_loaded(self) -> bool:
        return self._llm is not None

    def _identity_arguments(self) -> tuple[dict[str, Any], dict[str, Any]]:
        revisions = self.engine_kwargs.get("revision"), self.engine_kwargs.get("tokenizer_revision")
        return {"revision": revisions[0]}, {"revision": revisions[1]}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_llm"] = None
        return state

    def load(self) -> Any:
        """Create (or reuse from the per-process cache) and return the ``vllm.LLM`` engine."""
        if self._llm is not None:
            return self._llm
        vllm = import_vllm()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "trust_remote_code": self.trust_remote_code,
            "seed": self.seed,
            **self.engine_kwargs,
        }
        if self.tokenizer_name is not None:
            kwargs["tokenizer"] = self.tokenizer_name
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        self._identity = self._current_identity()
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items())) + tuple(
            sorted(self._identity.items())
        )
        if key not in _ENGINES:
            _ENGINES[key] = vllm.LLM(**kwargs)
        self._llm = _ENGINES[key]
        return self._llm

    def _window(self, llm: Any) -> int | None:
        if self.max_model_len is not None:
            return self.max_model_len
        paths = (("llm_engine", "model_config", "max_model_len"), ("model_config", "max_model_len"))
        for path in paths:
            obj: Any = llm
            for attr in path:
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
            if isinstance(obj, int):
                return obj
        return None

    def _generate(self, call: GenerationCall) -> list[GenerationResult]:
        conversations, params, on_result = call
        vllm = import_vllm()
        llm = self.load()
        tokenizer = llm.get_tokenizer()
        self._check_chat_template(tokenizer)
        window = self._window(llm)
        limit = None if window is None else window - params.max_new_tokens
        results: list[GenerationResult | None] = [None] * len(conversations)
        reason = f"max_model_len {window} minus max_new_tokens={params.max_new_tokens}"
        prompts = self._prompts(tokenizer, conversations, limit, reason, results, on_result)
        sampling: dict[str, Any] = {
            "n": 1,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p if not params.greedy else 1.0,
            "stop": list(params.stop) or None,
        }
        if params.logprobs:
            sampling["logprobs"] = params.top_logprobs
        if params.seed is not None:
            sampling["seed"] = params.seed
        sampling_params = vllm.SamplingParams(**sampling)
        if prompts:
            batch = run_in_halves(
                lambda rows: self._run(llm, rows, prompts, sampling_params, params),
                list(prompts),
                _log_split,
            )
            for i, result in batch:
                results[i] = result
                on_result(i, result)
        return finished(results)

    def _run(
        self,
        llm: Any,
        rows: list[int],
        prompts: dict[int, list[int]],
        sampling_params: Any,
        params: GenerationParams,
    ) -> RowResults:
        outputs = llm.generate(
            [{"prompt_token_ids": prompts[i]} for i in rows],
            sampling_params=sampling_params,
            use_tqdm=self.progress,
        )
        out: RowResults = []
        for i, request in zip(rows, outputs):
            completion = request.outputs[0]
            logprobs = None
            if params.logprobs and completion.logprobs is not None:
                logprobs = []
                for token_id, alternatives in zip(completion.token_ids, completion.logprobs):
                    chosen = alternatives.get(token_id)
                    ranked = sorted(alternatives.items(), key=lambda kv: -kv[1].logprob)
                    top = tuple(
                        (str(lp.decoded_token), float(lp.logprob))
                        for _, lp in ranked[: params.top_logprobs]
                    )
                    logprobs.append(
                        TokenLogprob(
                            str(chosen.decoded_token) if chosen is not None else "",
                            float(chosen.logprob) if chosen is not None else float("nan"),
                            top,
                        )
                    )
            out.append(
                (
                    i,
                    GenerationResult(
                        text=completion.text,
                        finish_reason=completion.finish_reason,
                        logprobs=logprobs,
                        prompt_tokens=len(prompts[i]),
                        completion_tokens=len(completion.token_ids),
                    ),
                )
            )
        return out


def _log_split(size: int, err: Exception) -> None:
    logger.warning("vLLM batch of %d failed (%s); retrying in halves", size, err)
