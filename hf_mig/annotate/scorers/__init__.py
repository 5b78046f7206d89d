"""Per-sample scores as batched ``Dataset.map`` callables, registered by name in :data:`SCORERS`.

Model-free: :class:`LengthScorer` (``length``), :class:`ConstantScorer` (``constant``),
:class:`LabelCountScorer` (``label-count``). Model-based (the model is loaded lazily, once per
process; see :mod:`hf_mig.annotate.scorers._lm`): :class:`DeitaScorer` (``deita``: DEITA
complexity x quality), :class:`IFDScorer` (``ifd``: instruction-following difficulty) and
:class:`RewardModelScorer` (``reward``: any sequence-classification reward model).
"""

from hf_mig.annotate.base import SCORERS, get_scorer, register_scorer
from hf_mig.annotate.scorers.deita import DeitaScorer, digit_token_ids
from hf_mig.annotate.scorers.ifd import IFDScorer
from hf_mig.annotate.scorers.reward import RewardModelScorer
from hf_mig.annotate.scorers.simple import ConstantScorer, LabelCountScorer, LengthScorer
from hf_mig.annotate.tokens import TokenCounter

__all__ = [
    "SCORERS",
    "ConstantScorer",
    "DeitaScorer",
    "IFDScorer",
    "LabelCountScorer",
    "LengthScorer",
    "RewardModelScorer",
    "TokenCounter",
    "digit_token_ids",
    "get_scorer",
    "register_scorer",
]
