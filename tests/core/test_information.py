"""``hf_mig.core.information``: x(S) and E(S) against a dense computation and the greedy trace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hf_mig.annotate.graph import LabelGraph
from hf_mig.core.encoding import encode_pool
from hf_mig.core.greedy import greedy_select
from hf_mig.core.information import LabelInformation, dataset_information, label_values
from hf_mig.core.objective import Objective

LABELS = ["code", "coding", "math", "poem"]
GRAPH = LabelGraph.from_edges(LABELS, [0, 1], [1, 0], [0.9, 0.9])
TABLE = pa.table(
    {
        "labels": [["code", "math"], ["coding"], ["poem", "poem"], [], ["math", "code", "x"]],
        "score": [2.0, 1.0, 3.0, 5.0, 0.5],
    }
)


def _dense(encoding, weights, propagation, rows) -> np.ndarray:
    v = np.zeros((encoding.num_rows, len(encoding.vocabulary)))
    for i in range(encoding.num_rows):
        v[i, encoding.label_ids[encoding.indptr[i] : encoding.indptr[i + 1]]] = 1.0
    return (weights[:, None] * v)[rows].sum(axis=0) @ propagation.toarray()


@pytest.mark.parametrize("norm", [False, True])
def test_x_matches_the_dense_definition(norm: bool) -> None:
    encoding = encode_pool(TABLE, LABELS)
    p = GRAPH.propagation_matrix(0.5)
    info = LabelInformation.build(encoding, p, norm=norm)
    np.testing.assert_array_equal(info.weights, encoding.weights(norm))
    for rows in ([0, 2], [4, 1, 0], list(range(5))):
        np.testing.assert_allclose(info.x(rows), _dense(encoding, info.weights, p, rows))
    np.testing.assert_allclose(info.x(), info.x(range(5)))
    objective = Objective(b=0.5)
    x = info.x([0, 1])
    np.testing.assert_allclose(label_values(x, objective), (x + 1e-6) ** 0.5)
    assert info.value([0, 1], objective) == pytest.approx(dataset_information(x, objective))


def test_identity_without_a_graph_and_shape_checked() -> None:
    encoding = encode_pool(TABLE, LABELS)
    info = LabelInformation.build(encoding)
    np.testing.assert_allclose(info.x([0]), [2.0, 0.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        LabelInformation.build(encoding, GRAPH.subgraph(LABELS[:2]).propagation_matrix(1.0))


def test_value_of_the_greedy_picks_is_the_end_of_its_trace() -> None:
    encoding = encode_pool(TABLE, LABELS)
    info = LabelInformation.build(encoding, GRAPH.propagation_matrix(1.0))
    objective = Objective()
    result = greedy_select(
        encoding.indptr, encoding.label_ids, info.weights, info.propagation, 3, objective
    )
    assert info.value(result.indices, objective) == pytest.approx(result.objective_trace[-1])
    assert info.value([], objective) == pytest.approx(result.initial_objective)
