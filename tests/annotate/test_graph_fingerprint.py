"""``LabelGraph.fingerprint``: one for equal content, another for any change a selection sees."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hf_mig.annotate.graph import LabelGraph

LABELS = ["a", "b", "c", "d"]


def _graph(rows=(0,), cols=(1,), weights=(0.9,), labels=LABELS, threshold=0.8, **kw) -> LabelGraph:
    return LabelGraph.from_edges(
        labels, rows, cols, weights, threshold=threshold, symmetrize=True, **kw
    )


def test_equal_content_has_one_fingerprint(tmp_path):
    graph = _graph()
    path = tmp_path / "g.npz"
    graph.save(path)
    loaded = LabelGraph.load(path)
    assert loaded is not graph
    assert graph.fingerprint() == loaded.fingerprint() == LabelGraph.load(path).fingerprint()
    assert graph.fingerprint().startswith("sha256:")
    # metadata and the cached label index are not content
    assert _graph(metadata={"embedder": "x"}).fingerprint() == graph.fingerprint()
    graph.index  # noqa: B018 - fills the cached index
    assert graph.fingerprint() == loaded.fingerprint()
    # an explicit zero entry propagates nothing
    w = graph.weights.tocoo()
    data = np.concatenate([w.data, [0.0, 0.0]])
    rows, cols = np.concatenate([w.row, [2, 3]]), np.concatenate([w.col, [3, 2]])
    zero = LabelGraph(LABELS, sp.csr_matrix((data, (rows, cols)), shape=w.shape), threshold=0.8)
    assert zero.weights.nnz == graph.weights.nnz + 2
    assert zero.fingerprint() == graph.fingerprint()


def test_any_change_a_selection_sees_changes_the_fingerprint():
    base = _graph()
    others = [
        _graph(rows=(2,), cols=(3,)),  # same counts, other edge
        _graph(weights=(0.85,)),
        _graph(labels=["a", "b", "d", "c"]),  # same labels, other order
        _graph(labels=["a", "b", "c", "e"]),
        _graph(threshold=0.7),
        _graph(threshold=None),
        _graph(rows=(0, 2), cols=(1, 3), weights=(0.9, 0.9)),
    ]
    prints = {base.fingerprint(), *(g.fingerprint() for g in others)}
    assert len(prints) == len(others) + 1
    # the same edge given from its other end is the same graph
    swapped = _graph(rows=(1,), cols=(0,), weights=(np.float64(0.9),))
    assert swapped.fingerprint() == base.fingerprint()
