"""The contract every registered selector keeps, checked on one small pool for each of them.

The pool (40 rows) carries what every method reads: labels, scores, IFD values, unit sample
embeddings and conversations, so no model is needed (MIG gets a label graph built here).
Checked for every entry of ``hf_mig.selectors.SELECTORS``: the bounds of ``k``, ``select`` as a
``Dataset.select`` view in pick order, determinism, a stable fingerprint, scikit-learn style
parameters (``type(s)(**s.get_params())`` rebuilds an equal selector) and pickling.
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
from datasets import Dataset

from hf_mig.annotate.graph import LabelGraph
from hf_mig.core.registry import Registry
from hf_mig.selectors import SELECTORS, BaseSelector, get_selector, register_selector

N = 40
K = 6
VOCABULARY = ["algebra", "code", "coding", "math", "poem", "python", "story", "travel"]
GRAPH = LabelGraph.from_edges(VOCABULARY, [1, 2, 0, 3], [2, 1, 3, 0], [0.95, 0.95, 0.92, 0.92])

#: Options that make each method run on the pool quickly.
OPTIONS: dict[str, dict] = {
    "mig": {"label_graph": GRAPH},
    "random": {"seed": 7},
    "score": {},
    "ifd": {},
    "instag": {},
    "zip": {"k1": 20, "k2": 10, "k3": 5},
    "deita": {"threshold": 0.99, "fill": True},
    "qdit": {"n_facilities": None},
    "kcenter": {},
    "car": {"n_clusters": 3},
}


@pytest.fixture(scope="module")
def pool(make_selector_pool) -> Dataset:
    return make_selector_pool(11, N, VOCABULARY)


def make(name: str, k: int = K) -> BaseSelector:
    return get_selector(name, k, **OPTIONS[name])


METHODS = sorted(SELECTORS)


def _buffers(dataset: Dataset) -> list[int]:
    """Addresses of the Arrow buffers behind a dataset's table."""
    return [
        buf.address
        for column in dataset.data.table.columns
        for chunk in column.chunks
        for buf in chunk.buffers()
        if buf is not None
    ]


def test_every_registered_selector_is_covered() -> None:
    assert set(OPTIONS) == set(SELECTORS)


def test_the_registry_names_each_selector_and_refuses_a_taken_name() -> None:
    assert isinstance(SELECTORS, Registry)
    for name, cls in SELECTORS.items():
        assert cls.method_name == name and SELECTORS.lookup(name) is cls
    assert register_selector("random")(SELECTORS["random"]) is SELECTORS["random"]
    with pytest.raises(ValueError, match="selection method 'random' is already registered"):
        register_selector("random")(type("Other", (BaseSelector,), {}))
    with pytest.raises(ValueError) as err:
        get_selector("best", K)
    assert str(err.value) == f"unknown selection method 'best'; available: {', '.join(METHODS)}"


@pytest.mark.parametrize("name", METHODS)
def test_k_bounds(name: str, pool: Dataset) -> None:
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        make(name, 0).select_indices(pool)
    with pytest.raises(ValueError, match=f"k = {N + 1} exceeds the pool size \\({N} rows\\)"):
        make(name, N + 1).select_indices(pool)
    with pytest.raises(TypeError, match="k must be an integer"):
        make(name, 2.5).select_indices(pool)


@pytest.mark.parametrize("name", METHODS)
def test_select_is_a_view_in_pick_order(name: str, pool: Dataset) -> None:
    selector = make(name)
    picks = np.asarray(selector.select_indices(pool))
    assert picks.dtype.kind == "i" and picks.shape == (K,)
    assert len(set(picks.tolist())) == K and 0 <= picks.min() and picks.max() < N
    subset = make(name).select(pool)
    assert subset["id"] == [pool["id"][i] for i in picks]
    assert set(pool.column_names) <= set(subset.column_names)
    if subset._indices is not None:  # a view: an indices mapping over the pool's own table
        assert subset._indices.column(0).to_pylist() == picks.tolist()
        assert _buffers(subset) == _buffers(pool)  # the pool's own Arrow buffers, not a copy
    else:  # datasets slices contiguous picks without a mapping (still no copy)
        assert picks.tolist() == list(range(picks[0], picks[0] + K))


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_with_a_stable_fingerprint(name: str, pool: Dataset) -> None:
    first, second = make(name).select(pool), make(name).select(pool)
    assert first["id"] == second["id"]
    assert first._fingerprint == second._fingerprint
    assert first._fingerprint != pool._fingerprint


@pytest.mark.parametrize("name", METHODS)
def test_params_read_from_the_signature(name: str, pool: Dataset) -> None:
    selector = make(name)
    params = selector.get_params()
    signature = inspect.signature(type(selector).__init__).parameters
    assert list(params) == [p for p in signature if p != "self"]
    assert params == selector.get_params(deep=True)
    rebuilt = type(selector)(**params)
    assert repr(rebuilt) == repr(selector)
    assert repr(selector).startswith(f"{type(selector).__name__}(k={K}, ")
    assert rebuilt.select_indices(pool).tolist() == selector.select_indices(pool).tolist()
    assert selector.set_params(k=3) is selector and selector.k == 3
    assert len(selector.select_indices(pool)) == 3
    with pytest.raises(ValueError, match="invalid parameter 'no_such_option'"):
        selector.set_params(no_such_option=1)


@pytest.mark.parametrize("name", METHODS)
def test_pickles_before_and_after_a_run(name: str, pool: Dataset) -> None:
    selector = make(name)
    fresh = pickle.loads(pickle.dumps(selector))
    assert repr(fresh) == repr(selector)
    picks = selector.select_indices(pool).tolist()
    assert fresh.select_indices(pool).tolist() == picks
    fitted = pickle.loads(pickle.dumps(selector))
    assert fitted.select_indices(pool).tolist() == picks
