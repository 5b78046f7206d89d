"""The selector contract shared by every method, and the registry behind ``method=NAME``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from datasets import Dataset


@runtime_checkable
class Selector(Protocol):
    """Configuration in ``__init__``; ``select_indices`` returns row indices in pick order and
    ``select`` the matching ``Dataset.select`` view (all columns kept)."""

    k: int

    def select_indices(self, dataset: Dataset) -> np.ndarray: ...

    def select(self, dataset: Dataset) -> Dataset: ...


class BaseSelector:
    """Shared plumbing: validation of ``k`` against the pool and ``select`` from indices."""

    k: int

    def _check_k(self, dataset: Dataset) -> int:
        n = len(dataset)
        k = self.k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer, got {type(k).__name__}: {k!r}")
        if k <= 0:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > n:
            raise ValueError(f"k = {k} exceeds the pool size ({n} rows)")
        return int(k)

    def select_indices(self, dataset: Dataset) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def select(self, dataset: Dataset) -> Dataset:
        """The selected rows in pick order, as a ``Dataset.select`` view of ``dataset``."""
        return self.rows(dataset, self.select_indices(dataset))

    def rows(self, dataset: Dataset, indices: np.ndarray) -> Dataset:
        """``dataset.select(indices)``, plus any per-pick columns of the last selection
        (``indices`` must be what :meth:`select_indices` just returned for ``dataset``)."""
        return dataset.select(indices)


SELECTORS: dict[str, type] = {}


def register_selector(name: str):
    """Class decorator adding a selector to the registry under ``name``."""

    def deco(cls):
        if name in SELECTORS and SELECTORS[name] is not cls:
            raise ValueError(f"selector {name!r} is already registered to {SELECTORS[name]}")
        SELECTORS[name] = cls
        cls.method_name = name
        return cls

    return deco


def get_selector(method: str, k: int, **options) -> Selector:
    """Instantiate the selector registered as ``method`` with ``k`` and its options."""
    try:
        cls = SELECTORS[method]
    except KeyError:
        raise ValueError(
            f"unknown selection method {method!r}; available: {', '.join(sorted(SELECTORS))}"
        ) from None
    return cls(k=k, **options)
