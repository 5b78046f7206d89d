"""Per-sample scores as batched ``Dataset.map`` callables."""

from .simple import ConstantScorer, LabelCountScorer, LengthScorer

__all__ = ["ConstantScorer", "LabelCountScorer", "LengthScorer"]
