"""Selection methods behind one contract (:class:`Selector`) and a registry."""

from .base import SELECTORS, BaseSelector, Selector, get_selector, register_selector
from .mig import MIGSelector
from .random import RandomSelector

__all__ = [
    "SELECTORS",
    "BaseSelector",
    "MIGSelector",
    "RandomSelector",
    "Selector",
    "get_selector",
    "register_selector",
]
