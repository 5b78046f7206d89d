"""Selection methods behind one contract (:class:`Selector`) and a registry."""

from .base import (
    SELECTORS,
    BaseSelector,
    Selector,
    as_dataset,
    get_selector,
    register_selector,
)
from .car import CaRSelector
from .deita import DeitaSelector
from .instag import InsTagSelector
from .kcenter import KCenterSelector
from .mig import MIGSelector
from .qdit import QDITSelector
from .random import RandomSelector
from .score import IFDSelector, ScoreSelector
from .zip import ZIPSelector

__all__ = [
    "SELECTORS",
    "BaseSelector",
    "CaRSelector",
    "DeitaSelector",
    "IFDSelector",
    "InsTagSelector",
    "KCenterSelector",
    "MIGSelector",
    "QDITSelector",
    "RandomSelector",
    "ScoreSelector",
    "Selector",
    "ZIPSelector",
    "as_dataset",
    "get_selector",
    "register_selector",
]
