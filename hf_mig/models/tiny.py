"""Tiny, real, offline Llama models: for the CPU recipe, the scorers' offline model and tests.

:func:`build_tiny_llama` writes a complete Hugging Face model folder (``config.json``,
``model.safetensors``, ``generation_config.json`` and a fast tokenizer with a chat template)
that ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load offline.
Nothing is downloaded.

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on real text (by
default the user and assistant turns of the Apache-2.0 demo pool shipped with ``hf_mig``), so any
Unicode text round-trips. The model is a randomly initialised ``LlamaForCausalLM``: it produces
gibberish, but it runs every code path a real Llama runs (rotary positions, grouped-query
attention, left padding, KV cache, chat template).

Two flavours (:class:`TinyFlavour`) fix the tokenizer's special tokens and chat template:

* :data:`CHATML` (the default): ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``) with
  ``{% generation %}`` markers, ``<|im_end|>`` the EOS token (generation stops at the end of the
  assistant turn), ``<s>`` the BOS token, ``<pad>`` the padding token, left padding;
* :data:`LLAMA3`: the special tokens of the llama3, ChatML and Mistral v3 formats, the
  training-compatible Llama 3 template, ``<|begin_of_text|>`` / ``<|end_of_text|>`` as BOS / EOS
  and ``<|finetune_right_pad_id|>`` as padding; generation stops at ``<|eot_id|>`` too.

Recipes and scorers name the LLAMA3 model of the CPU recipe :data:`TINY_MODEL_ID`;
:func:`resolve_model_path` builds it once into the hf-mig cache
(:func:`hf_mig.core.config.cache_root`) and returns the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.core.config import cache_root
from hf_mig.data.atomic import rename_or_keep, replace_folder, temporary_folder

__all__ = [
    "CHATML",
    "CHATML_TEMPLATE",
    "LLAMA3",
    "LLAMA3_TEMPLATE",
    "TINY_MODEL_ID",
    "TINY_MODEL_SETTINGS",
    "TinyFlavour",
    "build_tiny_llama",
    "corpus_lines",
    "resolve_model_path",
    "train_bpe_tokenizer",
]

#: Model name that recipes and scorers use for the tiny offline Llama (:data:`LLAMA3` flavour).
TINY_MODEL_ID = "hf-mig:tiny-llama"

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

#: The Llama 3 chat template with ``{% generation %}`` markers (the paper's training template).
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- generation %}{{- message['content'] + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


@dataclass(frozen=True)
class TinyFlavour:
    """The tokenizer side of a tiny Llama.

    ``special_tokens`` get the first ids, in order; ``tokenizer_kwargs`` go to
    ``PreTrainedTokenizerFast`` (``bos_token``, ``eos_token``, ``pad_token``...); ``stop_tokens``
    end generation (``generation_config.eos_token_id``, the EOS token when empty); the model's
    vocabulary is the tokenizer's rounded up to a multiple of ``vocab_multiple``.
    """

    name: str
    special_tokens: tuple[str, ...]
    chat_template: str
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    stop_tokens: tuple[str, ...] = ()
    vocab_multiple: int = 1


CHATML = TinyFlavour(
    name="chatml",
    special_tokens=("<pad>", "<s>", "<|im_end|>", "<|im_start|>", "<unk>"),
    chat_template=CHATML_TEMPLATE,
    tokenizer_kwargs={
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": ["<|im_start|>"],
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
    },
)

LLAMA3 = TinyFlavour(
    name="llama3",
    special_tokens=(
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
    ),
    chat_template=LLAMA3_TEMPLATE,
    tokenizer_kwargs={
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": "<|finetune_right_pad_id|>",
    },
    stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
    vocab_multiple=64,
)

_FLAVOURS = {flavour.name: flavour for flavour in (CHATML, LLAMA3)}
_MARKER = "hf_mig_tiny_llama.json"
_FORMAT_VERSION = 1
#: Settings of the :data:`TINY_MODEL_ID` build (part of its cache folder's name): the
#: :data:`LLAMA3` flavour, sizes of the CPU recipe.
TINY_MODEL_SETTINGS: dict[str, Any] = {
    "flavour": "llama3",
    "vocab_size": 2048,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 2048,
    "initializer_range": 0.02,
    "seed": 0,
}
_TINY_MODEL_BUILD = 4


def corpus_lines(limit: int | None = None) -> list[str]:
    """Real text lines for tokenizer training: every message content of the shipped demo pool.

    The demo pool is 427 Apache-2.0 Self-Instruct conversations
    (``hf_mig/data/bundled/demo_pool.jsonl``); this returns their user and assistant contents in
    file order (at most ``limit`` of them). Raises ``FileNotFoundError`` if the package was
    installed without its data files.
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


def _marker_matches(folder: Path, params: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / _MARKER).read_text(encoding="utf-8")) == params
    except (OSError, ValueError):
        return False


def build_tiny_llama(
    path: str | os.PathLike,
    *,
    flavour: TinyFlavour | str = CHATML,
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
    chat_template: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` with a trained BPE tokenizer to ``path``.

    Args:
        path: output folder. When it already holds a build with exactly the same arguments
            (recorded in ``hf_mig_tiny_llama.json``) and ``overwrite`` is false, nothing is
            rebuilt.
        flavour: :data:`CHATML`, :data:`LLAMA3` (or their names): special tokens and template.
        vocab_size: BPE vocabulary size including the special tokens and the 256 byte symbols
            (so at least 256 + their number; the trainer may stop below it on a small corpus).
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, max_position_embeddings: the ``LlamaConfig`` sizes.
        initializer_range: std of the random weights. The default (0.1, larger than Llama's
            0.02) gives peaked next-token distributions, so greedy decoding is not decided by
            float rounding noise.
        seed: torch seed for the weights (the global RNG state is restored afterwards).
        corpus: text lines for the tokenizer; default :func:`corpus_lines` (real text shipped
            with the package). A custom corpus is not recorded, so pass ``overwrite=True`` when
            changing it for the same folder.
        chat_template: a Jinja template replacing the flavour's.
        overwrite: rebuild even when a matching build exists.

    Returns the folder as a :class:`~pathlib.Path`. Deterministic: the same arguments give
    byte-identical weights and tokenizer. Runs in about a second on one CPU core. The folder is
    written to a temporary sibling and renamed into place, so an interrupted build never leaves
    a half-written model behind, and of several processes building the same folder at once the
    first to finish wins. Raises ``ValueError`` for inconsistent sizes or an unknown flavour.
    """
    if isinstance(flavour, str):
        if flavour not in _FLAVOURS:
            raise ValueError(f"unknown tiny Llama flavour {flavour!r}; known: {sorted(_FLAVOURS)}")
        flavour = _FLAVOURS[flavour]
    smallest = len(flavour.special_tokens) + 256
    if vocab_size < smallest:
        raise ValueError(f"vocab_size must be at least {smallest}, got {vocab_size}")
    if hidden_size % num_attention_heads:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")
    if num_attention_heads % num_key_value_heads:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    sizes = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "max_position_embeddings": max_position_embeddings,
        "initializer_range": initializer_range,
    }
    params: dict[str, Any] = {"format": _FORMAT_VERSION, **sizes, "seed": seed}
    params["corpus"] = "default" if corpus is None else "custom"
    if flavour is not CHATML:
        params["flavour"] = flavour.name
    if chat_template is not None:
        params["chat_template"] = hashlib.sha256(chat_template.encode()).hexdigest()
    out = Path(path)
    if not overwrite and _marker_matches(out, params):
        return out
    template = flavour.chat_template if chat_template is None else chat_template
    tokenizer = train_bpe_tokenizer(
        corpus_lines() if corpus is None else corpus,
        vocab_size,
        flavour.special_tokens,
        chat_template=template,
        **flavour.tokenizer_kwargs,
    )
    model = _random_llama(tokenizer, flavour, sizes, seed)
    with temporary_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(params, indent=1), encoding="utf-8")
        if out.exists() and (overwrite or not _marker_matches(out, params)):
            replace_folder(tmp, out)
        else:  # when another process built the same model first, theirs is kept
            rename_or_keep(tmp, out, lambda folder: _marker_matches(folder, params))
    return out


def _random_llama(tokenizer: Any, flavour: TinyFlavour, sizes: dict[str, Any], seed: int) -> Any:
    """A ``LlamaForCausalLM`` of ``sizes`` for ``tokenizer``, weights drawn with ``seed``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    multiple = flavour.vocab_multiple
    config = LlamaConfig(
        **{**sizes, "vocab_size": -(-len(tokenizer) // multiple) * multiple},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    stops = [tokenizer.convert_tokens_to_ids(token) for token in flavour.stop_tokens]
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stops or tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def _settings_hash() -> str:
    payload = json.dumps({**TINY_MODEL_SETTINGS, "build": _TINY_MODEL_BUILD}, sort_keys=True)
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
    target = root / f"tiny-llama-{_settings_hash()}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return str(target)
    return str(build_tiny_llama(target, **TINY_MODEL_SETTINGS))
