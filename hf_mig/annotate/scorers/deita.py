"""DEITA scores (Liu et al., 2024): complexity of the query and quality of the response.

:class:`DeitaScorer` is a batched ``Dataset.map`` callable::

    scorer = DeitaScorer()        # hkust-nlp/deita-complexity-scorer + deita-quality-scorer
    ds = ds.map(scorer, batched=True, with_indices=True)
    # -> score, deita_complexity, deita_quality, deita_error, deita_truncated

For every turn ``j`` of a conversation (each user message and the assistant message that answers
it, ``""`` when none does, as DEITA's pipeline pairs them), the complexity scorer reads DEITA's
complexity prompt filled with the query, the quality scorer DEITA's quality prompt filled with
the query and the response, and each score is the expectation of ``1..6`` under the model's
next-token distribution restricted to the six digit tokens (a softmax over their six logits, as
the released DEITA scorer computes it). The row's ``score`` combines ``q_j * c_j`` over turns
by ``mean`` (default: the released MIG code) or ``sum`` (the original DEITA).

Digit tokens are looked up in the tokenizer, never hard-coded (:func:`digit_token_ids`).
Prompts are the raw DEITA templates tokenised as DEITA does (``tokenizer(text)``, so with the
tokenizer's BOS when it adds one); ``use_chat_template=True`` instead sends the filled template
as one user message through the tokenizer's chat template (for general chat models).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa

from hf_mig.annotate.base import Option, register_scorer
from hf_mig.annotate.scorers._lm import (
    MODEL_OPTIONS,
    MODEL_SOURCES,
    PROMPT_OPTIONS,
    ModelScorer,
    causal_logits,
    model_device,
    pad_batch,
)

__all__ = [
    "DEITA_COMPLEXITY_MODEL",
    "DEITA_COMPLEXITY_TEMPLATE",
    "DEITA_QUALITY_MODEL",
    "DEITA_QUALITY_TEMPLATE",
    "DeitaScorer",
    "PromptTooLongError",
    "digit_token_ids",
    "fit_template",
]

DEITA_COMPLEXITY_MODEL = "hkust-nlp/deita-complexity-scorer"
DEITA_QUALITY_MODEL = "hkust-nlp/deita-quality-scorer"

#: DEITA's complexity prompt (``deita.selection.scorer``, identical for its Llama and Mistral
#: scorers). Note the two spaces before the newline and the trailing space.
DEITA_COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user "
    "query. \n##Query: {instruction}  \n##Complexity: "
)
#: DEITA's quality prompt.
DEITA_QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response "
    "corresponding to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} "
    "\n##Quality: "
)

_SCORES = ("1", "2", "3", "4", "5", "6")


class PromptTooLongError(ValueError):
    """The template alone (with empty fields) does not fit the model's window."""


def digit_token_ids(tokenizer: Any, digits: Sequence[str] = _SCORES) -> list[int]:
    """The token id of each score digit, found from the tokenizer.

    Rule, per digit ``d``:

    1. the vocabulary entry spelled exactly ``d`` (``tokenizer.get_vocab()[d]``): the bare digit
       that follows DEITA's prompt, whose last character is a space (byte-level BPE such as
       GPT-2/Llama-3/SmolLM2, and SentencePiece such as Llama-2/Mistral, all have it);
    2. otherwise ``d`` is encoded without special tokens, leading pieces that decode to
       whitespace only are dropped (SentencePiece's ``"▁"`` prefix), and the single remaining
       piece is used when it decodes to ``d`` (a tokenizer that only has a leading-space variant
       such as ``"▁1"``).

    Raises ``ValueError`` naming the digit when neither gives one token, or when two digits
    share an id.
    """
    vocab = tokenizer.get_vocab()
    ids: list[int] = []
    for digit in digits:
        token_id = vocab.get(digit)
        if token_id is None:
            pieces = list(tokenizer.encode(digit, add_special_tokens=False))
            while len(pieces) > 1 and tokenizer.decode(pieces[:1]).strip() == "":
                pieces = pieces[1:]
            if len(pieces) == 1 and tokenizer.decode(pieces).strip() == digit:
                token_id = pieces[0]
            else:
                shown = tokenizer.convert_ids_to_tokens(pieces) if pieces else []
                raise ValueError(
                    f"score digit {digit!r} is not a single token of this tokenizer (no "
                    f"vocabulary entry {digit!r}; it encodes to {pieces} = {shown}); DEITA's "
                    "expectation needs one token per score 1..6"
                )
        ids.append(int(token_id))
    if len(set(ids)) != len(ids):
        raise ValueError(f"score digits {list(digits)} map to repeated token ids {ids}")
    return ids


def _encode(tokenizer: Any, text: str, chat: bool) -> list[int]:
    if chat:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def fit_template(
    tokenizer: Any,
    template: str,
    fields: dict[str, str],
    max_length: int,
    chat: bool = False,
) -> tuple[list[int], bool]:
    """Token ids of ``template.format(**fields)`` cut to at most ``max_length`` tokens.

    Returns ``(ids, truncated)``. When the whole prompt fits it is tokenised as one string, as
    DEITA does. Otherwise the template text is kept whole and the fields are shortened, by
    tokens, from their end: the shorter field stays whole when it fits in half of the room left,
    the longer one gets the rest (both get half otherwise); shortened fields are decoded back to
    text and the prompt re-tokenised, shrinking further until it fits. Raises
    :class:`PromptTooLongError` when the template with empty fields is already too long.
    """
    ids = _encode(tokenizer, template.format(**fields), chat)
    if len(ids) <= max_length:
        return ids, False
    names = [name for name in fields if fields[name]]
    pieces = {n: list(tokenizer.encode(fields[n], add_special_tokens=False)) for n in names}
    empty = _encode(tokenizer, template.format(**{n: "" for n in fields}), chat)
    if len(empty) >= max_length:
        raise PromptTooLongError(
            f"the prompt template alone takes {len(empty)} tokens, more than the window of "
            f"{max_length}"
        )
    slack = 0
    for _ in range(64):
        room = max_length - len(empty) - slack
        lengths = {n: len(pieces[n]) for n in names}
        keep = _share(lengths, max(room, 0))
        cut = dict(fields)
        for n in names:
            cut[n] = tokenizer.decode(pieces[n][: keep[n]]) if keep[n] else ""
        ids = _encode(tokenizer, template.format(**cut), chat)
        if len(ids) <= max_length:
            return ids, True
        slack += max(1, len(ids) - max_length)
    raise PromptTooLongError(f"could not cut the prompt to {max_length} tokens")


def _share(lengths: dict[str, int], room: int) -> dict[str, int]:
    """Split ``room`` tokens among fields: short fields whole first, the rest evenly."""
    keep = {n: 0 for n in lengths}
    left = dict(lengths)
    while left:
        even = room // len(left)
        short = [n for n, size in left.items() if size <= even]
        if not short:
            for k, n in enumerate(sorted(left)):
                keep[n] = even + (1 if k < room - even * len(left) else 0)
            return keep
        for n in short:
            keep[n] = left.pop(n)
            room -= keep[n]
    return keep


@register_scorer("deita")
class DeitaScorer(ModelScorer):
    """Batched ``Dataset.map`` callable writing DEITA complexity x quality scores.

    Args:
        complexity_model: model for the complexity prompt (Hub id, folder, ``.gguf`` path,
            ``"smollm2"`` or a loaded model). Default ``hkust-nlp/deita-complexity-scorer``.
        quality_model: model for the quality prompt. Default ``hkust-nlp/deita-quality-scorer``.
        model: one model for both prompts (overrides the two above), e.g. a general chat model.
        tokenizer: tokenizer id/folder when it differs from the model's (a loaded tokenizer when
            the models are loaded objects).
        reduce: ``"mean"`` (default, the released MIG code) or ``"sum"`` (original DEITA) over
            turns of ``quality * complexity``.
        batch_size: prompts per forward pass (prompts of a map batch are sorted by length).
        max_length: longest prompt in tokens; default and upper bound: the model's window.
            Longer prompts are cut (see :func:`fit_template`) and counted.
        padding_side: ``"left"`` (default; only the last position's logits are computed) or
            ``"right"`` (the last real token is gathered per row).
        dtype, device: see :mod:`hf_mig.annotate.scorers._lm` (``"auto"``: bf16 on GPUs, fp32 on
            CPU; worker ``r`` of ``with_rank=True`` on ``cuda:r``).
        complexity_template, quality_template: prompts with ``{instruction}`` (and ``{output}``);
            default DEITA's.
        use_chat_template: send the filled prompt as a user message through the tokenizer's chat
            template instead of raw text.
        messages_column: column of OpenAI-style messages.
        output_column: column for the combined score (default ``score``).
        trust_remote_code: passed to ``from_pretrained``.
        progress: show a tqdm bar over forward passes inside each map batch.

    Columns written, one value per row:

    * ``score`` (float or ``None``): ``reduce`` over turns of ``quality_j * complexity_j``;
    * ``deita_complexity``, ``deita_quality`` (list of float): per turn, in ``[1, 6]``;
    * ``deita_error`` (str or ``None``): why the row has no score (a malformed conversation, no
      user turn, a prompt that cannot fit, a forward pass that failed even alone, a non-finite
      result). A failed row's score is ``None``, never a default; its turns that did succeed keep
      their values, the others are ``None``. Failures are counted in :attr:`stats` and logged.
    * ``deita_truncated`` (int): how many of the row's prompts were cut to fit the window.
    """

    kind = "causal"
    prefix = "deita"
    score_columns = ("score", "deita_complexity", "deita_quality")
    low_score_meaning = "DEITA's lowest possible score is 1: complexity 1 x quality 1"
    options = (
        Option("model", f"one model for both prompts: {MODEL_SOURCES}"),
        *MODEL_OPTIONS,
        Option("complexity_model", "complexity scorer model"),
        Option("quality_model", "quality scorer model"),
        Option("reduce", "combine turns (default mean)", choices=("mean", "sum")),
        *PROMPT_OPTIONS,
    )

    def __init__(
        self,
        complexity_model: Any = DEITA_COMPLEXITY_MODEL,
        quality_model: Any = DEITA_QUALITY_MODEL,
        *,
        model: Any = None,
        tokenizer: Any = None,
        reduce: Literal["mean", "sum"] = "mean",
        batch_size: int = 16,
        max_length: int | None = None,
        padding_side: str = "left",
        dtype: str = "auto",
        device: str | None = "auto",
        complexity_template: str = DEITA_COMPLEXITY_TEMPLATE,
        quality_template: str = DEITA_QUALITY_TEMPLATE,
        use_chat_template: bool = False,
        messages_column: str = "messages",
        output_column: str = "score",
        trust_remote_code: bool = False,
        progress: bool = False,
    ) -> None:
        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        if "{instruction}" not in complexity_template:
            raise ValueError("complexity_template must contain {instruction}")
        if "{instruction}" not in quality_template or "{output}" not in quality_template:
            raise ValueError("quality_template must contain {instruction} and {output}")
        if model is not None:
            complexity_model = quality_model = model
        same = complexity_model is quality_model or (
            isinstance(complexity_model, (str, os.PathLike))
            and isinstance(quality_model, (str, os.PathLike))
            and str(complexity_model) == str(quality_model)
        )
        models = {"complexity_model": complexity_model}
        if not same:
            models["quality_model"] = quality_model
        config = self._arguments(locals())
        del config["model"]  # one model for both prompts is both roles
        self._init_common(config, models, tokenizer)
        if same:
            self._config["quality_model"] = self._config["complexity_model"]

    def _model_roles(self) -> list[str]:
        return ["complexity_model", "quality_model"]

    def output_types(self) -> dict[str, pa.DataType]:
        return {
            self._config["output_column"]: pa.float64(),
            "deita_complexity": pa.list_(pa.float64()),
            "deita_quality": pa.list_(pa.float64()),
            "deita_error": pa.string(),
            "deita_truncated": pa.int64(),
        }

    def _load(self, role: str, rank: int | None) -> tuple[Any, Any]:
        if (
            role == "quality_model"
            and "quality_model" not in self._objects
            and ("complexity_model" in self._objects)
        ):
            role = "complexity_model"  # one in-memory model serves both prompts
        return super()._load(role, rank)

    # ------------------------------------------------------------------ scoring

    def expectations(
        self, role: str, prompts: Sequence[list[int]], rank: int | None = None
    ) -> list[float | Exception]:
        """Expected score (``sum_d d * softmax(logits[digits])_d``) after each prompt (token
        ids), computed with the model of ``role`` (``"complexity_model"`` or
        ``"quality_model"``); a prompt whose forward pass failed gets the exception."""
        import torch

        model, tokenizer = self._load(role, rank)
        digits = torch.tensor(digit_token_ids(tokenizer), dtype=torch.long)
        values = torch.arange(1, 7, dtype=torch.float32)
        device = model_device(model)
        side = self._config["padding_side"]
        pad_id = self._pad_id(tokenizer)

        def forward(positions: list[int]) -> list[Any]:
            seqs = [prompts[p] for p in positions]
            ids, mask, pos = pad_batch(seqs, pad_id, side, device)
            if side == "left":
                last = causal_logits(model, ids, mask, pos, keep=1)[:, -1]
            else:
                full = causal_logits(model, ids, mask, pos, keep=None)
                rows = torch.arange(len(seqs), device=full.device)
                last = full[rows, mask.sum(-1).to(full.device) - 1]
            scores = last[:, digits.to(last.device)].float().cpu()
            expected = torch.softmax(scores, dim=-1) @ values
            out: list[Any] = []
            for value in expected.tolist():
                out.append(value if math.isfinite(value) else ValueError("non-finite digit logits"))
            return out

        role_name = role.split("_")[0]
        return self._run_batches(prompts, forward, desc=f"deita {role_name}")

    def _score_rows(
        self, rows: Sequence[Any], errors: list[str | None], rank: int | None
    ) -> dict[str, list]:
        chat = self._config["use_chat_template"]
        n = len(rows)
        pairs: list[list[tuple[str, str]]] = [row or [] for row in rows]
        for i in range(n):
            if errors[i] is None and not pairs[i]:
                errors[i] = "no user turn to score"
        truncated = [0] * n
        results: dict[str, list[list[Any]]] = {}
        for role, kind in (("complexity_model", "complexity"), ("quality_model", "quality")):
            template = self._config[f"{kind}_template"]
            wanted = [i for i in range(n) if errors[i] is None]
            if not wanted:
                results[kind] = [[] for _ in range(n)]
                continue
            model, tokenizer = self._load(role, rank)
            limit = self._max_length(model, tokenizer)
            prompts: list[list[int]] = []
            owners: list[tuple[int, int]] = []
            per_row: list[list[Any]] = [[None] * len(p) for p in pairs]
            for i in wanted:
                for j, (query, answer) in enumerate(pairs[i]):
                    fields = {"instruction": query}
                    if kind == "quality":
                        fields["output"] = answer
                    try:
                        ids, cut = fit_template(tokenizer, template, fields, limit, chat)
                    except ValueError as err:
                        per_row[i][j] = err
                        continue
                    truncated[i] += int(cut)
                    prompts.append(ids)
                    owners.append((i, j))
            values = self.expectations(role, prompts, rank) if prompts else []
            for (i, j), value in zip(owners, values, strict=True):
                per_row[i][j] = value
            results[kind] = per_row
        self.stats.turns += sum(len(p) for p in pairs)
        self.stats.truncated += sum(truncated)
        scores: list[float | None] = [None] * n
        complexity_out: list[list[float | None]] = []
        quality_out: list[list[float | None]] = []
        for i in range(n):
            comp = results["complexity"][i]
            qual = results["quality"][i]
            problems = []
            for j in range(len(comp)):
                for kind, value in (("complexity", comp[j]), ("quality", qual[j])):
                    if isinstance(value, Exception):
                        problems.append(f"turn {j} {kind}: {type(value).__name__}: {value}")
            if problems and errors[i] is None:
                errors[i] = "; ".join(problems)
            complexity_out.append([v if isinstance(v, float) else None for v in comp])
            quality_out.append([v if isinstance(v, float) else None for v in qual])
            if errors[i] is None:
                products = [q * c for q, c in zip(qual, comp, strict=True)]
                total = math.fsum(products)
                scores[i] = total / len(products) if self._config["reduce"] == "mean" else total
        return self._typed(
            {
                self._config["output_column"]: scores,
                "deita_complexity": complexity_out,
                "deita_quality": quality_out,
                "deita_error": errors,
                "deita_truncated": truncated,
            }
        )
