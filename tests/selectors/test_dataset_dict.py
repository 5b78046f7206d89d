"""Every registered selector and ``hf_mig.select`` on what ``datasets`` users hand them.

``load_dataset(path)`` without ``split=`` returns a ``DatasetDict``; with one split it is used as
that split (and the split is logged), with several the error names them and says how to pass
one; streaming datasets and other objects get a ``TypeError`` naming what is accepted. The pool
is generated here (40 rows: labels, scores, IFD values, sample embeddings and conversations) so
that every method runs on it without a model: MIG gets a callable label embedder, the embedding
selectors read the ``embedding`` column.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, IterableDatasetDict

import hf_mig
from hf_mig.selectors import SELECTORS, BaseSelector, as_dataset, get_selector

N = 40
K = 5
VOCABULARY = ["code", "coding", "python", "math", "algebra", "poem", "story", "travel"]


def _label_vector(label: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(16)


def label_embedder(labels: list[str]) -> np.ndarray:
    """Deterministic label vectors; "coding" sits next to "code", "algebra" next to "math"."""
    alias = {"coding": "code", "algebra": "math"}
    out = []
    for label in labels:
        v = _label_vector(alias.get(label, label))
        if label in alias:
            v = v + 0.05 * _label_vector(label)
        out.append(v)
    return np.array(out)


#: Options that make each method run on the generated pool quickly.
OPTIONS: dict[str, dict] = {
    "mig": {"embedder": label_embedder, "threshold": 0.9},
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
    return make_selector_pool(0, N, VOCABULARY)


def make(name: str):
    return get_selector(name, K, **OPTIONS[name])


def test_every_registered_selector_is_covered():
    assert set(OPTIONS) == set(SELECTORS)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_one_split_dataset_dict_is_that_split(name, pool, caplog):
    expected = make(name).select_indices(pool)
    assert len(expected) == K
    ids = [pool[int(i)]["id"] for i in expected]
    for split in ("train", "validation"):
        dd = DatasetDict({split: pool})
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hf_mig.selectors.base"):
            got = make(name).select_indices(dd)
        assert got.tolist() == expected.tolist()
        notes = [r.getMessage() for r in caplog.records if r.name == "hf_mig.selectors.base"]
        assert notes == [
            f"{name} selection: the DatasetDict has one split, {split!r} ({N} rows); "
            "selecting from it"
        ]
        subset = make(name).select(dd)
        assert isinstance(subset, Dataset) and subset["id"] == ids
        via_api = hf_mig.select(dd, K, method=name, **OPTIONS[name])
        assert isinstance(via_api, Dataset) and via_api["id"] == ids


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_several_splits_are_refused_naming_them(name, pool):
    dd = DatasetDict(train=pool, test=pool.select(range(10)))
    message = (
        r"the DatasetDict has 2 splits: 'train' \(40 rows\), 'test' \(10 rows\); selection "
        r'works on one split\. Pass it by name, e\.g\. ds\["train"\]'
    )
    with pytest.raises(ValueError, match=message):
        make(name).select_indices(dd)
    with pytest.raises(ValueError, match=message):
        make(name).select(dd)
    with pytest.raises(ValueError, match=message):
        hf_mig.select(dd, K, method=name, **OPTIONS[name])
    # Without a "train" split the hint names the first one.
    with pytest.raises(ValueError, match=r'ds\["dev"\]'):
        make(name).select(DatasetDict(dev=pool, test=pool))


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_streaming_and_other_inputs_get_a_type_error(name, pool):
    accepted = "accepted: a datasets.Dataset, or a DatasetDict with exactly one split"
    streaming = pool.to_iterable_dataset()
    for value in (streaming, IterableDatasetDict(train=streaming)):
        with pytest.raises(TypeError, match=f"got a streaming {type(value).__name__}; {accepted}"):
            make(name).select_indices(value)
        with pytest.raises(TypeError, match="streaming=True"):
            hf_mig.select(value, K, method=name, **OPTIONS[name])
    with pytest.raises(TypeError, match=r"got pandas\.DataFrame\. .*Dataset\.from_pandas"):
        make(name).select(pool.to_pandas())
    with pytest.raises(TypeError, match=r"got builtins\.list\. .*Dataset\.from_list"):
        make(name).select(pool.to_list())


def test_empty_dataset_dict_is_refused():
    with pytest.raises(ValueError, match="the DatasetDict has no splits"):
        hf_mig.select(DatasetDict(), 1, method="random")


def test_rows_of_a_one_split_dataset_dict(pool):
    selector = make("mig")
    dd = DatasetDict(train=pool)
    indices = selector.select_indices(dd)
    assert selector.rows(dd, indices)["id"] == pool.select(indices)["id"]


def test_subclasses_defined_outside_the_package_accept_a_dataset_dict(pool):
    class FirstRows(BaseSelector):
        def __init__(self, k: int):
            self.k = k

        def select_indices(self, dataset: Dataset) -> np.ndarray:
            k = self._check_k(dataset)
            assert isinstance(dataset, Dataset)
            return np.arange(k)

    class LastRows(FirstRows):
        def select_indices(self, dataset: Dataset) -> np.ndarray:
            return super().select_indices(dataset)[::-1] + len(dataset) - self.k

    dd = DatasetDict(train=pool)
    assert FirstRows(3).select(dd)["id"] == ["r00", "r01", "r02"]
    assert LastRows(2).select_indices(dd).tolist() == [N - 1, N - 2]
    with pytest.raises(ValueError, match="FirstRows selection: the DatasetDict has 2 splits"):
        FirstRows(3).select(DatasetDict(a=pool, b=pool))


def test_as_dataset_returns_a_dataset_unchanged(pool):
    assert as_dataset(pool) is pool
    assert as_dataset(DatasetDict(only=pool)) is pool
