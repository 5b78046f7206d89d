"""Batched generation with a Hugging Face ``transformers`` causal language model.

:class:`TransformersBackend` applies the model's chat template (``add_generation_prompt=True``),
sorts the prompts by length, pads each batch on the LEFT (so every row's last prompt token sits
at the same position and generation continues the prompt, not the padding) and decodes greedily
when ``temperature == 0``. The model is loaded on the first :meth:`generate` call, once per
process (cached per process by the content identity of the model files and the loading options),
so the backend object itself is small and picklable.

:meth:`~hf_mig.models.generation.base.BaseBackend.describe` (and so every response-cache key)
carries ``model_content`` (and ``tokenizer_content`` for a separate tokenizer): the content
identity of the files (:func:`hf_mig.models.identity.model_identity`: a SHA-256 of a local
folder's model files, or the resolved commit of a Hub id), never only their path, so weights
replaced in place miss the cache. Hashing a local model costs one read of its files per process
(SHA-256, 0.5-1.4 GB/s from the page cache: 10-30 s for a 15 GB model).

Device: ``device="auto"`` picks ``cuda:<rank % n_gpus>`` when GPUs exist (``rank`` is the
``Dataset.map`` worker rank, see ``with_rank=True``), else Apple ``mps``, else the CPU
(:func:`hf_mig.models.lm.resolve_device`). Models are loaded by
:func:`hf_mig.models.lm.load_pretrained`, whose per-process cache the scorers share.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from hf_mig.models.fork import single_thread_torch_if_forked
from hf_mig.models.generation.base import GenerationCall, GenerationParams
from hf_mig.models.generation.local import LocalModelBackend, RowResults, run_in_halves
from hf_mig.models.generation.results import GenerationResult, TokenLogprob, finished
from hf_mig.models.lm import DTYPES, clear_model_cache, load_pretrained, resolve_device

logger = logging.getLogger(__name__)

__all__ = ["TransformersBackend", "clear_model_cache", "resolve_device"]


class TransformersBackend(LocalModelBackend):
    """Generation with ``AutoModelForCausalLM`` + the model's chat template, batched.

    Args:
        model: Hub id or local folder.
        tokenizer: tokenizer id or folder when it differs from ``model``.
        device: ``"auto"`` (see :func:`resolve_device`) or a torch device string.
        rank: worker rank for ``device="auto"`` (GPU ``rank % n_gpus``).
        dtype: ``"auto"`` (float32 on CPU/MPS, bfloat16 on GPUs that support it, else float16),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        batch_size: prompts per forward batch (prompts are sorted by length first).
        chat_template: a Jinja chat template overriding the tokenizer's (required when the
            tokenizer has none).
        max_input_tokens: longest prompt accepted; default: the model's context window
            (``max_position_embeddings``) minus ``max_new_tokens``. A longer prompt is a per-row
            error, never silently truncated.
        gguf_file: name of a GGUF file inside ``model`` (dequantised by ``transformers``; needs
            the ``gguf`` package).
        trust_remote_code: passed to ``from_pretrained``.
        cache, progress: see :class:`~hf_mig.models.generation.base.BaseBackend`.

    A batch that raises (e.g. out of memory) is split in halves and retried, down to single
    prompts; a prompt that still fails gets its own ``error``.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        device: str | None = "auto",
        rank: int | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        chat_template: str | None = None,
        max_input_tokens: int | None = None,
        gguf_file: str | None = None,
        trust_remote_code: bool = False,
        cache: Any = None,
        progress: bool = True,
    ) -> None:
        super().__init__(model, tokenizer, dtype, chat_template, cache=cache, progress=progress)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_input_tokens is not None and (
            isinstance(max_input_tokens, bool)
            or not isinstance(max_input_tokens, int)
            or max_input_tokens < 1
        ):
            raise ValueError(
                f"max_input_tokens must be a positive integer, got {max_input_tokens!r}"
            )
        if chat_template is not None and not isinstance(chat_template, str):
            raise ValueError("chat_template must be a Jinja template string or None")
        self.device_option = device
        self.rank = rank
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.gguf_file = gguf_file
        self.trust_remote_code = bool(trust_remote_code)
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None

    def _is_loaded(self) -> bool:
        return self._model is not None

    def _identity_arguments(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"file": self.gguf_file}, {}

    def _file_options(self) -> dict[str, Any]:
        return {} if self.gguf_file is None else {"gguf_file": self.gguf_file}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = state["_tokenizer"] = state["_device"] = None
        return state

    # ------------------------------------------------------------------ loading

    @property
    def device(self) -> str:
        """The resolved device (resolving it does not load the model)."""
        if self._device is None:
            self._device = resolve_device(self.device_option, self.rank)
        return self._device

    def load(self) -> tuple[Any, Any]:
        """Load (or reuse from the per-process cache) and return ``(model, tokenizer)``.

        Raises ``ValueError`` when the tokenizer has no chat template and none was given.
        """
        single_thread_torch_if_forked()
        if self._model is not None:
            return self._model, self._tokenizer
        self._identity = self._current_identity()
        model, tokenizer = load_pretrained(
            self.model,
            device=self.device,
            dtype=self.dtype,
            gguf_file=self.gguf_file,
            tokenizer=self.tokenizer_name,
            trust_remote_code=self.trust_remote_code,
            content=tuple(sorted(self._identity.items())),
        )
        self._check_chat_template(tokenizer)
        self._model, self._tokenizer = model, tokenizer
        return model, tokenizer

    # ------------------------------------------------------------------ generation

    def _eos_ids(self, model: Any, tokenizer: Any) -> list[int]:
        ids: list[int] = []
        for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
            if source is None:
                continue
            for token in source if isinstance(source, (list, tuple)) else [source]:
                if token not in ids:
                    ids.append(int(token))
        return ids

    def _context_window(self, model: Any) -> int | None:
        config = model.config
        getter = getattr(config, "get_text_config", None)
        text_config = getter() if callable(getter) else config
        window = getattr(text_config, "max_position_embeddings", None)
        return int(window) if isinstance(window, int) and window > 0 else None

    def _generate(self, call: GenerationCall) -> list[GenerationResult]:
        conversations, params, on_result = call
        model, tokenizer = self.load()
        limit = self.max_input_tokens
        if limit is None:
            window = self._context_window(model)
            limit = None if window is None else window - params.max_new_tokens
        results: list[GenerationResult | None] = [None] * len(conversations)
        reason = f"context window minus max_new_tokens={params.max_new_tokens}, or max_input_tokens"
        prompts = self._prompts(tokenizer, conversations, limit, reason, results, on_result)
        order = sorted(prompts, key=lambda i: (-len(prompts[i]), i))
        bar = self._progress_bar(len(order), f"generate ({self.model})", 2 * self.batch_size)
        try:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = run_in_halves(
                    lambda part: self._batch(model, tokenizer, part, prompts, params),
                    rows,
                    self._split,
                )
                for i, result in batch:
                    results[i] = result
                    on_result(i, result)
                bar.update(len(rows))
        finally:
            bar.close()
        return finished(results)

    def _split(self, size: int, err: Exception) -> None:
        logger.warning(
            "generation of a batch of %d failed (%s: %s); retrying in halves",
            size,
            type(err).__name__,
            err,
        )
        self._free_memory()

    def _free_memory(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _batch(
        self,
        model: Any,
        tokenizer: Any,
        rows: Sequence[int],
        prompts: dict[int, list[int]],
        params: GenerationParams,
    ) -> RowResults:
        import torch
        from transformers import GenerationConfig

        eos_ids = self._eos_ids(model, tokenizer)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = eos_ids[0] if eos_ids else 0
        width = max(len(prompts[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids = prompts[i]
            input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[r, width - len(ids) :] = 1
        settings: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "repetition_penalty": 1.0,
            "num_beams": 1,
            "eos_token_id": eos_ids or None,
            "pad_token_id": pad_id,
            "return_dict_in_generate": True,
            "output_logits": params.logprobs,
        }
        if not params.greedy:  # pure temperature / nucleus sampling: no top-k from the model
            settings.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            settings["stop_strings"] = list(params.stop)
        config = GenerationConfig(**settings)
        extra: dict[str, Any] = {"tokenizer": tokenizer} if params.stop else {}
        if params.seed is not None:
            torch.manual_seed(params.seed)
        device = model.device
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                **extra,
            )
        new_tokens = output.sequences[:, width:].tolist()
        logits = output.logits if params.logprobs else None
        results: RowResults = []
        for r, i in enumerate(rows):
            tokens = new_tokens[r]
            finish = "length"
            end = len(tokens)
            for t, token in enumerate(tokens):
                if token in eos_ids:
                    end, finish = t, "stop"
                    break
            if finish == "length" and pad_id not in eos_ids:
                while end > 0 and tokens[end - 1] == pad_id:
                    end -= 1
            kept = tokens[:end]
            text = tokenizer.decode(kept, skip_special_tokens=True)
            if params.stop:
                cut = min((p for p in (text.find(s) for s in params.stop) if p >= 0), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            logprobs = None
            if logits is not None:
                logprobs = self._logprobs(tokenizer, logits, r, kept, params.top_logprobs)
            results.append(
                (
                    i,
                    GenerationResult(
                        text=text,
                        finish_reason=finish,
                        logprobs=logprobs,
                        prompt_tokens=len(prompts[i]),
                        completion_tokens=len(kept),
                    ),
                )
            )
        return results

    @staticmethod
    def _logprobs(
        tokenizer: Any, logits: Sequence[Any], row: int, tokens: list[int], top: int
    ) -> list[TokenLogprob]:
        import torch

        out: list[TokenLogprob] = []
        for t, token in enumerate(tokens):
            logp = torch.log_softmax(logits[t][row].float(), dim=-1)
            alternatives: tuple[tuple[str, float], ...] = ()
            if top > 0:
                values, ids = torch.topk(logp, k=min(top, logp.shape[-1]))
                alternatives = tuple(
                    (tokenizer.decode([int(j)]), float(v))
                    for v, j in zip(values.tolist(), ids.tolist())
                )
            out.append(TokenLogprob(tokenizer.decode([token]), float(logp[token]), alternatives))
        return out
