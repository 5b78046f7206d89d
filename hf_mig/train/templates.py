"""Training-compatible chat templates for the base models of the MIG paper.

Base checkpoints (Llama-3.1-8B, Qwen2.5-7B, Mistral-7B-v0.3) are not chat models: the recipe names
the conversation format to train them into, and :func:`apply_chat_template` installs it on the
tokenizer. Every template here wraps each assistant turn, *including its end-of-turn token*, in
``{% generation %} ... {% endgeneration %}``, so ``tokenizer.apply_chat_template(...,
return_assistant_tokens_mask=True)`` (what TRL's ``assistant_only_loss=True`` uses) marks exactly
the assistant tokens and the model learns to stop.

Where TRL ships the same training template (``trl/chat_templates/*_training.jinja``, what its
``get_training_chat_template`` returns), TRL's is used; the others are hf-mig's, each for a reason:

``llama3`` (Llama-3.1-8B, as in the paper): hf-mig's, because TRL's ``llama3_training`` trims
    every message (``| trim``), so the trained tokens would not be the data's.
    ``<|begin_of_text|>`` then ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>``
    per message; the assistant turn ends on ``<|eot_id|>``. No default system prompt and no
    "Cutting Knowledge Date" header (that header belongs to Meta's *Instruct* template; the
    paper trained base models with the plain llama3 format).

``qwen2.5`` (Qwen2.5-7B): TRL's ``qwen2_5_training``, because it renders the same text as
    hf-mig's ChatML with Qwen2.5's default system prompt for every conversation of system / user /
    assistant turns, with and without a generation prompt (checked in the tests); it also renders
    tools, and its generation span includes the newlines around the assistant content.
    ``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`` per message: the format of Qwen2.5's own Instruct
    models, whose ``<|im_start|>`` / ``<|im_end|>`` are already single special tokens of the
    *base* Qwen2.5 tokenizer, so nothing is added to the vocabulary. A conversation without a
    system message gets the default system prompt :data:`QWEN25_DEFAULT_SYSTEM` (prompt side,
    never trained on).

``mistral-v0.3`` (Mistral-7B-v0.3): hf-mig's, because TRL ships no Mistral template.
    Mistral's v3 instruct format ``<s>[INST] USER[/INST] ASSISTANT</s>[INST] USER[/INST] ...``:
    the v3 tokenizer of Mistral-7B-v0.3 has ``[INST]`` and ``[/INST]`` as control tokens, and it
    is the format of Mistral-7B-Instruct-v0.3. Mistral has no system role: as mistral-common
    does for v3, a system message is prepended (with a blank line) to the *last* user message.
    The assistant span is ``" " + content + "</s>"`` (the leading space is part of the first
    content token in the SentencePiece tokenizer).

``chatml``: hf-mig's, because TRL has no plain ChatML template (only model-specific ones with a
    default system prompt); ``qwen2.5``'s text without a default system prompt, for other base
    models.

Contracts: templates render ``messages`` with roles ``system`` / ``user`` / ``assistant`` and
string ``content``; ``add_generation_prompt=True`` ends with the assistant header. Every assistant
turn is one generation span holding the content and the template's end-of-turn token
(:attr:`ChatTemplate.end_of_turn`), then at most whitespace (``qwen2.5``: the newline after it).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_mig.models.tiny import LLAMA3_TEMPLATE

__all__ = [
    "QWEN25_DEFAULT_SYSTEM",
    "TEMPLATES",
    "ChatTemplate",
    "apply_chat_template",
    "assistant_spans",
    "check_training_template",
    "get_template",
    "trl_training_template",
]

#: Qwen2.5's default system prompt, used by the ``qwen2.5`` template when none is given.
QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

_LLAMA3 = LLAMA3_TEMPLATE


def _chatml(default_system: str | None) -> str:
    head = ""
    if default_system is not None:
        head = (
            "{%- if messages | length == 0 or messages[0]['role'] != 'system' %}"
            "{{- '<|im_start|>system\\n" + default_system + "<|im_end|>\\n' }}"
            "{%- endif %}"
        )
    return (
        head + "{%- for message in messages %}"
        "{%- if message['role'] == 'assistant' %}"
        "{{- '<|im_start|>assistant\\n' }}"
        "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
        "{{- '\\n' }}"
        "{%- else %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


_MISTRAL_V3 = (
    "{%- set ns = namespace(system='', last_user=-1) %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- set ns.system = message['content'] %}"
    "{%- elif message['role'] == 'user' %}"
    "{%- set ns.last_user = loop.index0 %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if ns.system and loop.index0 == ns.last_user %}"
    "{{- '[INST] ' + ns.system + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}"
    "{{- '[INST] ' + message['content'] + '[/INST]' }}"
    "{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{%- generation %}{{- ' ' + message['content'] + eos_token }}{%- endgeneration %}"
    "{%- endif %}"
    "{%- endfor %}"
)


def trl_training_template(name: str) -> str:
    """The text of TRL's ``trl/chat_templates/<name>_training.jinja`` (what
    ``trl.chat_template_utils.<name>_training_chat_template`` holds), read without importing
    TRL (whose package ``__init__`` and chat-template module import transformers)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'trl'", name="trl")
    folder = Path(next(iter(spec.submodule_search_locations)), "chat_templates")
    return (folder / f"{name}_training.jinja").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ChatTemplate:
    """A named training template and the tokens it relies on.

    ``special_tokens`` must each be one token of the model's vocabulary (checked by
    :func:`apply_chat_template`); ``end_of_turn`` is the token that closes an assistant turn
    (set it as ``eos_token`` in ``SFTConfig`` so generation stops there); ``pad_token`` is a
    suggestion for the model family (``None``: keep the tokenizer's).
    """

    name: str
    template: str
    special_tokens: tuple[str, ...]
    end_of_turn: str | None
    models: tuple[str, ...] = ()
    pad_token: str | None = None
    notes: str = ""
    uses_bos: bool = True


TEMPLATES: dict[str, ChatTemplate] = {
    "llama3": ChatTemplate(
        name="llama3",
        template=_LLAMA3,
        special_tokens=(
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        end_of_turn="<|eot_id|>",
        models=("meta-llama/Llama-3.1-8B",),
        pad_token="<|finetune_right_pad_id|>",
        notes="the paper's template for Llama-3.1-8B",
    ),
    "qwen2.5": ChatTemplate(
        name="qwen2.5",
        template=trl_training_template("qwen2_5"),
        special_tokens=("<|im_start|>", "<|im_end|>"),
        end_of_turn="<|im_end|>",
        models=("Qwen/Qwen2.5-7B",),
        pad_token="<|endoftext|>",
        notes="TRL's Qwen2.5 training template: ChatML with Qwen2.5's default system prompt",
        uses_bos=False,
    ),
    "chatml": ChatTemplate(
        name="chatml",
        template=_chatml(None),
        special_tokens=("<|im_start|>", "<|im_end|>"),
        end_of_turn="<|im_end|>",
        notes="ChatML without a default system prompt",
        uses_bos=False,
    ),
    "mistral-v0.3": ChatTemplate(
        name="mistral-v0.3",
        template=_MISTRAL_V3,
        special_tokens=("[INST]", "[/INST]"),
        end_of_turn=None,  # the tokenizer's eos_token (</s> for Mistral)
        models=("mistralai/Mistral-7B-v0.3",),
        notes="Mistral v3 instruct format, system prompt prepended to the last user turn",
    ),
}


def get_template(name_or_path: str | os.PathLike) -> ChatTemplate:
    """The template registered as ``name_or_path``, or one read from a ``.jinja`` / ``.j2`` file.

    A file template gets no special-token checks (``special_tokens=()``, ``end_of_turn=None``).
    Raises ``ValueError`` for an unknown name (listing the known ones) and ``ValueError`` for a
    file without ``{% generation %}`` markers.
    """
    key = os.fspath(name_or_path)
    if key in TEMPLATES:
        return TEMPLATES[key]
    path = Path(key).expanduser()
    if path.suffix in (".jinja", ".j2") and path.is_file():
        text = path.read_text(encoding="utf-8")
        if not _has_generation(text):
            raise ValueError(
                f"{path}: the chat template has no {{% generation %}} block, so assistant-only "
                "loss cannot find the assistant tokens"
            )
        return ChatTemplate(name=path.name, template=text, special_tokens=(), end_of_turn=None)
    raise ValueError(
        f"unknown chat template {key!r}: use one of {sorted(TEMPLATES)} or a path to a .jinja file"
    )


def _has_generation(text: str) -> bool:
    return re.search(r"\{%-?\s*generation\s*-?%\}", text) is not None


def apply_chat_template(tokenizer: Any, name_or_path: str | os.PathLike) -> ChatTemplate:
    """Install the named template on ``tokenizer`` (in place) and return it.

    Raises ``ValueError`` when a token the template relies on is not a single token of the
    tokenizer's vocabulary (e.g. the llama3 template on a Mistral tokenizer), or when the template
    uses ``bos_token`` / ``eos_token`` and the tokenizer has none.
    """
    template = get_template(name_or_path)
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in template.special_tokens if tok not in vocab]
    if missing:
        raise ValueError(
            f"chat template {template.name!r} needs the tokens {missing}, which are not in the "
            f"tokenizer's vocabulary ({type(tokenizer).__name__}, {len(vocab)} entries): pick the "
            f"template of this model family ({template.notes or 'see hf_mig.train.templates'})"
        )
    if template.uses_bos and "bos_token" in template.template and tokenizer.bos_token is None:
        raise ValueError(
            f"chat template {template.name!r} needs a bos_token; the tokenizer has none"
        )
    if "eos_token" in template.template and tokenizer.eos_token is None:
        raise ValueError(
            f"chat template {template.name!r} needs an eos_token; the tokenizer has none"
        )
    tokenizer.chat_template = template.template
    return template


def assistant_spans(input_ids: Sequence[int], mask: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges where ``mask`` is 1 (one per assistant turn if contiguous)."""
    spans: list[tuple[int, int]] = []
    start = None
    for i, bit in enumerate(mask):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(mask)))
    return spans


def check_training_template(
    tokenizer: Any, messages: Sequence[dict[str, str]], chat_template: str | None = None
) -> dict[str, Any]:
    """Render ``messages`` and check that the assistant mask covers exactly the assistant turns.

    Returns ``{"ok": bool, "problems": [...], "spans": [decoded assistant spans], "expected":
    [...]}``. ``ok`` means: one masked span per assistant message, and each span, decoded and
    stripped of surrounding whitespace, equals ``content + end-of-turn`` (likewise stripped),
    where the end-of-turn token is the text following the content in the rendering; and no
    token outside the spans is masked. The end-of-turn token must be masked (the model must
    learn to stop).
    """
    out = tokenizer.apply_chat_template(
        list(messages),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=chat_template,
    )
    ids = list(out["input_ids"])
    mask = list(out["assistant_masks"])
    spans = assistant_spans(ids, mask)
    decoded = [tokenizer.decode(ids[a:b], skip_special_tokens=False) for a, b in spans]
    contents = [m["content"] for m in messages if m["role"] == "assistant"]
    problems: list[str] = []
    if len(spans) != len(contents):
        problems.append(f"{len(spans)} masked spans for {len(contents)} assistant turns")
    for j, (text, content) in enumerate(zip(decoded, contents)):
        stripped = text.strip()
        if not stripped.startswith(content.strip()):
            problems.append(f"span {j} does not start with the assistant content: {text[:60]!r}")
            continue
        tail = stripped[len(content.strip()) :].strip()
        if not tail:
            problems.append(f"span {j} has no end-of-turn token after the content")
        elif tokenizer.convert_tokens_to_ids(tail) in (None, tokenizer.unk_token_id):
            problems.append(f"span {j} ends with {tail!r}, not a single end-of-turn token")
    return {"ok": not problems, "problems": problems, "spans": decoded, "expected": contents}
