"""Tiny, real, offline causal language models for tests, examples and benchmarks.

:func:`build_tiny_llama` writes a complete Hugging Face model folder (``config.json``,
``model.safetensors``, ``generation_config.json`` and a fast tokenizer with a ChatML chat
template) that ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load
offline::

    from hf_mig.testing import build_tiny_llama
    path = build_tiny_llama(tmp_path / "tiny-llama")      # ~1 s, deterministic

The builder, its tokenizer training and the SmolLM2 locator live in the package
(:mod:`hf_mig.models.tiny`, :mod:`hf_mig.models.lm`); this module gathers them for tests. The
chat template is ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``) with ``{% generation %}``
markers, so that ``apply_chat_template(..., return_assistant_tokens_mask=True)`` (TRL's
assistant-only loss) works. ``<|im_end|>`` is the EOS token, ``<s>`` the BOS token and ``<pad>``
the padding token.
"""

from __future__ import annotations

from hf_mig.models.lm import smollm2_gguf_path
from hf_mig.models.tiny import (
    CHATML,
    CHATML_TEMPLATE,
    build_tiny_llama,
    corpus_lines,
    train_bpe_tokenizer,
)

__all__ = [
    "CHATML_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_llama",
    "corpus_lines",
    "smollm2_gguf_path",
    "train_bpe_tokenizer",
]

#: Special tokens of the tiny tokenizer, in id order (ids 0..4).
SPECIAL_TOKENS: tuple[str, ...] = CHATML.special_tokens
