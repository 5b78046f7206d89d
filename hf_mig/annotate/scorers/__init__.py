"""Per-sample scores as batched ``Dataset.map`` callables.

Model-free: :class:`LengthScorer`, :class:`ConstantScorer`, :class:`LabelCountScorer`.
Model-based (the model is loaded lazily, once per process; see :mod:`hf_mig.annotate.scorers._lm`):
:class:`DeitaScorer` (DEITA complexity x quality), :class:`IFDScorer` (instruction-following
difficulty) and :class:`RewardModelScorer` (any sequence-classification reward model).
"""

from hf_mig.annotate.scorers.deita import DeitaScorer, digit_token_ids
from hf_mig.annotate.scorers.ifd import IFDScorer
from hf_mig.annotate.scorers.reward import RewardModelScorer
from hf_mig.annotate.scorers.simple import ConstantScorer, LabelCountScorer, LengthScorer

__all__ = [
    "ConstantScorer",
    "DeitaScorer",
    "IFDScorer",
    "LabelCountScorer",
    "LengthScorer",
    "RewardModelScorer",
    "digit_token_ids",
]
