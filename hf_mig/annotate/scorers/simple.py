"""Model-free scorers: a length proxy for the demo and trivial scores for ablations.

Each is a batched ``Dataset.map`` callable reading an OpenAI-shaped ``messages`` column (or the
labels column) and returning ``{"score": [...]}``. They are cheap and deterministic; none of them
measures quality the way a DEITA or reward-model scorer does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _turn_pairs(messages: Sequence[dict]) -> list[tuple[str, str]]:
    """(user, assistant) text pairs; an unanswered user turn pairs with ''."""
    pairs: list[tuple[str, str]] = []
    user: str | None = None
    for message in messages:
        role = message.get("role")
        if role == "user":
            if user is not None:
                pairs.append((user, ""))
            user = message.get("content") or ""
        elif role == "assistant" and user is not None:
            pairs.append((user, message.get("content") or ""))
            user = None
    if user is not None:
        pairs.append((user, ""))
    return pairs


class LengthScorer:
    """``score`` = mean over turns of ``log2(1 + user words) * log2(1 + assistant words)``.

    A crude stand-in for DEITA's complexity x quality: longer requests tend to be more complex
    and longer answers tend to be rated higher by LLM judges. Rows with no answered turn score 0.
    """

    def __init__(self, messages_column: str = "messages", output_column: str = "score"):
        self.messages_column = messages_column
        self.output_column = output_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        scores = []
        for messages in batch[self.messages_column]:
            pairs = _turn_pairs(messages or [])
            values = [
                math.log2(1 + len(u.split())) * math.log2(1 + len(a.split())) for u, a in pairs
            ]
            scores.append(sum(values) / len(values) if values else 0.0)
        return {self.output_column: scores}

    def __repr__(self) -> str:
        return f"LengthScorer(messages_column={self.messages_column!r})"


class ConstantScorer:
    """Every row scores ``value`` (MIG then optimises label coverage alone)."""

    def __init__(self, value: float = 1.0, output_column: str = "score"):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"value must be finite and >= 0, got {value}")
        self.value = float(value)
        self.output_column = output_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        n = len(next(iter(batch.values()))) if batch else 0
        return {self.output_column: [self.value] * n}


class LabelCountScorer:
    """``score`` = number of labels of the row (the #InsTag complexity proxy)."""

    def __init__(self, labels_column: str = "labels", output_column: str = "score"):
        self.labels_column = labels_column
        self.output_column = output_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return {self.output_column: [float(len(x or [])) for x in batch[self.labels_column]]}
