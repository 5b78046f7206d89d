"""Batched generation with a Hugging Face ``transformers`` causal language model.

:class:`TransformersBackend` applies the model's chat template (``add_generation_prompt=True``),
sorts the prompts by length, pads each batch on the LEFT (so every row's last prompt token sits
at the same position and generation continues the prompt, not the padding) and decodes greedily
when ``temperature == 0``. The model is loaded on the first :meth:`generate` call, once per
process (cached per process by the content identity of the model files and the loading options),
so the backend object itself is small and picklable.

:meth:`~hf_mig.models.generation.base.BaseBackend.describe` (and so every response-cache key) carries
``model_content`` (and ``tokenizer_content`` for a separate tokenizer): the content identity of
the files (:func:`hf_mig.models.identity.model_identity`: a SHA-256 of a local folder's model
files, or the resolved commit of a Hub id), never only their path, so weights replaced in place
miss the cache. Hashing a local model costs one read of its files per process (SHA-256,
0.5-1.4 GB/s from the page cache: 10-30 s for a 15 GB model).

Device: ``device="auto"`` picks ``cuda:<rank % n_gpus>`` when GPUs exist (``rank`` is the
``Dataset.map`` worker rank, see ``with_rank=True``), else Apple ``mps``, else the CPU.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from hf_mig.models.generation.base import (
    BaseBackend,
    GenerationParams,
    GenerationResult,
    ResultCallback,
    TokenLogprob,
)
from hf_mig.runtime.fork import single_thread_torch_if_forked

logger = logging.getLogger(__name__)

__all__ = ["TransformersBackend", "clear_model_cache", "resolve_device"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")

# (model, tokenizer, gguf_file, dtype, device, trust_remote_code, content) -> (model, tokenizer)
_LOADED: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def clear_model_cache() -> None:
    """Forget every model and tokenizer loaded by this module in this process."""
    _LOADED.clear()


def resolve_device(device: str | None = "auto", rank: int | None = None) -> str:
    """The torch device string for ``device``.

    ``"auto"`` (or ``None``): ``cuda:<rank % device_count>`` when CUDA GPUs exist (rank 0 when
    ``rank`` is ``None``), else ``"mps"`` when available, else ``"cpu"``. Any other value is
    returned unchanged (e.g. ``"cpu"``, ``"cuda:1"``).
    """
    if device not in (None, "auto"):
        return str(device)
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{(rank or 0) % torch.cuda.device_count()}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


class TransformersBackend(BaseBackend):
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
        super().__init__(model, cache=cache, progress=progress)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
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
        self.tokenizer_name = None if tokenizer is None else str(tokenizer)
        self.device_option = device
        self.rank = rank
        self.dtype = dtype
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.max_input_tokens = max_input_tokens
        self.gguf_file = gguf_file
        self.trust_remote_code = bool(trust_remote_code)
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._identity: dict[str, str] | None = None

    def _content(self) -> dict[str, Any]:
        """``model_content`` (and ``tokenizer_content``): identities of the files read:
        as they are now or, after :meth:`load`, those of the files that were loaded."""
        if self._model is None or self._identity is None:
            return self._current_identity()
        return dict(self._identity)

    def _current_identity(self) -> dict[str, str]:
        from hf_mig.models.identity import model_identity

        identity = {"model_content": model_identity(self.model, file=self.gguf_file)}
        if self.tokenizer_name is not None:
            identity["tokenizer_content"] = model_identity(self.tokenizer_name)
        return identity

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.tokenizer_name is not None:
            options["tokenizer"] = self.tokenizer_name
        if self.gguf_file is not None:
            options["gguf_file"] = self.gguf_file
        if self.chat_template is not None:
            options["chat_template"] = self.chat_template
        if self.dtype != "auto":
            options["dtype"] = self.dtype
        return options

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
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        dtype_name = self.dtype
        if dtype_name == "auto":
            if device.startswith("cuda"):
                dtype_name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype_name = "float32"
        self._identity = self._current_identity()
        key = (
            self.model,
            self.tokenizer_name,
            self.gguf_file,
            dtype_name,
            device,
            self.trust_remote_code,
            tuple(sorted(self._identity.items())),
        )
        if key not in _LOADED:
            common: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
            if self.gguf_file is not None:
                common["gguf_file"] = self.gguf_file
            tok_source = self.tokenizer_name or self.model
            tok_kwargs = dict(common) if self.tokenizer_name is None else {}
            tokenizer = AutoTokenizer.from_pretrained(tok_source, **tok_kwargs)
            major = int(transformers.__version__.split(".")[0])
            dtype_key = "dtype" if major >= 5 else "torch_dtype"
            model = AutoModelForCausalLM.from_pretrained(
                self.model, **common, **{dtype_key: getattr(torch, dtype_name)}
            )
            model.to(device)
            model.eval()
            _LOADED[key] = (model, tokenizer)
            logger.info("loaded %s on %s (%s)", self.model, device, dtype_name)
        model, tokenizer = _LOADED[key]
        if self.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer of {self.model!r} has no chat template; pass chat_template=..."
            )
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

    def _prompt_ids(self, tokenizer: Any, conversation: list[dict[str, Any]]) -> list[int]:
        text = tokenizer.apply_chat_template(
            conversation,
            tokenize=False,
            add_generation_prompt=True,
            chat_template=self.chat_template,
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _generate(
        self,
        conversations: list[list[dict[str, Any]]],
        params: GenerationParams,
        on_result: ResultCallback,
    ) -> list[GenerationResult]:
        model, tokenizer = self.load()
        limit = self.max_input_tokens
        if limit is None:
            window = self._context_window(model)
            limit = None if window is None else window - params.max_new_tokens
        results: list[GenerationResult | None] = [None] * len(conversations)
        prompts: dict[int, list[int]] = {}
        for i, conversation in enumerate(conversations):
            try:
                ids = self._prompt_ids(tokenizer, conversation)
            except Exception as err:  # a template that rejects this conversation
                results[i] = GenerationResult.failure(
                    f"chat template failed: {type(err).__name__}: {err}"
                )
                on_result(i, results[i])
                continue
            if limit is not None and len(ids) > limit:
                results[i] = GenerationResult.failure(
                    f"prompt has {len(ids)} tokens; the limit is {limit} (context window minus "
                    f"max_new_tokens={params.max_new_tokens}, or max_input_tokens)"
                )
                on_result(i, results[i])
                continue
            prompts[i] = ids
        order = sorted(prompts, key=lambda i: (-len(prompts[i]), i))
        bar = self._progress_bar(len(order), f"generate ({self.model})", 2 * self.batch_size)
        try:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                for i, result in self._run_batch(model, tokenizer, rows, prompts, params):
                    results[i] = result
                    on_result(i, result)
                bar.update(len(rows))
        finally:
            bar.close()
        out: list[GenerationResult] = []
        for result in results:
            assert result is not None
            out.append(result)
        return out

    def _run_batch(
        self,
        model: Any,
        tokenizer: Any,
        rows: Sequence[int],
        prompts: dict[int, list[int]],
        params: GenerationParams,
    ) -> list[tuple[int, GenerationResult]]:
        try:
            return self._batch(model, tokenizer, rows, prompts, params)
        except Exception as err:
            if len(rows) == 1:
                message = f"generation failed: {type(err).__name__}: {err}"
                return [(rows[0], GenerationResult.failure(message))]
            logger.warning(
                "generation of a batch of %d failed (%s: %s); retrying in halves",
                len(rows),
                type(err).__name__,
                err,
            )
            self._free_memory()
            half = len(rows) // 2
            first = self._run_batch(model, tokenizer, rows[:half], prompts, params)
            return first + self._run_batch(model, tokenizer, rows[half:], prompts, params)

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
    ) -> list[tuple[int, GenerationResult]]:
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
        results: list[tuple[int, GenerationResult]] = []
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
