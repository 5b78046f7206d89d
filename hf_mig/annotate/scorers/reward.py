"""Scores from any sequence-classification reward model (one output: the reward).

:class:`RewardModelScorer` is a batched ``Dataset.map`` callable::

    scorer = RewardModelScorer("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2")
    ds = ds.map(scorer, batched=True, with_indices=True)   # reward, score, reward_error, ...

The whole conversation (system, user and assistant messages, in order) is rendered with the
tokenizer's chat template when it has one (``apply_chat_template(messages, tokenize=False)``,
then tokenised without adding special tokens again), else as plain text
(``"User: ...\\n\\nAssistant: ..."`` paragraphs, tokenised with the tokenizer's special tokens).
The model's single logit for the sequence is the ``reward``.

The last real token is what a sequence-classification head reads. Sequences are padded on the
left, and for each forward pass the model's ``pad_token_id`` is set to a token id that occurs in
no sequence of that batch, so the head's "rightmost non-padding token" is always the true last
token, even when a conversation ends with the tokenizer's own padding/EOS token (the model's
configured ``pad_token_id`` is restored afterwards).

Longer conversations than the window are cut from the left (after their leading special tokens),
keeping the end of the conversation that the reward is about; cut rows are counted in
``reward_truncated``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from hf_mig.annotate.base import Option, register_scorer
from hf_mig.annotate.scorers._lm import (
    MODEL_OPTIONS,
    MODEL_SOURCES,
    ModelScorer,
    _accepts,
    model_device,
    pad_batch,
)
from hf_mig.data.conversations import clean_messages

__all__ = ["RewardModelScorer", "render_plain"]

_TRANSFORMS = (None, "sigmoid")


def render_plain(messages: Sequence[Mapping[str, Any]]) -> str:
    """``"System: ...\\n\\nUser: ...\\n\\nAssistant: ..."`` for a tokenizer without a chat
    template."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    parts = []
    for message in messages:
        role = str(message.get("role"))
        parts.append(f"{names.get(role, role.title())}: {message.get('content') or ''}")
    return "\n\n".join(parts)


@register_scorer("reward")
class RewardModelScorer(ModelScorer):
    """Batched ``Dataset.map`` callable writing a reward model's score of each conversation.

    Args:
        model: an ``AutoModelForSequenceClassification`` reward model with ``num_labels == 1``
            (Hub id, folder, or a loaded model with ``tokenizer=`` its loaded tokenizer).
        tokenizer: tokenizer id/folder when it differs from the model's.
        score_transform: ``"sigmoid"`` (default) also writes ``score = sigmoid(reward)`` in
            ``(0, 1)``, non-negative as MIG needs and in the reward's order; ``None`` writes only
            ``reward``.
        batch_size, max_length, dtype, device, messages_column, trust_remote_code, progress: as
            for :class:`~hf_mig.annotate.scorers.deita.DeitaScorer` (padding is always on the left).

    Columns: ``reward`` (float or ``None``), ``score`` (with ``score_transform``),
    ``reward_error`` (str or ``None``: malformed or empty conversation, a forward pass that failed
    even alone, a non-finite reward) and ``reward_truncated`` (0 or 1). A failed row gets
    ``None``, never a default; failures are counted in :attr:`stats` and logged.
    """

    kind = "reward"
    prefix = "reward"
    read = staticmethod(clean_messages)
    score_columns = ("reward", "score")
    options = (
        Option("model", f"sequence-classification reward model (required): {MODEL_SOURCES}"),
        *MODEL_OPTIONS,
    )
    low_score_meaning = "the reward model's least preferred conversation"

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        score_transform: str | None = "sigmoid",
        batch_size: int = 16,
        max_length: int | None = None,
        dtype: str = "auto",
        device: str | None = "auto",
        messages_column: str = "messages",
        output_column: str = "score",
        trust_remote_code: bool = False,
        progress: bool = False,
    ) -> None:
        if model is None:
            raise ValueError("RewardModelScorer needs a reward model (model=...)")
        if score_transform not in _TRANSFORMS:
            raise ValueError(
                f"score_transform must be one of {_TRANSFORMS}, got {score_transform!r}"
            )
        config = {**self._arguments(locals()), "padding_side": "left"}
        self._init_common(config, {"model": model}, tokenizer)

    def output_types(self) -> dict[str, pa.DataType]:
        types = {"reward": pa.float64()}
        if self._config["score_transform"] == "sigmoid":
            types[self._config["output_column"]] = pa.float64()
        return {**types, "reward_error": pa.string(), "reward_truncated": pa.int64()}

    def _load(self, role: str, rank: int | None) -> tuple[Any, Any]:
        model, tokenizer = super()._load(role, rank)
        labels = getattr(getattr(model, "config", None), "num_labels", 1)
        if labels != 1:
            raise ValueError(
                f"a reward model must have one output (num_labels == 1), this one has {labels}"
            )
        return model, tokenizer

    def encode(self, tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Token ids of one conversation (chat template when the tokenizer has one)."""
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(list(messages), tokenize=False)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(tokenizer(render_plain(messages), add_special_tokens=True)["input_ids"])

    def rewards(self, seqs: Sequence[list[int]], rank: int | None = None) -> list[Any]:
        """The reward of each token sequence (batched; a failed sequence gets its exception)."""
        import torch

        model, tokenizer = self._load("model", rank)
        device = model_device(model)
        vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
        config = (
            model.config.get_text_config()
            if hasattr(model.config, "get_text_config")
            else (model.config)
        )

        def forward(positions: list[int]) -> list[Any]:
            batch = [seqs[p] for p in positions]
            used = {t for s in batch for t in s}
            pad_id = next(t for t in range(vocab - 1, -1, -1) if t not in used)
            ids, mask, pos = pad_batch(batch, pad_id, "left", device)
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if _accepts(model.forward, "position_ids"):
                kwargs["position_ids"] = pos
            if _accepts(model.forward, "use_cache"):
                kwargs["use_cache"] = False
            saved = config.pad_token_id
            config.pad_token_id = pad_id
            try:
                with torch.inference_mode():
                    logits = model(**kwargs).logits
            finally:
                config.pad_token_id = saved
            values = logits.float().reshape(len(batch), -1)[:, 0].cpu().tolist()
            return [v if math.isfinite(v) else ValueError("non-finite reward") for v in values]

        return self._run_batches(seqs, forward, desc="reward")

    def _score_rows(
        self, rows: Sequence[Any], errors: list[str | None], rank: int | None
    ) -> dict[str, list]:
        n = len(rows)
        truncated = [0] * n
        seqs: list[list[int]] = []
        owners: list[int] = []
        model = tokenizer = None
        for i, clean in enumerate(rows):
            if clean is None:
                continue
            if not any(m["role"] == "assistant" for m in clean):
                errors[i] = "no assistant message to score"
                continue
            if model is None:
                model, tokenizer, limit, specials = self._load_window("model", rank)
            try:
                ids = self.encode(tokenizer, clean)
            except Exception as err:  # noqa: BLE001 - e.g. a chat template that rejects the row
                errors[i] = f"could not render the conversation: {type(err).__name__}: {err}"
                continue
            if len(ids) > limit:
                head = 0
                while head < len(ids) and head < limit // 2 and ids[head] in specials:
                    head += 1
                ids = ids[:head] + ids[len(ids) - (limit - head) :]
                truncated[i] = 1
            seqs.append(ids)
            owners.append(i)
        self.stats.turns += len(seqs)
        self.stats.truncated += sum(truncated)
        rewards: list[float | None] = [None] * n
        for i, value in zip(owners, self.rewards(seqs, rank) if seqs else [], strict=True):
            if isinstance(value, Exception):
                errors[i] = f"{type(value).__name__}: {value}"
            else:
                rewards[i] = value
        out: dict[str, list] = {"reward": rewards}
        if self._config["score_transform"] == "sigmoid":
            scores = [None if r is None else _sigmoid(r) for r in rewards]
            out[self._config["output_column"]] = scores
        out["reward_error"] = errors
        out["reward_truncated"] = truncated
        return self._typed(out)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
