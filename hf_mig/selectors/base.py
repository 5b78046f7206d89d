"""The selector contract shared by every method, and the registry behind ``method=NAME``."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

from hf_mig.core.encoding import check_k
from hf_mig.core.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "SELECTORS",
    "BaseSelector",
    "Selector",
    "as_dataset",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "get_selector",
    "register_selector",
]


@runtime_checkable
class Selector(Protocol):
    """Configuration in ``__init__``; ``select_indices`` returns row indices in pick order and
    ``select`` the matching ``Dataset.select`` view (all columns kept)."""

    k: int

    def select_indices(self, dataset: Dataset) -> np.ndarray: ...

    def select(self, dataset: Dataset) -> Dataset: ...


def as_dataset(dataset: Dataset | DatasetDict, *, what: str = "selection") -> Dataset:
    """The ``Dataset`` a selector works on.

    * a ``datasets.Dataset`` is returned as it is;
    * a ``DatasetDict`` with exactly one split (what ``load_dataset(...)`` without ``split=``
      returns for a single data file) is that split; which one is logged (INFO);
    * a ``DatasetDict`` with several splits (or none) raises ``ValueError`` naming the splits:
      selection works on one split and picking it is the caller's choice, so pass it by name,
      e.g. ``ds["train"]``. There is no ``split=`` argument: indices are positions in the
      split given, as with any ``Dataset``.
    * an ``IterableDataset`` / ``IterableDatasetDict`` (``streaming=True``) or any other object
      raises ``TypeError`` naming what is accepted: selection needs the pool's length and
      random access to its rows.

    ``what`` names the caller in messages (e.g. ``"mig selection"``).
    """
    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, DatasetDict):
        splits = list(dataset)
        if len(splits) == 1:
            (name,) = splits
            logger.info(
                "%s: the DatasetDict has one split, %r (%d rows); selecting from it",
                what,
                name,
                len(dataset[name]),
            )
            return dataset[name]
        if not splits:
            raise ValueError(f"{what}: the DatasetDict has no splits, so no rows to select from")
        sizes = ", ".join(f"{name!r} ({len(dataset[name]):,} rows)" for name in splits)
        first = "train" if "train" in splits else splits[0]
        raise ValueError(
            f"{what}: the DatasetDict has {len(splits)} splits: {sizes}; selection works on one "
            f'split. Pass it by name, e.g. ds["{first}"], or load a single split with '
            f'load_dataset(..., split="{first}").'
        )
    accepted = "a datasets.Dataset, or a DatasetDict with exactly one split"
    if isinstance(dataset, (IterableDataset, IterableDatasetDict)):
        raise TypeError(
            f"{what}: got a streaming {type(dataset).__name__}; accepted: {accepted}. Selection "
            "needs the pool's length and random access to its rows: load it without "
            "streaming=True, or materialise it first (Dataset.from_generator or "
            "Dataset.from_list(list(ds))). MIG also selects from a pool larger than memory "
            "without loading it: MIGSelector.select_streaming(ds) or select_to_file(ds, out), "
            "or a Parquet path given to select_indices."
        )
    hint = ""
    module = type(dataset).__module__.split(".")[0]
    if module == "pandas":
        hint = " Convert it with Dataset.from_pandas(df)."
    elif isinstance(dataset, (list, tuple)):
        hint = " Convert rows with Dataset.from_list(rows)."
    elif isinstance(dataset, dict):
        hint = " Convert columns with Dataset.from_dict(columns)."
    elif module == "pyarrow":
        hint = " Convert a table with Dataset.from_dict(table.to_pydict())."
    raise TypeError(
        f"{what}: expected {accepted}, got {type(dataset).__module__}."
        f"{type(dataset).__qualname__}.{hint}"
    )


def _accepts_dataset_dict(method):
    """Wrap a selector method whose first argument is the pool so that it goes through
    :func:`as_dataset` first."""
    if getattr(method, "_resolves_dataset", False):
        return method

    @functools.wraps(method)
    def wrapper(self, dataset, *args, **kwargs):
        name = getattr(type(self), "method_name", type(self).__name__)
        return method(self, as_dataset(dataset, what=f"{name} selection"), *args, **kwargs)

    wrapper._resolves_dataset = True
    return wrapper


#: Methods of a selector whose first argument is the pool (see :class:`BaseSelector`).
POOL_METHODS = ("select_indices", "select", "rows")


def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` when it is an integer ``>= minimum`` (or ``None`` when
    ``allow_none``); otherwise ``ValueError`` naming the option ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        also = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{also}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a ``float`` when it is a finite real number within ``[low, high]`` (``low``
    excluded when ``open_low``; ``None``: unbounded); otherwise ``ValueError`` naming the option
    ``name`` and the range (``hint`` is added to the message)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    ok = number and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        if low is None and high is None:
            bounds = "a finite number"
        else:
            bounds = f"a number in {'(' if open_low else '['}{low}, {high}]"
        raise ValueError(f"{name} must be {bounds}{hint}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` when it is ``True`` or ``False``; otherwise ``TypeError`` naming ``name``."""
    if value not in (True, False):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` when it is one of ``choices``; otherwise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


#: Longest collection :meth:`BaseSelector.__repr__` shows item by item.
_REPR_ITEMS = 20


def _repr_value(value: Any) -> str:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)) and len(value) > _REPR_ITEMS:
        return f"<{type(value).__name__} of {len(value)} items>"
    return repr(value)


@dataclass(repr=False, eq=False)
class BaseSelector:
    """Shared plumbing: parameters, validation of ``k`` against the pool and ``select``.

    Parameters follow scikit-learn's convention: ``__init__`` stores each argument, unchanged,
    under its own name and does nothing else; :meth:`get_params`, :meth:`set_params` and
    ``repr`` read the names from the ``__init__`` signature, so ``type(s)(**s.get_params())``
    rebuilds an equal selector. Options are validated when the selection runs. Attributes set
    by a run end in ``_``.

    The parameters are declared once, as dataclass fields: ``k`` here (the one positional
    argument), each method's options in its class, keyword-only, with their defaults
    (``@dataclass(repr=False, eq=False, kw_only=True)``, so the ``repr`` stays this class's
    and selectors compare by identity). A subclass may also write its own ``__init__`` that
    stores its arguments.

    The pool argument of :data:`POOL_METHODS` (``select_indices``, ``select``, ``rows``), in
    this class and in every subclass that defines them, goes through :func:`as_dataset`: a
    ``Dataset``, or a ``DatasetDict`` with exactly one split (used as that split, logged);
    several splits raise ``ValueError`` naming them (pass ``ds["train"]``), streaming or other
    inputs ``TypeError``. Indices are positions in that split.
    """

    k: int

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in POOL_METHODS:
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, _accepts_dataset_dict(method))

    @classmethod
    def _param_names(cls) -> list[str]:
        """The ``__init__`` parameters, in signature order (``*args``/``**kwargs`` excluded)."""
        params = inspect.signature(cls.__init__).parameters.values()
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return [p.name for p in params if p.name != "self" and p.kind not in kinds]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Every ``__init__`` argument by name, as stored (``deep`` is accepted for
        scikit-learn compatibility; selectors hold no nested estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseSelector:
        """Set ``__init__`` arguments by name and return the selector; an unknown name raises
        ``ValueError`` listing the valid ones."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid parameters: "
                    f"{', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={_repr_value(v)}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({shown})"

    def _check_k(self, dataset: Dataset) -> int:
        return check_k(self.k, len(as_dataset(dataset)))

    def select_indices(self, dataset: Dataset) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @_accepts_dataset_dict
    def select(
        self,
        dataset: Dataset,
        push_to_hub: str | None = None,
        *,
        private: bool | None = None,
        overwrite: bool = False,
    ) -> Dataset:
        """The selected rows in pick order, as a ``Dataset.select`` view of ``dataset``.

        ``push_to_hub="user/name"`` also uploads them as the ``train`` split of that Hub
        dataset, with a dataset card stating the pool's fingerprint and size, this selector's
        options, label coverage and how to reproduce the selection (see :mod:`hf_mig.data.hub`).
        The id is checked before the work. ``private`` applies to a repository the upload
        creates; an existing repository is refused unless ``overwrite=True``. The token comes
        from ``HF_TOKEN`` or ``hf auth login``. A failed upload raises
        :class:`hf_mig.data.hub.HubPushError` (one line naming the repository and the cause) whose
        ``subset`` attribute holds the selection.
        """
        if push_to_hub is not None:
            from hf_mig.data.hub import check_repo_id

            check_repo_id(push_to_hub)
        indices = self.select_indices(dataset)
        subset = self.rows(dataset, indices)
        if push_to_hub is not None:
            from hf_mig.data.hub import push_selector_selection

            push_selector_selection(
                self, dataset, indices, subset, push_to_hub, private=private, overwrite=overwrite
            )
        return subset

    @_accepts_dataset_dict
    def rows(self, dataset: Dataset, indices: np.ndarray) -> Dataset:
        """``dataset.select(indices)``, plus any per-pick columns of the last selection
        (``indices`` must be what :meth:`select_indices` just returned for ``dataset``)."""
        return dataset.select(indices)


#: Selection method name -> selector class (:func:`register_selector`).
SELECTORS = Registry("selection method", attribute="method_name")


#: Class decorator adding a selector to :data:`SELECTORS` under a name (and setting its
#: ``method_name``): ``@register_selector("mine")``; another class under a taken name is a
#: ``ValueError``.
register_selector = SELECTORS.register


def get_selector(method: str, k: int, **options) -> Selector:
    """Instantiate the selector registered as ``method`` with ``k`` and its options; an
    unknown ``method`` is a ``ValueError`` listing the registered names."""
    return SELECTORS.lookup(method)(k=k, **options)
