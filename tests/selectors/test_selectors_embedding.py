"""The embedding-based selectors (deita, qdit, kcenter, car) and :mod:`hf_mig.annotate.embeddings`.

Hand-checkable cases use tiny explicit unit vectors whose dot products are exact in float32;
the expected picks are worked out in the comments. Exactness tests compare the block-wise /
lazy implementations with plain sequential loops written here. The real-pool tests embed LIMA
plus the Alpaca-GPT4 demo with the offline all-MiniLM-L6-v2 (once per session, shared with the
report tests; the ``datasets`` cache keeps it for later runs).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset, concatenate_datasets
from datasets.table import InMemoryTable

import hf_mig
from hf_mig.annotate.embeddings import (
    SampleEmbedder,
    embedding_matrix,
    ensure_embeddings,
    max_similarity_to_set,
    nearest_centres,
    read_scores,
    update_min_distance,
)
from hf_mig.selectors import (
    SELECTORS,
    CaRSelector,
    DeitaSelector,
    KCenterSelector,
    QDITSelector,
    get_selector,
)
from hf_mig.selectors.car import car_rank, pca_fit
from hf_mig.selectors.deita import deita_filter
from hf_mig.selectors.kcenter import farthest_first
from hf_mig.selectors.qdit import qdit_greedy

METHODS = ("deita", "qdit", "kcenter", "car")


def _pool(vectors, scores=None, **columns) -> Dataset:
    data = {"embedding": [list(map(float, v)) for v in vectors]}
    if scores is not None:
        data["score"] = list(map(float, scores))
    data.update(columns)
    return Dataset.from_dict(data)


def _clustered(n: int, dim: int, seed: int, spread: float = 0.35) -> np.ndarray:
    """Unit vectors in loose clusters (pairwise cosines spread over [-0.3, 1])."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 6), dim))
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- registry
def test_methods_are_registered() -> None:
    expected = {
        "deita": DeitaSelector,
        "qdit": QDITSelector,
        "kcenter": KCenterSelector,
        "car": CaRSelector,
    }
    pool = _pool(_clustered(24, 6, seed=11), scores=np.arange(24.0) % 7)
    for name, cls in expected.items():
        assert SELECTORS[name] is cls
        sel = get_selector(name, 3)
        assert type(sel) is cls and sel.k == 3
        # the Selector contract itself, not only its method names: k distinct row indices in
        # pick order, and select() is those rows in that order
        picks = sel.select_indices(pool)
        assert isinstance(picks, np.ndarray) and picks.dtype.kind == "i", (name, picks)
        assert len(set(picks.tolist())) == 3 and 0 <= picks.min() and picks.max() < len(pool)
        assert sel.select(pool)["embedding"] == [pool["embedding"][i] for i in picks.tolist()]


# ----------------------------------------------------------------------------- DEITA
# Unit vectors in the plane (dot products exact to float32 rounding):
#   r0 = (1, 0)      score 5
#   r1 = (0.8, 0.6)  score 4   cos(r0, r1) = 0.8
#   r2 = (0.6, 0.8)  score 3   cos(r0, r2) = 0.6, cos(r1, r2) = 0.96
#   r3 = (0, 1)      score 2   cos with r0, r1, r2 = 0, 0.6, 0.8
#   r4 = (-1, 0)     score 1   cos with r0..r3 = -1, -0.8, -0.6, 0
PLANE = [(1, 0), (0.8, 0.6), (0.6, 0.8), (0, 1), (-1, 0)]
PLANE_SCORES = [5, 4, 3, 2, 1]


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_deita_hand_checked(batch_size: int) -> None:
    pool = _pool(PLANE, PLANE_SCORES)
    # T = 0.9: keep r0, keep r1 (0.8 < 0.9), drop r2 (0.96 with r1), keep r3 (max 0.6), keep r4.
    sel = DeitaSelector(k=4, threshold=0.9, batch_size=batch_size)
    assert sel.select_indices(pool).tolist() == [0, 1, 3, 4]
    assert (sel.n_examined_, sel.n_rejected_, sel.n_filled_) == (5, 1, 0)
    assert sel.max_similarity_[0] == -np.inf
    assert sel.max_similarity_[1:].tolist() == pytest.approx([0.8, 0.6, 0.0], abs=1e-6)
    # T = 0.7: keep r0, drop r1 (0.8), keep r2 (0.6), drop r3 (0.8 with r2), keep r4.
    sel = DeitaSelector(k=3, threshold=0.7, batch_size=batch_size)
    assert sel.select_indices(pool).tolist() == [0, 2, 4]
    # k = 2 stops after r2: r3 and r4 are never visited.
    sel = DeitaSelector(k=2, threshold=0.7, batch_size=batch_size)
    assert sel.select_indices(pool).tolist() == [0, 2]
    assert (sel.n_examined_, sel.n_rejected_) == (3, 1)


def test_deita_runs_out_raises_or_fills() -> None:
    pool = _pool(PLANE, PLANE_SCORES)
    with pytest.raises(ValueError, match="only 3 of 5 rows.*fill=True"):
        DeitaSelector(k=4, threshold=0.7).select_indices(pool)
    # fill: the best rejected row by score is r1 (4), then r3 (2).
    sel = DeitaSelector(k=5, threshold=0.7, fill=True)
    assert sel.select_indices(pool).tolist() == [0, 2, 4, 1, 3]
    assert sel.n_filled_ == 2 and np.isnan(sel.max_similarity_[3:]).all()


def test_deita_ties_go_to_the_lower_index() -> None:
    # Equal scores: r2 is visited before r3; r3 = r2 is then redundant.
    pool = _pool([(1, 0), (0, 1), (0.6, 0.8), (0.6, 0.8)], [1, 1, 2, 2])
    assert DeitaSelector(k=3, threshold=0.99).select_indices(pool).tolist() == [2, 0, 1]


def _sequential_deita(x: np.ndarray, scores: np.ndarray, k: int, threshold: float) -> list[int]:
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(float(np.dot(x[i].astype(np.float64), x[j])) < threshold for j in kept):
            kept.append(i)
            if len(kept) == k:
                break
    return kept


def _safe_threshold(gram: np.ndarray, target: float) -> float:
    """A threshold near ``target`` in the widest gap between pairwise similarities, so that
    float32 rounding (~1e-7) cannot put any pair on the other side."""
    sims = np.unique(gram[np.triu_indices(len(gram), 1)])
    window = sims[(sims > target - 0.02) & (sims < target + 0.02)]
    gaps = np.diff(window)
    j = int(np.argmax(gaps))
    assert gaps[j] > 1e-5
    return float((window[j] + window[j + 1]) / 2)


@pytest.mark.parametrize("target", [0.3, 0.75, 0.95])
def test_deita_blockwise_equals_sequential(target: float) -> None:
    x = _clustered(600, 12, seed=3)
    scores = np.random.default_rng(4).integers(0, 50, len(x)).astype(float)  # many ties
    threshold = _safe_threshold(x.astype(np.float64) @ x.T.astype(np.float64), target)
    expected = _sequential_deita(x, scores, 10_000, threshold)
    assert 10 < len(expected) < len(x)  # the filter does something
    for batch in (1, 3, 50, 4096):
        picks, _, _ = deita_filter(x, scores, len(expected), threshold, batch_size=batch)
        assert picks.tolist() == expected, batch
        short, _, examined = deita_filter(x, scores, 7, threshold, batch_size=batch)
        assert short.tolist() == expected[:7]
        order = sorted(range(len(x)), key=lambda i: (-scores[i], i))
        assert examined == order.index(expected[6]) + 1


# ----------------------------------------------------------------------------- k-center
# Cosine distance 1 - cos between exact unit vectors:
#   r0 = (1,0,0) (best score: first pick)  r1 = (0.6,0.8,0)  r2 = (0,1,0)
#   r3 = (-1,0,0)  r4 = (0,0,1)  r5 = (0,-1,0)
# After r0: distances r1 .4, r2 1, r3 2, r4 1, r5 1 -> pick r3 (2).
# r3 changes nothing (r1 1.6, r2 1, r4 1, r5 1) -> tie r2, r4, r5 at 1 -> lowest index r2.
# r2 lowers r1 to 0.2 (r5 is 2 from r2) -> tie r4, r5 at 1 -> r4; then r5 (1); then r1 (0.2).
KC = [(1, 0, 0), (0.6, 0.8, 0), (0, 1, 0), (-1, 0, 0), (0, 0, 1), (0, -1, 0)]


@pytest.mark.parametrize("pool_max,flush_every", [(1024, 2048), (1, 1), (2, 3)])
def test_kcenter_hand_checked(pool_max: int, flush_every: int) -> None:
    pool = _pool(KC, [9, 1, 1, 1, 1, 1])
    sel = KCenterSelector(k=6, pool_max=pool_max, flush_every=flush_every)
    assert sel.select_indices(pool).tolist() == [0, 3, 2, 4, 5, 1]
    assert sel.pick_distances_[0] == np.inf
    assert sel.pick_distances_[1:].tolist() == pytest.approx([2, 1, 1, 1, 0.2], abs=1e-6)
    sel = KCenterSelector(k=4, pool_max=pool_max, flush_every=flush_every)
    assert sel.select_indices(pool).tolist() == [0, 3, 2, 4]
    assert sel.radius_ == pytest.approx(1.0)  # r5 is still at distance 1
    # An explicit first row: every other row is at distance 1 from r4; the lowest index wins.
    assert KCenterSelector(k=2, start=4).select_indices(pool).tolist() == [4, 0]


def _sequential_kcenter(x: np.ndarray, k: int, first: int) -> list[int]:
    mind = 1.0 - x @ x[first]
    picks = [first]
    mind[first] = -np.inf
    for _ in range(k - 1):
        j = int(np.argmax(mind))
        picks.append(j)
        mind = np.minimum(mind, 1.0 - x @ x[j])
        mind[picks] = -np.inf
    return picks


def test_kcenter_equals_sequential() -> None:
    x = _clustered(1500, 24, seed=5)
    expected = _sequential_kcenter(x, 300, 17)
    for pool_max, chunk, flush in ((1024, 256, 2048), (16, 8, 5), (300, 64, 40)):
        picks, dist, radius, _ = farthest_first(
            x, 300, 17, pool_max=pool_max, chunk=chunk, flush_every=flush
        )
        assert picks.tolist() == expected
        assert np.all(np.diff(dist[1:]) <= 1e-6)  # farthest-first distances never rise
        assert radius <= dist[-1] + 1e-6


def test_kcenter_many_exact_ties() -> None:
    # Three directions, each repeated 40 times: after one pick per direction every remaining
    # row ties with dozens of others; the lowest index must win each time, without stalling.
    base = _clustered(3, 8, seed=21)
    x = np.repeat(base, 40, axis=0)[np.random.default_rng(22).permutation(120)]
    expected = _sequential_kcenter(x, 60, 5)
    for pool_max, chunk in ((2, 1), (4, 3), (1024, 256)):
        picks, _, _, _ = farthest_first(x, 60, 5, pool_max=pool_max, chunk=chunk, flush_every=7)
        assert picks.tolist() == expected


# ----------------------------------------------------------------------------- QDIT
# Facilities = all four rows; sims: s01 .8, s02 0, s03 .6, s12 .6, s13 .96, s23 .8.
# f({i}) = sum_r max(0, s_ri): f0 = 2.4, f1 = 3.36, f2 = 2.4, f3 = 3.36 -> g_max = 3.36.
# scores 4, 1, 2, 3 -> q = 1, 0, 1/3, 2/3.  alpha = 0.5, objective = .5 q + .5 gain / 3.36:
#   step 1: r0 .857, r1 .5, r2 .524, r3 .833 -> r0; coverage (1, .8, 0, .6)
#   step 2: gains r1 .2+.6+.36 = 1.16, r2 1+.2 = 1.2, r3 .16+.8+.4 = 1.36
#           -> r1 .173, r2 .345, r3 .536 -> r3; coverage (1, .96, .8, 1)
#   step 3: gains r1 .04, r2 .2 -> r1 .006, r2 .196 -> r2; then r1.
QD = [(1, 0), (0.8, 0.6), (0, 1), (0.6, 0.8)]


@pytest.mark.parametrize("engine", ["lazy", "scan"])
def test_qdit_hand_checked(engine: str) -> None:
    pool = _pool(QD, [4, 1, 2, 3])
    sel = QDITSelector(k=4, alpha=0.5, engine=engine, chunk=1, pool_max=1)
    assert sel.select_indices(pool).tolist() == [0, 3, 2, 1]
    assert sel.diversity_scale_ == pytest.approx(3.36, abs=1e-5)
    assert sel.pick_gains_.tolist() == pytest.approx(
        [
            0.5 + 0.5 * 2.4 / 3.36,
            1 / 3 + 0.5 * 1.36 / 3.36,
            1 / 6 + 0.5 * 0.2 / 3.36,
            0.5 * 0.04 / 3.36,
        ],
        abs=1e-5,
    )
    assert sel.quality_.tolist() == pytest.approx([1, 0, 1 / 3, 2 / 3])
    # alpha = 1: pure quality, i.e. top score.
    assert QDITSelector(k=4, alpha=1.0).select_indices(pool).tolist() == [0, 3, 2, 1]


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_qdit_lazy_equals_scan(alpha: float) -> None:
    # float64 embeddings: similarities do not depend on how rows are batched (in float32,
    # candidates whose gains agree to ~1e-7 could swap between the two engines).
    x = _clustered(700, 16, seed=6).astype(np.float64)
    scores = np.random.default_rng(7).gamma(2.0, 3.0, len(x))
    facilities = np.sort(np.random.default_rng(8).choice(len(x), 250, replace=False))
    scan = qdit_greedy(x, scores, 120, alpha, facilities, engine="scan")
    for chunk, pool_max in ((256, 2048), (8, 16), (1, 1)):
        lazy = qdit_greedy(x, scores, 120, alpha, facilities, chunk=chunk, pool_max=pool_max)
        assert lazy["picks"].tolist() == scan["picks"].tolist()
        np.testing.assert_allclose(lazy["gains"], scan["gains"], rtol=1e-9, atol=1e-12)
        assert np.all(np.diff(lazy["gains"]) <= 1e-12)  # greedy gains never rise
        assert lazy["evaluations"] < 120 * len(x)


def test_qdit_many_exact_ties() -> None:
    # Duplicated rows with equal scores tie exactly; lazy must still follow the lowest index.
    base = _clustered(6, 8, seed=23).astype(np.float64)
    x = np.repeat(base, 30, axis=0)
    scores = np.repeat(np.array([3.0, 1.0, 2.0, 3.0, 0.5, 2.0]), 30)
    facilities = np.arange(len(x))
    scan = qdit_greedy(x, scores, 50, 0.5, facilities, engine="scan")
    for chunk, pool_max in ((1, 1), (4, 8), (256, 2048)):
        lazy = qdit_greedy(x, scores, 50, 0.5, facilities, chunk=chunk, pool_max=pool_max)
        assert lazy["picks"].tolist() == scan["picks"].tolist()


def test_qdit_facility_sample_is_seeded() -> None:
    pool = _pool(_clustered(300, 8, seed=9), np.arange(300) % 7)
    a = QDITSelector(k=20, n_facilities=50, seed=1)
    b = QDITSelector(k=20, n_facilities=50, seed=1)
    assert a.select_indices(pool).tolist() == b.select_indices(pool).tolist()
    assert len(a.facilities_) == 50 and np.array_equal(a.facilities_, b.facilities_)
    c = QDITSelector(k=20, n_facilities=50, seed=2)
    c.select_indices(pool)
    assert not np.array_equal(a.facilities_, c.facilities_)
    full = QDITSelector(k=20, n_facilities=None)
    full.select_indices(pool)
    assert len(full.facilities_) == 300


# ----------------------------------------------------------------------------- CaR
def test_car_rank_hand_checked() -> None:
    scores = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=float)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2])
    # n1 = 2: rows 0, 1. Cluster tops: 0 (taken), 5, 7 -> 5, 7. Fill: best left, row 2.
    picks, source = car_rank(scores, labels, 3, 5, 2, 1)
    assert picks.tolist() == [0, 1, 5, 7, 2] and source.tolist() == [0, 0, 1, 1, 2]
    # n2 = 2: cluster tops 0, 1 (taken), 5, 6, 7, 8 -> cut at k = 5 in score order: 5, 6, 7.
    picks, source = car_rank(scores, labels, 3, 5, 2, 2)
    assert picks.tolist() == [0, 1, 5, 6, 7] and source.tolist() == [0, 0, 1, 1, 1]


def test_car_selector_on_separated_clusters() -> None:
    # Three tight clusters around orthogonal axes of R^6; scores favour cluster A.
    rng = np.random.default_rng(10)
    sizes = {0: 30, 1: 12, 2: 8}
    rows, truth, scores = [], [], []
    for c, size in sizes.items():
        centre = np.zeros(6)
        centre[c] = 1.0
        pts = centre + 0.05 * rng.standard_normal((size, 6))
        rows.append(pts / np.linalg.norm(pts, axis=1, keepdims=True))
        truth += [c] * size
        scores.append(rng.uniform(10, 20, size) if c == 0 else rng.uniform(0, 5, size))
    x = np.vstack(rows)
    pool = _pool(x, np.concatenate(scores))
    truth = np.array(truth)
    sel = CaRSelector(k=8, n_clusters=3, n1=5, n2=1, seed=0)
    picks = sel.select_indices(pool)
    # k-means recovers the three clusters exactly (one label per true cluster).
    assert len({(t, lab) for t, lab in zip(truth, sel.labels_)}) == 3
    s = pool["score"]
    by_score = sorted(range(len(x)), key=lambda i: (-s[i], i))
    best_b = max(np.flatnonzero(truth == 1), key=lambda i: (s[i], -i))
    best_c = max(np.flatnonzero(truth == 2), key=lambda i: (s[i], -i))
    # 5 overall (all from A), then the best of B and C in score order, then the 6th of A.
    expected_cluster = sorted([best_b, best_c], key=lambda i: (-s[i], i))
    assert picks.tolist() == by_score[:5] + expected_cluster + [by_score[5]]
    assert sel.pick_source_.tolist() == [0] * 5 + [1, 1, 2]
    assert (sel.n_overall_picks_, sel.n_cluster_picks_, sel.n_filled_) == (5, 2, 1)


def test_car_default_budget_rule() -> None:
    sel = CaRSelector(k=50)
    assert sel._budget(50, 7) == (50 - 3 * 7, 3)  # n2 = floor(50 * 0.5 / 7) = 3
    assert sel._budget(5, 7) == (0, 1)  # at least one per cluster, cut to k
    with pytest.raises(ValueError, match="exceeds k"):
        CaRSelector(k=10, n1=5, n2=1)._budget(10, 7)


def test_pca_keeps_the_variance_asked_for() -> None:
    rng = np.random.default_rng(11)
    basis = np.linalg.qr(rng.standard_normal((10, 3)))[0]  # 3-D subspace of R^10
    x = (rng.standard_normal((500, 3)) * [5.0, 2.0, 0.1]) @ basis.T
    mean, comps, ratio = pca_fit(x.astype(np.float32), 0.95)
    assert comps.shape == (10, 2)  # 25 + 4 of 29.01 total: two components pass 95%
    assert ratio.sum() >= 0.95 and ratio[0] > ratio[1]
    _, comps_all, ratio_all = pca_fit(x.astype(np.float32), 1.0)
    assert comps_all.shape[1] >= 3 and ratio_all.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- shared contracts
@pytest.mark.parametrize("method", METHODS)
def test_k_rows_no_duplicates_and_deterministic(method: str) -> None:
    x = _clustered(400, 10, seed=12)
    scores = np.random.default_rng(13).uniform(0, 10, len(x))
    pool = _pool(x, scores)
    options = {"fill": True} if method == "deita" else {}
    a = get_selector(method, 37, **options).select_indices(pool)
    b = get_selector(method, 37, **options).select_indices(pool)
    assert a.dtype == np.int64 and len(a) == 37 and len(set(a.tolist())) == 37
    assert a.tolist() == b.tolist()
    subset = hf_mig.select(pool, 37, method=method, **options)
    assert len(subset) == 37 and subset["score"] == [float(scores[i]) for i in a]


@pytest.mark.parametrize("method", ["qdit", "kcenter", "car"])
def test_seed_changes_random_parts(method: str) -> None:
    x = _clustered(400, 10, seed=14)
    pool = _pool(x, np.random.default_rng(15).uniform(0, 10, len(x)))
    options = {
        "qdit": {"n_facilities": 40},
        "kcenter": {"start": "random"},
        "car": {},
    }[method]
    a = get_selector(method, 30, seed=1, **options).select_indices(pool)
    assert a.tolist() == get_selector(method, 30, seed=1, **options).select_indices(pool).tolist()
    if method != "car":  # CaR's picks may not depend on the seed when clusters are stable
        b = get_selector(method, 30, seed=2, **options).select_indices(pool)
        assert a.tolist() != b.tolist()


@pytest.mark.parametrize("method", METHODS)
def test_errors_name_the_problem(method: str) -> None:
    x = _clustered(20, 4, seed=16)
    pool = _pool(x, np.arange(20))
    with pytest.raises(ValueError, match="exceeds the pool size"):
        get_selector(method, 21).select_indices(pool)
    with pytest.raises(ValueError, match="k must be >= 1"):
        get_selector(method, 0).select_indices(pool)
    no_score = pool.remove_columns("score")
    with pytest.raises(ValueError, match="column 'score' not found"):
        get_selector(method, 3).select_indices(no_score)
    bad = x.astype(float).tolist()
    bad[7][2] = float("nan")
    with pytest.raises(ValueError, match=r"row 7, field 'embedding': embedding contains NaN"):
        get_selector(method, 3).select_indices(_pool(bad, np.arange(20)))
    scores = np.arange(20, dtype=float)
    scores[4] = np.inf
    with pytest.raises(ValueError, match=r"row 4, field 'score'"):
        get_selector(method, 3).select_indices(_pool(x, scores))


def test_kcenter_without_scores_needs_another_start() -> None:
    pool = _pool(_clustered(30, 4, seed=17))
    with pytest.raises(ValueError, match='start="random"'):
        KCenterSelector(k=3).select_indices(pool)
    picks = KCenterSelector(k=3, start="random", seed=3).select_indices(pool)
    assert (
        picks.tolist() == KCenterSelector(k=3, start="random", seed=3).select_indices(pool).tolist()
    )
    with pytest.raises(ValueError, match="outside the pool"):
        KCenterSelector(k=3, start=30).select_indices(pool)


def test_option_validation() -> None:
    pool = _pool(PLANE, PLANE_SCORES)
    with pytest.raises(ValueError, match="alpha"):
        QDITSelector(k=2, alpha=1.5).select_indices(pool)
    with pytest.raises(ValueError, match="engine"):
        QDITSelector(k=2, engine="fast").select_indices(pool)
    with pytest.raises(ValueError, match="threshold"):
        DeitaSelector(k=2, threshold=float("nan")).select_indices(pool)
    with pytest.raises(ValueError, match="pca_variance"):
        CaRSelector(k=2, pca_variance=0).select_indices(pool)


@pytest.mark.parametrize(
    "method,options,expected",
    [
        ("deita", ["--threshold", "0.9"], [0, 1, 3]),  # see test_deita_hand_checked
        ("kcenter", [], [0, 4, 3]),  # r4 is 2 away from r0; then r3 (1 from both)
        ("car", ["--option", "n_clusters=2"], [0, 4, 1]),  # n1 = 1, n2 = 1, fill by score
        ("qdit", ["--option", "alpha=1.0"], [0, 1, 2]),  # alpha = 1: top score
    ],
)
def test_cli_select(tmp_path, method: str, options: list[str], expected: list[int]) -> None:
    from hf_mig.cli.main import main

    pool = tmp_path / "pool.jsonl"
    with open(pool, "w") as fh:
        for i, (vec, score) in enumerate(zip(PLANE, PLANE_SCORES)):
            row = {"id": i, "embedding": list(vec), "score": score, "labels": [f"t{i % 3}"]}
            fh.write(json.dumps(row) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["-q", "select", str(pool), "--method", method, "--num", "3", "--out", str(out)]
    assert main(argv + options) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == expected


# ----------------------------------------------------------------------------- embeddings module
def test_embedding_matrix_reads_arrow_views_and_types() -> None:
    x = _clustered(50, 5, seed=18).astype(np.float64)
    pool = _pool(x, np.arange(50))
    view = pool.select([9, 3, 3, 40])
    got = embedding_matrix(view, block_rows=3)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x[[9, 3, 3, 40]].astype(np.float32))
    fixed = Dataset(
        InMemoryTable(pa.table({"e": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 5)}))
    )
    np.testing.assert_array_equal(embedding_matrix(fixed, "e"), x.astype(np.float32))
    unnormed = embedding_matrix(_pool(3 * x), normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unnormed, axis=1), 1.0, rtol=1e-6)


def test_embedding_matrix_errors_name_row_and_field() -> None:
    good = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    with pytest.raises(ValueError, match=r"row 1, field 'embedding': embedding is null"):
        embedding_matrix(Dataset.from_dict({"embedding": [good[0], None, good[2]]}))
    with pytest.raises(ValueError, match=r"row 2, field 'embedding': embedding has 3 values"):
        embedding_matrix(Dataset.from_dict({"embedding": [good[0], good[1], [1.0, 2.0, 3.0]]}))
    with pytest.raises(ValueError, match=r"row 1, field 'embedding': embedding is all zeros"):
        embedding_matrix(Dataset.from_dict({"embedding": [good[0], [0.0, 0.0]]}), normalize=True)
    with pytest.raises(ValueError, match="column 'vec' not found"):
        embedding_matrix(Dataset.from_dict({"embedding": good}), "vec")
    with pytest.raises(ValueError, match=r"row 1, field 'score': score is null"):
        read_scores(Dataset.from_dict({"score": [1.0, None]}), "score")


def test_blockwise_helpers_match_dense() -> None:
    x = _clustered(300, 8, seed=19)
    ref = _clustered(77, 8, seed=20)
    dense = x @ ref.T
    best, arg = max_similarity_to_set(x, ref, block_rows=16, block_cols=10, return_argmax=True)
    np.testing.assert_allclose(best, dense.max(axis=1), rtol=0, atol=1e-6)
    assert np.array_equal(arg, dense.argmax(axis=1))
    assert np.all(max_similarity_to_set(x, ref[:0]) == -np.inf)
    mind = np.full(len(x), np.inf, dtype=np.float32)
    update_min_distance(x, ref[:5], mind, block_rows=7)
    update_min_distance(x, ref[5:], mind, block_rows=7)
    np.testing.assert_allclose(mind, 1.0 - dense.max(axis=1), atol=1e-6)
    labels, d2 = nearest_centres(x, ref, block_rows=13)
    full = ((x[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(labels, full.argmin(axis=1))
    np.testing.assert_allclose(d2, full.min(axis=1), atol=1e-5)


def test_sample_embedder_pickles_config_only() -> None:
    fn = SampleEmbedder(max_chars=128)
    again = SampleEmbedder(max_chars=128)
    assert fn.fingerprint == again.fingerprint != SampleEmbedder(max_chars=64).fingerprint
    assert SampleEmbedder(text="conversation").fingerprint != SampleEmbedder().fingerprint
    fn.load()  # a loaded model changes neither the pickle nor the fingerprint
    assert fn.fingerprint == again.fingerprint
    blob = pickle.dumps(fn)
    assert len(blob) < 2000
    clone = pickle.loads(blob)
    assert clone.config == fn.config
    with pytest.raises(ValueError, match="text must be one of"):
        SampleEmbedder(text="all")


def test_sample_embedder_rows_and_errors() -> None:
    fn = SampleEmbedder()
    bad = {"messages": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": 3}]]}
    with pytest.raises(ValueError, match=r"row 11, field 'messages'\[0\]\['content'\]"):
        fn(bad, [10, 11])
    with pytest.raises(ValueError, match="no 'messages' column and no known record shape"):
        fn({"text": ["a"]})
    assert fn._text(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "abc"}], 0
    ) == ("abc")
    conv = SampleEmbedder(text="conversation", max_chars=20)
    text = conv._text(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world!"}], 0
    )
    assert text == "user: hello\n\nassista"


# ----------------------------------------------------------------------------- real pool
@pytest.fixture(scope="module")
def real_pool(tagged_lima, minilm_tagged, data_dir) -> Dataset:
    """LIMA + the Alpaca-GPT4 demo as messages, with LengthScorer scores, MiniLM embeddings of
    the first user turn (256 characters) and the InsTag labels of those characters (the
    session's ``tagged_lima`` and ``minilm_tagged``, tests/conftest.py)."""
    demo = minilm_tagged(data_dir / "llama_factory_demo" / "alpaca_en_demo.json")
    return concatenate_datasets([tagged_lima, demo])


def test_real_pool_embeddings(real_pool: Dataset) -> None:
    assert len(real_pool) == 1029 + 999
    x = ensure_embeddings(real_pool)
    assert x.shape == (2028, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # A paraphrase is closer than an unrelated instruction.
    emb = SampleEmbedder()(
        {
            "messages": [
                [{"role": "user", "content": t}]
                for t in (
                    "Write a poem about the sea.",
                    "Compose a short poem about the ocean.",
                    "What is the derivative of x squared?",
                )
            ]
        }
    )["embedding"]
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


@pytest.mark.parametrize("method", METHODS)
def test_real_pool_selection_is_sane(real_pool: Dataset, method: str) -> None:
    k = 200
    a = get_selector(method, k).select_indices(real_pool)
    b = get_selector(method, k).select_indices(real_pool)
    assert len(a) == k and len(set(a.tolist())) == k and a.tolist() == b.tolist()
    if method == "deita":  # at T = 0.5 on MiniLM every pair of picks is below the threshold
        sel = DeitaSelector(k=k, threshold=0.5)
        picks = sel.select_indices(real_pool)
        x = embedding_matrix(real_pool, normalize=True)[picks]
        gram = x @ x.T
        np.fill_diagonal(gram, -1)
        assert gram.max() < 0.5 and sel.n_rejected_ > 0


def test_real_pool_diversity_covers_more_labels(real_pool: Dataset) -> None:
    if "labels" not in real_pool.column_names:
        pytest.skip("hf_mig.annotate.taggers.EmbeddingTagger is not available")
    labels = real_pool["labels"]
    scores = np.asarray(real_pool["score"])
    k = 200

    def covered(picks) -> int:
        return len({label for i in picks for label in labels[int(i)]})

    top = covered(np.lexsort((np.arange(len(scores)), -scores))[:k])
    counts = {
        "kcenter": covered(KCenterSelector(k=k).select_indices(real_pool)),
        "car": covered(CaRSelector(k=k).select_indices(real_pool)),
        "qdit": covered(QDITSelector(k=k).select_indices(real_pool)),
        "qdit_alpha0": covered(QDITSelector(k=k, alpha=0.0).select_indices(real_pool)),
    }
    counts["top_score"] = top
    message = json.dumps(counts)
    assert counts["kcenter"] > top and counts["car"] > top, message
    # alpha = 0.7 is quality-led (it may equal top score here); pure diversity is not.
    assert counts["qdit"] >= top and counts["qdit_alpha0"] > top, message


# ----------------------------------------------------------------------------- benchmark smoke
def test_benchmark_cases_run_small() -> None:
    import resource
    import sys
    import time
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.bench_baselines_embedding import METHODS as BENCH_METHODS
    from benchmarks.bench_baselines_embedding import format_table, run_case

    rows = []
    for method in BENCH_METHODS:
        start = time.perf_counter()
        res = run_case(method, 3000, 150, seed=1)
        wall = time.perf_counter() - start
        # the timed part lies inside the call; the peak growth inside this process's own peak
        assert 0 < res["seconds"] <= wall, (method, res["seconds"], wall)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        assert 0 <= res["rss_peak_mb"] <= peak_mb, (method, res["rss_peak_mb"], peak_mb)
        assert res["picks"] == (0 if method == "read" else 150)
        rows.append({**res, "method": method, "n": 3000, "k": 150})
    table = format_table(rows)
    assert all(m in table for m in BENCH_METHODS) and "examined=" in table
