"""A selection's token budget and per-group quotas as a recipe gives them, checked when the recipe
is loaded: every error names the recipe field (``selection_budget``, ``selection_quotas.math``,
``selection_options.quotas.code``, ...) before any data is read.

The options are the selector's own (:class:`hf_mig.selectors.mig.MIGSelector`): ``budget`` (a
finite number ``> 0``), ``cost_column``, ``quotas`` (``{group: (min, max)}``, each bound a count
(an integer ``>= 0``), a share of ``k`` (a number with a point, in ``[0, 1]``) or ``None``) and
``quota_column``. YAML gives quotas as ``{math: [10, 50], code: [0.1, 0.3], other: [null, 100]}``;
:func:`check_constraints` returns them as ``{"math": (10, 50), ...}``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hf_mig.core.budget import check_budget
from hf_mig.core.quotas import quota_bounds

__all__ = ["CONSTRAINT_OPTIONS", "check_constraints"]

#: The selector options that bound a selection besides ``k``.
CONSTRAINT_OPTIONS = ("budget", "cost_column", "quotas", "quota_column")
#: Rows per group assumed when only the quotas are checked (the pool is not read yet).
_ANY_SIZE = np.iinfo(np.int64).max // 4


def _check_bound(value: Any, field: str, side: str) -> None:
    """One side of a quota: ``None``, a count (int >= 0) or a share (float in [0, 1])."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{field}: {side} must be a count (an integer >= 0), a share of selection_k (a "
            f"number with a point in [0, 1], e.g. 0.25) or null; got {value!r}"
        )
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{field}: {side} must be a count >= 0, got {value}")
    if isinstance(value, float) and not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"{field}: {side} {value!r} is a share of selection_k (a number with a point) and "
            "must lie in [0, 1]; write a count without a point (e.g. 10)"
        )


def _quotas(value: Any, field: str, k: int | None) -> dict[str, tuple[Any, Any]]:
    """``{group: (min, max)}`` from a mapping of two-item lists, each bound checked; with ``k``,
    also each group's ``min <= max`` and the minimums' sum ``<= k``."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            f"{field} must map each group to [min, max], e.g. {{math: [10, 50], code: [0.1, "
            f"0.3]}}; got {value!r}"
        )
    out: dict[str, tuple[Any, Any]] = {}
    for group, bounds in value.items():
        where = f"{field}.{group}"
        if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2):
            raise ValueError(f"{where} must be [min, max] (null for no bound), got {bounds!r}")
        _check_bound(bounds[0], where, "min")
        _check_bound(bounds[1], where, "max")
        out[str(group)] = (bounds[0], bounds[1])
    if k is not None:  # each min <= max, the minimums' sum <= k: as counts of k
        try:
            quota_bounds(out, list(out), [_ANY_SIZE] * len(out), k, fill_k=False)
        except ValueError as err:
            text = str(err)
            for group in out:
                prefix = f"quotas[{group!r}]: "
                if text.startswith(prefix):
                    text = text.removeprefix(prefix)
                    raise ValueError(f"{field}.{group}: {text} (selection_k = {k})") from None
            raise ValueError(f"{field}: {text.removeprefix('quotas: ')}") from None
    return out


def _check_method(method: str | None, given: list[str], name: Callable[[str], str]) -> None:
    """Refuse a budget or quotas for a registered method that has no such option."""
    from hf_mig.selectors import SELECTORS

    cls = SELECTORS.get(method) if method else None
    if cls is None:  # unknown methods are refused when the selection runs
        return

    def accepts(c: type, option: str) -> bool:
        return option in inspect.signature(c.__init__).parameters

    for option in given:
        if not accepts(cls, option):
            takers = sorted(m for m, c in SELECTORS.items() if accepts(c, option))
            raise ValueError(
                f"{name(option)}: method {method!r} takes no {option!r} option (methods that "
                f"do: {', '.join(takers) or 'none'})"
            )


def check_constraints(
    options: Mapping[str, Any],
    *,
    k: int | None,
    method: str | None,
    name: Callable[[str], str],
) -> dict[str, Any]:
    """``options`` with the budget as a ``float`` and the quotas as ``{group: (min, max)}``,
    once they are valid; other options are returned unchanged.

    ``k``: the selection's ``k`` (``None`` when not known: the checks that need it are left to
    the selector); ``method``: the selection method (a registered method without a ``budget``
    or ``quotas`` option is refused when given one); ``name(option)``: the recipe field an
    option came from, used in every error. Raises ``ValueError``.
    """
    out = dict(options)
    given = [option for option in CONSTRAINT_OPTIONS if options.get(option) is not None]
    if "budget" in given:
        try:
            out["budget"] = check_budget(options["budget"])
        except ValueError as err:
            raise ValueError(f"{name('budget')}: {err}") from None
    for option in ("cost_column", "quota_column"):
        value = options.get(option)
        if option in given and (not isinstance(value, str) or not value):
            raise ValueError(f"{name(option)} must be a column name, got {value!r}")
    if "quotas" in given:
        out["quotas"] = _quotas(options["quotas"], name("quotas"), k)
    _check_method(method, given, name)
    return out
