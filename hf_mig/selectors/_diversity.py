"""Array helpers shared by the diversity selectors (k-center, QDIT, DEITA, CaR).

Every ranking here is deterministic: equal values go to the lowest row index.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_first", "first_argmax", "show_progress"]


def best_first(values: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Positions of ``values`` from the largest to the smallest; equal values by ``ids``
    ascending (default: by position)."""
    v = np.asarray(values, dtype=np.float64)
    keys = np.arange(v.size) if ids is None else ids
    return np.lexsort((keys, -v))


def first_argmax(values: np.ndarray, ids: np.ndarray) -> int:
    """Position of the largest value; among equal values the one with the lowest id."""
    top = values.max()
    tied = np.flatnonzero(values == top)
    if len(tied) == 1:
        return int(tied[0])
    return int(tied[np.argmin(ids[tied])])


def show_progress(progress: bool | None, work: float, threshold: float) -> bool:
    """Whether to show a progress bar: as asked, or (``progress=None``) when ``work`` reaches
    ``threshold``."""
    return bool(progress) if progress is not None else work >= threshold
