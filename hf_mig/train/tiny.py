"""A tiny, offline Llama for tests and the CPU recipe.

:func:`build_tiny_llama` writes a randomly initialised ``LlamaForCausalLM`` (2 layers, hidden size
64; about 0.2M parameters) and a byte-level BPE tokenizer trained with ``tokenizers`` on the
package's bundled demo pool (Apache-2.0 Self-Instruct tasks,
:func:`hf_mig.data.resources.demo_pool_path`) to a folder that ``AutoModelForCausalLM`` /
``AutoTokenizer`` load. Nothing is downloaded.

The tokenizer knows the special tokens of every template in :mod:`hf_mig.train.templates`
(Llama 3 headers, ChatML, Mistral ``[INST]``), so any of them can be rendered and checked with it;
its own ``chat_template`` is the training-compatible ``llama3`` one (``{% generation %}`` blocks).

Recipes name the model ``hf-mig:tiny-llama``; :func:`resolve_model_path` builds it once into the
hf-mig cache (``$HF_MIG_CACHE`` or ``~/.cache/hf_mig``) and returns the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_MODEL_ID",
    "build_tiny_llama",
    "cache_root",
    "resolve_model_path",
]

#: Model name that recipes use for the tiny offline Llama.
TINY_MODEL_ID = "hf-mig:tiny-llama"

#: Special tokens of the tiny tokenizer: those of the llama3, ChatML and Mistral v3 formats.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
)

_DEFAULTS = {
    "vocab_size": 2048,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 2048,
    "seed": 0,
}
_BUILD_VERSION = 3


def cache_root() -> Path:
    """Root of hf-mig's caches: ``$HF_MIG_CACHE`` when set and not empty, else
    ``~/.cache/hf_mig``."""
    return Path(os.environ.get("HF_MIG_CACHE") or "~/.cache/hf_mig").expanduser()


def build_tiny_llama(
    path: str | os.PathLike,
    *,
    texts: Iterable[str] | None = None,
    chat_template: str = "llama3",
    vocab_size: int = _DEFAULTS["vocab_size"],
    hidden_size: int = _DEFAULTS["hidden_size"],
    num_hidden_layers: int = _DEFAULTS["num_hidden_layers"],
    num_attention_heads: int = _DEFAULTS["num_attention_heads"],
    num_key_value_heads: int = _DEFAULTS["num_key_value_heads"],
    intermediate_size: int = _DEFAULTS["intermediate_size"],
    max_position_embeddings: int = _DEFAULTS["max_position_embeddings"],
    seed: int = _DEFAULTS["seed"],
) -> Path:
    """Write a tiny Llama (weights, config, generation config, tokenizer) to ``path``.

    ``texts`` train the tokenizer (default: the bundled demo pool). The tokenizer's bos/eos are
    ``<|begin_of_text|>`` / ``<|end_of_text|>``, its pad token ``<|finetune_right_pad_id|>``, and
    its chat template the training-compatible ``chat_template`` (a name from
    :data:`hf_mig.train.templates.TEMPLATES`). Deterministic for a given ``seed`` and texts.
    Returns ``Path(path)``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_mig.testing import corpus_lines, train_bpe_tokenizer
    from hf_mig.train.templates import apply_chat_template

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bpe_tokenizer(
        texts if texts is not None else corpus_lines(),
        vocab_size,
        SPECIAL_TOKENS,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    apply_chat_template(tokenizer, chat_template)
    tokenizer.save_pretrained(out)

    vocab = len(tokenizer)
    config = LlamaConfig(
        vocab_size=((vocab + 63) // 64) * 64,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<|eot_id|>"),
        tokenizer.eos_token_id,
    ]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return out


def _spec_hash() -> str:
    payload = json.dumps({**_DEFAULTS, "build": _BUILD_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def resolve_model_path(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Map :data:`TINY_MODEL_ID` to a built folder (building it once); return others unchanged.

    The folder is ``<cache_dir or cache_root()/models>/tiny-llama-<hash of the build settings>``;
    it is written to a temporary folder and renamed into place, so concurrent callers (several
    ranks) never see a half-written model: the last rename loses harmlessly.
    """
    if name_or_path != TINY_MODEL_ID:
        return name_or_path
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "models"
    target = root / f"tiny-llama-{_spec_hash()}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=root))
    try:
        build_tiny_llama(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
