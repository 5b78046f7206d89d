"""The selector contract shared by every method, and the registry behind ``method=NAME``."""

from __future__ import annotations

import functools
import logging
from typing import Protocol, runtime_checkable

import numpy as np
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

logger = logging.getLogger(__name__)

__all__ = [
    "SELECTORS",
    "BaseSelector",
    "Selector",
    "as_dataset",
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
            "Dataset.from_list(list(ds)))."
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


class BaseSelector:
    """Shared plumbing: validation of ``k`` against the pool and ``select`` from indices.

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

    def _check_k(self, dataset: Dataset) -> int:
        n = len(as_dataset(dataset))
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
