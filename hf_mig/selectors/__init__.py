"""Selection methods behind one contract (:class:`Selector`) and a registry."""

from hf_mig.selectors.base import (
    SELECTORS,
    BaseSelector,
    Selector,
    as_dataset,
    get_selector,
    register_selector,
)
from hf_mig.selectors.car import CaRSelector
from hf_mig.selectors.deita import DeitaSelector
from hf_mig.selectors.instag import InsTagSelector
from hf_mig.selectors.kcenter import KCenterSelector
from hf_mig.selectors.mig import MIGSelector
from hf_mig.selectors.qdit import QDITSelector
from hf_mig.selectors.random import RandomSelector
from hf_mig.selectors.ranking import IFDSelector, ScoreSelector
from hf_mig.selectors.zip import ZIPSelector

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
