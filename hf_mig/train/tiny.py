"""The tiny, offline Llama of the CPU recipe.

:func:`build_tiny_llama` writes a randomly initialised ``LlamaForCausalLM`` (2 layers, hidden size
64; about 0.2M parameters) and a byte-level BPE tokenizer trained with ``tokenizers`` on the
package's bundled demo pool (Apache-2.0 Self-Instruct tasks,
:func:`hf_mig.data.resources.demo_pool_path`) to a folder that ``AutoModelForCausalLM`` /
``AutoTokenizer`` load. Nothing is downloaded. It is :func:`hf_mig.models.tiny.build_tiny_llama`
with the Llama 3 flavour and a chat template named in :mod:`hf_mig.train.templates`.

The tokenizer knows the special tokens of every template in :mod:`hf_mig.train.templates`
(Llama 3 headers, ChatML, Mistral ``[INST]``), so any of them can be rendered and checked with it;
its own ``chat_template`` is the training-compatible ``llama3`` one (``{% generation %}`` blocks).

Recipes name the model ``hf-mig:tiny-llama``; :func:`resolve_model_path` builds it once into the
hf-mig cache (``$HF_MIG_CACHE`` or ``~/.cache/hf_mig``) and returns the folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hf_mig.core.config import cache_root
from hf_mig.models import tiny
from hf_mig.models.tiny import LLAMA3, TINY_MODEL_ID, TINY_MODEL_SETTINGS, resolve_model_path

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_MODEL_ID",
    "build_tiny_llama",
    "cache_root",
    "resolve_model_path",
]

#: Special tokens of the tiny tokenizer: those of the llama3, ChatML and Mistral v3 formats.
SPECIAL_TOKENS: tuple[str, ...] = LLAMA3.special_tokens


def build_tiny_llama(
    path: str | os.PathLike,
    *,
    texts: Iterable[str] | None = None,
    chat_template: str = "llama3",
    **sizes: int,
) -> Path:
    """Write a tiny Llama (weights, config, generation config, tokenizer) to ``path``.

    ``texts`` train the tokenizer (default: the bundled demo pool). The tokenizer's bos/eos are
    ``<|begin_of_text|>`` / ``<|end_of_text|>``, its pad token ``<|finetune_right_pad_id|>``, and
    its chat template the training-compatible ``chat_template`` (a name from
    :data:`hf_mig.train.templates.TEMPLATES`, or a ``.jinja`` file). ``sizes`` replace those of
    :data:`hf_mig.models.tiny.TINY_MODEL_SETTINGS` (``vocab_size`` 2048, ``hidden_size`` 64,
    ``num_hidden_layers`` 2, ``num_attention_heads`` 4, ``num_key_value_heads`` 2,
    ``intermediate_size`` 128, ``max_position_embeddings`` 2048, ``seed`` 0). Deterministic for a
    given ``seed`` and texts; always built anew. Returns ``Path(path)``.
    """
    from hf_mig.train.templates import get_template

    template = get_template(chat_template).template
    return tiny.build_tiny_llama(
        path,
        **{**TINY_MODEL_SETTINGS, **sizes},
        corpus=texts,
        chat_template=None if template == LLAMA3.chat_template else template,
        overwrite=True,
    )
