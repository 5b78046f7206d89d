"""Settings read from the environment, in one place.

Every ``HF_MIG_*`` variable that changes where hf-mig keeps files or how it runs is read here,
at call time (so a variable set after import still counts):

* ``HF_MIG_CACHE``: root of hf-mig's caches (:func:`cache_root`), default ``~/.cache/hf_mig``;
* ``HF_MIG_SHARED``: the project's shared data folder (:func:`shared_root`), unset by default;
* ``HF_MIG_DISABLE_NUMBA``: any value but empty or ``0`` runs the compiled kernels as plain
  Python (:func:`numba_disabled`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "DISABLE_NUMBA_ENV",
    "SHARED_ENV",
    "cache_root",
    "numba_disabled",
    "shared_root",
]

#: Environment variable naming the root of hf-mig's caches.
CACHE_ENV = "HF_MIG_CACHE"
#: Environment variable naming the project's shared data folder.
SHARED_ENV = "HF_MIG_SHARED"
#: Environment variable that turns numba compilation off.
DISABLE_NUMBA_ENV = "HF_MIG_DISABLE_NUMBA"

_DEFAULT_CACHE = "~/.cache/hf_mig"


def cache_root() -> Path:
    """Root of hf-mig's caches: ``$HF_MIG_CACHE`` when set and not empty, else
    ``~/.cache/hf_mig`` (``~`` expanded)."""
    return Path(os.environ.get(CACHE_ENV) or _DEFAULT_CACHE).expanduser()


def shared_root() -> Path | None:
    """``$HF_MIG_SHARED`` as an absolute path (``~`` expanded), or ``None`` when unset or
    empty."""
    value = os.environ.get(SHARED_ENV)
    return Path(value).expanduser().resolve() if value else None


def numba_disabled() -> bool:
    """Whether ``$HF_MIG_DISABLE_NUMBA`` asks for plain Python (set, not empty, not ``0``)."""
    return os.environ.get(DISABLE_NUMBA_ENV, "") not in ("", "0")
