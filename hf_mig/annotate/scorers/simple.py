"""Model-free scorers: a length proxy for the demo and trivial scores for ablations.

Each is a batched ``Dataset.map`` callable reading an OpenAI-shaped ``messages`` column (or the
labels column) and returning ``{"score": [...]}`` (float64). They are cheap and deterministic;
none of them measures quality the way a DEITA or reward-model scorer does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from hf_mig.annotate.base import ConfigValue, Option, Scorer, map_arguments, register_scorer
from hf_mig.data.conversations import conversation_pairs

__all__ = ["ConstantScorer", "LabelCountScorer", "LengthScorer", "SimpleScorer"]


class SimpleScorer(Scorer):
    """Base of the model-free scorers: one float64 column, ``output_column``."""

    output_column = ConfigValue("The score column.")

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.output_column: pa.float64()}

    def __call__(self, batch: Mapping[str, list], *args: Any) -> dict[str, list]:
        """Score one batch: ``{output_column: [float, ...]}``, one value per row."""
        map_arguments(args, type(self).__name__)
        scores = self._scores(batch)
        self.stats.rows += len(scores)
        return self._typed({self.output_column: scores})

    def _scores(self, batch: Mapping[str, list]) -> list[float]:
        raise NotImplementedError


@register_scorer("length")
class LengthScorer(SimpleScorer):
    """``score`` = mean over turns of ``log2(1 + user words) * log2(1 + assistant words)``.

    A crude stand-in for DEITA's complexity x quality: longer requests tend to be more complex
    and longer answers tend to be rated higher by LLM judges. Rows with no answered turn score 0.
    Turns are paired by :func:`hf_mig.data.conversations.conversation_pairs`; ``None`` and
    items that are not messages with a string role are read as no message.
    """

    low_score_meaning = (
        "LengthScorer gives 0 to a row with no turn having both a non-empty request and a "
        "non-empty answer"
    )
    low_score = 0.0

    messages_column = ConfigValue("Column of OpenAI-style messages.")

    def __init__(self, messages_column: str = "messages", output_column: str = "score"):
        self._setup({"messages_column": messages_column, "output_column": output_column})

    def _scores(self, batch: Mapping[str, list]) -> list[float]:
        column = self.messages_column
        scores = []
        for messages in batch[column]:
            pairs = conversation_pairs(messages, column, strict=False)
            values = [
                math.log2(1 + len(u.split())) * math.log2(1 + len(a.split())) for u, a in pairs
            ]
            scores.append(sum(values) / len(values) if values else 0.0)
        return scores


@register_scorer("constant")
class ConstantScorer(SimpleScorer):
    """Every row scores ``value`` (MIG then optimises label coverage alone)."""

    options = (Option("value", "the score of every row (default 1.0)", type=float),)

    def __init__(self, value: float = 1.0, output_column: str = "score"):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"value must be finite and >= 0, got {value}")
        self._setup({"value": float(value), "output_column": output_column})

    value = ConfigValue("The score of every row.")

    def _scores(self, batch: Mapping[str, list]) -> list[float]:
        n = len(next(iter(batch.values()))) if batch else 0
        return [self.value] * n


@register_scorer("label-count")
class LabelCountScorer(SimpleScorer):
    """``score`` = number of labels of the row (the #InsTag complexity proxy)."""

    options = (Option("labels_column", "column of labels to count (default labels)"),)

    labels_column = ConfigValue("Column of labels.")

    def __init__(self, labels_column: str = "labels", output_column: str = "score"):
        self._setup({"labels_column": labels_column, "output_column": output_column})

    def _scores(self, batch: Mapping[str, list]) -> list[float]:
        return [float(len(x or [])) for x in batch[self.labels_column]]
