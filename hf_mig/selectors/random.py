"""Uniform random selection, reproducing ``random.Random(seed).sample`` exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from hf_mig.selectors.base import BaseSelector, register_selector


@register_selector("random")
@dataclass(repr=False, eq=False, kw_only=True)
class RandomSelector(BaseSelector):
    """``k`` rows drawn without replacement by Python's ``random.Random(seed).sample``.

    With ``seed=42`` this is the paper's random baseline: the same indices as sampling the
    pool's list of records with ``random.Random(42).sample(records, k)``.
    """

    seed: int = 42

    def select_indices(self, dataset: Dataset) -> np.ndarray:
        k = self._check_k(dataset)
        picks = random.Random(self.seed).sample(range(len(dataset)), k)
        return np.asarray(picks, dtype=np.int64)
