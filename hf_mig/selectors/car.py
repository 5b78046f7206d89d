"""CaR (Clustering and Ranking): top rows by quality overall plus the best rows of each cluster."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hf_mig.annotate.embeddings import check_arrays, single_threaded_blas
from hf_mig.core.encoding import DegeneratePoolError
from hf_mig.selectors._diversity import best_first, show_progress
from hf_mig.selectors.base import check_int, check_number, register_selector
from hf_mig.selectors.embedding_base import EmbeddingSelector, all_equal, constant_scores_error

logger = logging.getLogger(__name__)


@register_selector("car")
@dataclass(repr=False, eq=False, kw_only=True)
class CaRSelector(EmbeddingSelector):
    """CaR: ``n1`` best rows by score overall, then the ``n2`` best rows of every k-means cluster.

    1. **PCA** of the (L2-normalised) sample embeddings, keeping the fewest leading components
       whose explained variance reaches ``pca_variance`` (95%). The covariance is accumulated
       exactly over all rows, block by block (``d x d``, no sampling), and its eigenvectors give
       the components; nothing ``N x d`` beyond the embeddings is stored.
    2. **k-means** in that space with ``n_clusters = max(1, int(sqrt(N / 2)))`` (CaR's rule;
       685 clusters at 939K rows): k-means++ seeding on a uniform sample of at most
       ``init_sample`` rows, then Lloyd iterations (block-wise distances; an empty cluster
       keeps its previous centre) until no label changes, the inertia improves by less than
       ``tol`` (relative) or ``max_iter`` is reached; finally every row gets its nearest centre.
       The iterations use every row when the pool has at most ``fit_sample`` rows (200K), and a
       uniform sample of ``fit_sample`` rows otherwise (at 939K rows and 685 clusters that is
       ~290 sampled rows per cluster; pass ``fit_sample=None`` for full-pool iterations, about
       5x slower there). Seeded by ``seed``.
    3. **Ranking** by ``score_column`` (ties: lower row index). Picks, in this order: the ``n1``
       best rows overall (score order); then the ``n2`` best rows of every cluster (ranked among
       all the cluster's rows, as CaR does) minus those already picked, all in score order;
       then, while fewer than ``k`` rows are picked (duplicates dropped, clusters smaller than
       ``n2``), the best remaining rows by score.

    Defaults for ``n1`` / ``n2`` (CaR fixes them per experiment; there is no formula to
    follow): ``n2 = max(1, floor(k * cluster_share / n_clusters))`` rows per cluster,
    where ``cluster_share = 0.5`` is the part of the budget reserved for clusters, and
    ``n1 = k - n2 * n_clusters`` (floored at 0; when ``n2 * n_clusters > k`` the per-cluster
    picks are cut to ``k`` in score order). Giving either explicitly overrides the rule;
    ``n1 + n2 * n_clusters`` must then not exceed ``k`` (the remainder is filled by score).

    Parameters
    ----------
    k: rows to select.
    n1, n2, cluster_share: budget split (see above).
    n_clusters: override CaR's ``int(sqrt(N / 2))``.
    pca_variance: explained-variance ratio kept (``1.0``: no reduction).
    max_iter, tol, init_sample, fit_sample, seed: k-means settings.
    score_column, embedding_column, embedder, embedding_text: as in :class:`DeitaSelector`
        (CaR itself embedded "Instruction: ... Input: ... Response: ..."; use
        ``embedding_text="conversation"`` for the closest equivalent).
    progress: progress bars (``None``: only for large pools).

    Every row having the same score (with ``k`` below the pool size) would turn both rankings
    into file order: :class:`hf_mig.core.encoding.DegeneratePoolError` is raised before any
    embedding is computed.

    Fitted attributes: ``labels_`` (int64 cluster of every row), ``cluster_centers_`` (in PCA
    space), ``n_components_``, ``explained_variance_ratio_`` (kept components),
    ``n_clusters_``, ``n_iter_``, ``inertia_`` (over the rows the iterations used), ``n1_``,
    ``n2_``, ``n_overall_picks_``, ``n_cluster_picks_``, ``n_filled_``, ``pick_source_`` (per
    pick: 0 overall, 1 cluster, 2 fill).
    """

    n1: int | None = None
    n2: int | None = None
    cluster_share: float = 0.5
    n_clusters: int | None = None
    pca_variance: float = 0.95
    max_iter: int = 20
    tol: float = 1e-4
    init_sample: int = 50_000
    fit_sample: int | None = 200_000
    seed: int = 42

    # ------------------------------------------------------------------ helpers
    def _budget(self, k: int, clusters: int) -> tuple[int, int]:
        n1 = check_int("n1", self.n1, minimum=0, allow_none=True)
        n2 = check_int("n2", self.n2, minimum=0, allow_none=True)
        share = check_number("cluster_share", self.cluster_share, 0, 1)
        if n2 is None:
            n2 = max(1, math.floor(k * share / clusters)) if share > 0 else 0
        if n1 is None:
            n1 = max(0, k - n2 * clusters)
        elif self.n2 is not None and n1 + n2 * clusters > k:
            raise ValueError(
                f"n1 + n2 * n_clusters = {n1} + {n2} * {clusters} = {n1 + n2 * clusters} "
                f"exceeds k = {k}"
            )
        if n1 > k:
            raise ValueError(f"n1 = {n1} exceeds k = {k}")
        return n1, n2

    label = "CaR"

    def _check_options(self, n: int) -> None:
        self._options(n)

    def _options(self, n: int) -> dict:
        clusters = check_int("n_clusters", self.n_clusters, allow_none=True)
        if clusters is None:
            clusters = max(1, int(math.sqrt(n / 2)))
        return {
            "clusters": min(clusters, n),
            "variance": check_number("pca_variance", self.pca_variance, 0, 1, open_low=True),
            "max_iter": check_int("max_iter", self.max_iter),
            "init_sample": check_int("init_sample", self.init_sample),
            "fit_sample": check_int("fit_sample", self.fit_sample, allow_none=True),
        }

    def check_scores(self, scores: np.ndarray, *, warn: bool = True) -> None:
        """Equal scores make CaR's overall and per-cluster rankings file order: refused."""
        if int(self.k) < scores.size and all_equal(scores):
            raise DegeneratePoolError(
                constant_scores_error("CaR", scores, self.score_column, int(self.k))
            )

    def select_arrays(self, embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """CaR on arrays: L2-normalised ``(n, d)`` embeddings and ``n`` finite scores."""
        x, scores = check_arrays(embeddings, scores, self.k)
        self.check_scores(scores)
        k = int(self.k)
        opts = self._options(len(x))
        clusters = opts["clusters"]
        n1, n2 = self._budget(k, clusters)
        mean, comps, ratio = pca_fit(x, opts["variance"])
        km = kmeans_projected(
            x,
            mean,
            comps,
            clusters,
            seed=self.seed,
            max_iter=opts["max_iter"],
            tol=float(self.tol),
            init_sample=opts["init_sample"],
            fit_sample=opts["fit_sample"],
            progress=self.progress,
        )
        picks, source = car_rank(scores, km["labels"], clusters, k, n1, n2)
        self.labels_ = km["labels"]
        self.cluster_centers_ = km["centers"]
        self.n_iter_ = km["n_iter"]
        self.inertia_ = km["inertia"]
        self.n_components_ = comps.shape[1]
        self.explained_variance_ratio_ = ratio
        self.n_clusters_ = clusters
        self.n1_, self.n2_ = n1, n2
        self.pick_source_ = source
        self.n_overall_picks_ = int((source == 0).sum())
        self.n_cluster_picks_ = int((source == 1).sum())
        self.n_filled_ = int((source == 2).sum())
        return picks


def pca_fit(
    x: np.ndarray, variance: float, *, block: int = 65_536
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact PCA of the rows of ``x`` by a block-wise covariance (float64) and ``eigh``.

    Returns ``(mean (d,), components (d, r), explained_variance_ratio (r,))`` with the fewest
    ``r`` leading components whose cumulative explained variance is ``>= variance``.
    Component signs are fixed (largest-magnitude entry positive) so results are reproducible.
    """
    n, d = x.shape
    total = np.zeros(d, dtype=np.float64)
    gram = np.zeros((d, d), dtype=np.float64)
    for i in range(0, n, block):
        b = x[i : i + block].astype(np.float64)
        total += b.sum(axis=0)
        gram += b.T @ b
    mean = total / n
    cov = gram / n - np.outer(mean, mean)
    with single_threaded_blas():
        eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.clip(eigval[::-1], 0.0, None)
    eigvec = eigvec[:, ::-1]
    total_var = eigval.sum()
    if total_var <= 0:  # every row identical: one component keeps "all" of nothing
        r = 1
        ratio = np.ones(1)
    else:
        cum = np.cumsum(eigval) / total_var
        r = int(min(d, np.searchsorted(cum, variance - 1e-12) + 1))
        ratio = eigval[:r] / total_var
    comps = eigvec[:, :r]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(r)])
    signs[signs == 0] = 1.0
    comps = comps * signs
    return mean.astype(np.float32), np.ascontiguousarray(comps, dtype=np.float32), ratio


def _kmeans_pp(z: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling) of ``clusters`` centres among the rows of ``z``."""
    m = z.shape[0]
    centres = np.empty((clusters, z.shape[1]), dtype=np.float32)
    first = int(rng.integers(m))
    centres[0] = z[first]
    z_sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(z_sq - 2.0 * np.einsum("ij,j->i", z, z[first]) + z_sq[first], 0.0)
    d2 = d2.astype(np.float64)
    for c in range(1, clusters):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than clusters: repeat one
            idx = int(rng.integers(m))
        else:
            idx = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            idx = min(idx, m - 1)
        centres[c] = z[idx]
        near = np.maximum(z_sq - 2.0 * np.einsum("ij,j->i", z, z[idx]) + z_sq[idx], 0.0)
        np.minimum(d2, near, out=d2)
    return centres


def _segment_sums(xb: np.ndarray, lab: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
    """Add the rows of ``xb`` to ``sums[lab]`` and count them: one sparse one-hot product."""
    import scipy.sparse as sp

    b = len(lab)
    onehot = sp.csr_matrix(
        (np.ones(b, dtype=np.float32), (lab, np.arange(b))), shape=(len(counts), b)
    )
    sums += onehot @ xb  # float32 per block, accumulated in float64
    counts += np.bincount(lab, minlength=len(counts))


def _lifted_labels(
    xb: np.ndarray, lifted: np.ndarray, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row of ``xb`` in PCA space, computed in the original space.

    With ``z = (x - mean) V`` and a centre ``c``: ``|z - c|^2 = |z|^2 - 2 x.(V c) + offset``
    where ``offset = 2 mean.(V c) + |c|^2``; ``lifted`` holds the ``V c``. Returns the labels
    and ``|z - c|^2 - |z|^2`` (add ``|z|^2`` for the squared distance).
    """
    part = offset[None, :] - 2.0 * (xb @ lifted.T)
    lab = part.argmin(axis=1)
    return lab, part[np.arange(len(lab)), lab].astype(np.float64)


def kmeans_projected(
    x: np.ndarray,
    mean: np.ndarray,
    comps: np.ndarray,
    clusters: int,
    *,
    seed: int = 42,
    max_iter: int = 20,
    tol: float = 1e-4,
    init_sample: int = 50_000,
    fit_sample: int | None = 200_000,
    block: int = 16_384,
    progress: bool | None = None,
) -> dict:
    """Lloyd's k-means of ``z = (x - mean) @ comps`` without storing ``z``.

    Distances to a centre ``c`` are computed from ``x`` and the lifted centre ``comps @ c``
    (so no row is ever projected during the iterations) and centres are updated from per-cluster
    sums of ``x``. Seeding: k-means++ on a uniform sample of ``init_sample`` rows (projected).
    Iterations run over a uniform sample of ``fit_sample`` rows (``None``: all rows; all rows
    too when the pool is smaller), then every row gets its nearest centre. Extra memory:
    ``O(N)`` for the labels plus one block and the sampled indices.

    Returns ``labels`` (int64, every row), ``centers`` (float32, PCA space), ``inertia`` (sum of
    squared distances over the rows the iterations used), ``n_iter`` and ``fit_rows``.
    """
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, init_sample), replace=False))
    centres = _kmeans_pp((x[sample] - mean) @ comps, clusters, rng)
    if fit_sample is None or fit_sample >= n:
        fit_rows = None  # every row, read by slices
        m = n
    else:
        fit_rows = np.sort(rng.choice(n, size=fit_sample, replace=False))
        m = len(fit_rows)

    def fit_block(i: int) -> np.ndarray:
        if fit_rows is None:
            return x[i : i + block]
        return x[fit_rows[i : i + block]]

    # |z|^2 of the rows used for fitting (for the inertia).
    z_sq = np.empty(m, dtype=np.float64)
    for i in range(0, m, block):
        zb = (fit_block(i) - mean) @ comps
        z_sq[i : i + block] = np.einsum("ij,ij->i", zb, zb)
    labels_fit = np.full(m, -1, dtype=np.int64)
    inertia = np.inf
    n_iter = 0
    d = x.shape[1]
    show = show_progress(progress, float(m) * clusters * d, 1e10)
    bar = tqdm(total=max_iter, desc="CaR k-means", unit="iter", disable=not show)
    for it in range(1, max_iter + 1):
        n_iter = it
        lifted = centres @ comps.T  # (clusters, d)
        offset = 2.0 * (lifted @ mean) + np.einsum("ij,ij->i", centres, centres)
        sums = np.zeros((clusters, d), dtype=np.float64)
        counts = np.zeros(clusters, dtype=np.int64)
        new_inertia = 0.0
        changed = 0
        for i in range(0, m, block):
            xb = fit_block(i)
            lab, part = _lifted_labels(xb, lifted, offset)
            changed += int((labels_fit[i : i + block] != lab).sum())
            labels_fit[i : i + block] = lab
            new_inertia += float(np.maximum(part + z_sq[i : i + block], 0.0).sum())
            _segment_sums(xb, lab, sums, counts)
        bar.update(1)
        nonempty = counts > 0
        means_x = sums[nonempty] / counts[nonempty, None]
        centres[nonempty] = ((means_x - mean) @ comps).astype(np.float32)
        improved = inertia - new_inertia
        inertia = new_inertia
        if changed == 0 or (np.isfinite(improved) and improved <= tol * max(inertia, 1e-30)):
            break
    bar.close()
    # Every row to its nearest final centre.
    lifted = centres @ comps.T
    offset = 2.0 * (lifted @ mean) + np.einsum("ij,ij->i", centres, centres)
    labels = np.empty(n, dtype=np.int64)
    for i in range(0, n, block):
        labels[i : i + block] = _lifted_labels(x[i : i + block], lifted, offset)[0]
    return {
        "labels": labels,
        "centers": centres,
        "inertia": inertia,
        "n_iter": n_iter,
        "fit_rows": m,
    }


def car_rank(
    scores: np.ndarray, labels: np.ndarray, clusters: int, k: int, n1: int, n2: int
) -> tuple[np.ndarray, np.ndarray]:
    """CaR's ranking step on arrays: returns ``(picks, source)`` (0 overall, 1 cluster, 2 fill).

    ``n1`` best rows overall by score (ties: lower index); then the ``n2`` best rows of every
    cluster (ranked among all its rows) that the overall picks do not already hold, merged in
    score order (cut at ``k``); then the best remaining rows by score until ``k``.
    """
    n = len(scores)
    order = best_first(scores)
    picked = np.zeros(n, dtype=bool)
    overall = order[: min(n1, k)]
    picked[overall] = True
    # Rank of every row inside its cluster by score (a stable sort keeps the score order).
    lab = labels[order]
    by_cluster = np.argsort(lab, kind="stable")
    lab_sorted = lab[by_cluster]
    first_pos = np.searchsorted(lab_sorted, np.arange(clusters))
    rank = np.empty(n, dtype=np.int64)
    rank[by_cluster] = np.arange(n) - first_pos[lab_sorted]
    top = order[rank < n2]  # score order
    cluster_picks = top[~picked[top]][: k - len(overall)]
    picked[cluster_picks] = True
    fill = order[~picked[order]][: k - len(overall) - len(cluster_picks)]
    picks = np.concatenate([overall, cluster_picks, fill]).astype(np.int64)
    source = np.concatenate(
        [
            np.zeros(len(overall), dtype=np.int8),
            np.ones(len(cluster_picks), dtype=np.int8),
            np.full(len(fill), 2, dtype=np.int8),
        ]
    )
    return picks, source
