"""Selection methods behind one contract (:class:`Selector`) and a registry."""

from .base import SELECTORS, BaseSelector, Selector, get_selector, register_selector
from .instag import InsTagSelector
from .mig import MIGSelector
from .random import RandomSelector
from .score import IFDSelector, ScoreSelector
from .zip import ZIPSelector

__all__ = [
    "SELECTORS",
    "BaseSelector",
    "IFDSelector",
    "InsTagSelector",
    "MIGSelector",
    "RandomSelector",
    "ScoreSelector",
    "Selector",
    "ZIPSelector",
    "get_selector",
    "register_selector",
]
