"""numba's ``njit`` when numba is installed (and not disabled), else a no-op decorator.

Functions decorated here run compiled with numba, or as the same plain Python otherwise; each
keeps the plain version as ``.py_func``. Set ``HF_MIG_DISABLE_NUMBA=1`` to force plain Python.
"""

from __future__ import annotations

from hf_mig.core.config import numba_disabled

try:  # pragma: no cover - exercised when numba is installed
    if numba_disabled():
        raise ImportError("numba disabled by HF_MIG_DISABLE_NUMBA")
    import numba

    HAVE_NUMBA = True
    njit = numba.njit(cache=True, nogil=True)
    njit_inline = numba.njit(cache=True, nogil=True, inline="always")
except ImportError:  # pragma: no cover - exercised without numba
    HAVE_NUMBA = False

    def njit(fn):
        fn.py_func = fn
        return fn

    njit_inline = njit


def resolve_compiled(compiled: bool | None) -> bool:
    """Whether to run the compiled kernels: ``None`` when numba is installed; ``True`` needs it
    (``ImportError`` otherwise)."""
    if compiled is None:
        return HAVE_NUMBA
    if compiled and not HAVE_NUMBA:
        raise ImportError("compiled=True needs numba: pip install numba")
    return bool(compiled)
