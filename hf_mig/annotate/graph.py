"""The label graph: a label vocabulary and a sparse symmetric similarity matrix W.

``W[p, q] = cos(emb(p), emb(q))`` where that cosine is ``>= threshold`` (inclusive), else 0; the
diagonal is 1. The graph never materialises a dense K x K matrix: similarities are computed in
row blocks over the upper triangle and thresholded block by block.

Graphs built by :meth:`LabelGraph.from_labels` with a *named* embedder (a model id or folder,
``"static:<model>"``, or the embedder objects :func:`hf_mig.models.embedders.load_embedder`
returns for them) are cached on disk, keyed by content: see :mod:`hf_mig.annotate.graph_cache`
(its :func:`graph_cache_dir`, :func:`graph_cache_key` and :func:`embedder_identity` are
importable from here too). A graph from a callable embedder is never cached: a callable has no
content identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hf_mig.annotate.graph_cache import (
    FORMAT_VERSION,
    GRAPH_CACHE_VERSION,
    cache_folder,
    embedder_identity,
    graph_cache_dir,
    graph_cache_key,
    read_cached,
)
from hf_mig.models.embedders import EmbedderLike, embedder_name, load_embedder, normalize_rows

__all__ = [
    "BYTES_PER_EDGE",
    "DEFAULT_MAX_EDGES",
    "FORMAT_VERSION",
    "GRAPH_CACHE_VERSION",
    "GraphTooLargeError",
    "LabelGraph",
    "LabelGraphFormatError",
    "embedder_identity",
    "graph_cache_dir",
    "graph_cache_key",
]

logger = logging.getLogger(__name__)

#: Default cap on the undirected edges of a graph built from embeddings (about 2.4 GB of memory
#: at the peak, see BYTES_PER_EDGE). Real vocabularies are far below it: the 4,531 InsTag tags
#: have 711 edges with all-MiniLM-L6-v2 at T=0.8.
DEFAULT_MAX_EDGES = 20_000_000

#: Peak memory per undirected edge: 80 bytes measured while a graph is built (both directions,
#: float64 weights, the COO and CSR copies alive together), 120 while MIG derives the
#: propagation matrix from it; the larger is used for estimates.
BYTES_PER_EDGE = 120

#: Most similarities (float32) held at once when estimating edges or keeping top neighbours.
_CELLS = 1 << 24

_NPZ_ARRAYS = ("labels", "rows", "cols", "weights")


class GraphTooLargeError(ValueError):
    """A label graph would have more edges than allowed (``max_edges``)."""


class LabelGraphFormatError(ValueError):
    """A file is not a readable label graph (truncated, not an ``.npz``, missing arrays)."""


def _check_count(name: str, value, *, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "an integer" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")
    return int(value)


def _memory(edges: float) -> str:
    gb = edges * BYTES_PER_EDGE / 1e9
    return f"{gb:,.1f} GB" if gb >= 0.1 else f"{edges * BYTES_PER_EDGE / 1e6:,.0f} MB"


def _too_many_edges(
    n: int, threshold: float, estimate: float, max_edges: int, max_degree: int | None
) -> str:
    capped = f" with max_degree={max_degree}" if max_degree is not None else ""
    return (
        f"the label graph over {n:,} labels at threshold {threshold}{capped} would have about "
        f"{estimate:,.0f} edges (mean degree {2 * estimate / max(n, 1):,.1f}), needing about "
        f"{_memory(estimate)} of memory, above max_edges={max_edges:,}. Raise the threshold, "
        "merge near-duplicate labels, keep each label's closest neighbours only with "
        "max_degree=K, or raise max_edges"
    )


def _similarities(emb: np.ndarray, start: int, stop: int, col_start: int) -> np.ndarray:
    """Cosines of labels ``start:stop`` with labels ``col_start:`` (one block)."""
    return emb[start:stop] @ emb[col_start:].T


def _estimate_edges(
    emb: np.ndarray, thr: np.float32, sample: int, max_degree: int | None
) -> tuple[float, int]:
    """Undirected edges expected at ``thr``, from a uniform sample of rows against all rows.

    Each undirected edge has two ends, so ``E ~ mean(sampled degree) * K / 2``; with
    ``max_degree`` each sampled degree is cut to it first. Returns ``(estimate, rows sampled)``.
    """
    n = emb.shape[0]
    m = min(n, sample)
    rows = np.sort(np.random.default_rng(0).choice(n, size=m, replace=False))
    step = max(1, _CELLS // max(n, 1))
    degree_sum = 0
    for a in range(0, m, step):
        chunk = rows[a : a + step]
        sims = emb[chunk] @ emb.T
        sims[np.arange(chunk.size), chunk] = -np.inf  # a label is not its own neighbour
        counts = np.count_nonzero(sims >= thr, axis=1)
        if max_degree is not None:
            counts = np.minimum(counts, max_degree)
        degree_sum += int(counts.sum())
    return degree_sum * n / m / 2, m


def _index_dtype(n: int):
    return np.int32 if n < 2**31 - 1 else np.int64


def _upper_edges(
    emb: np.ndarray,
    thr: np.float32,
    block_size: int,
    max_edges: int | None,
    threshold: float,
    show: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``r < c`` with cosine ``>= thr`` (float32 values), row block by row block."""
    n = emb.shape[0]
    itype = _index_dtype(n)
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    vals_out: list[np.ndarray] = []
    total = 0
    starts = range(0, n, block_size)
    for b, start in enumerate(tqdm(starts, desc="Label graph", unit="block", disable=not show)):
        stop = min(start + block_size, n)
        sims = _similarities(emb, start, stop, start)  # upper triangle: columns from `start` on
        hits = sims >= thr
        m = stop - start
        hits[:, :m] &= ~np.tri(m, m, 0, dtype=bool)  # strictly above the diagonal
        count = int(np.count_nonzero(hits))
        if max_edges is not None and total + count > max_edges:
            covered = stop * (n - 1) - stop * (stop - 1) / 2  # pairs r < c with r < stop
            estimate = (total + count) * (n * (n - 1) / 2) / covered
            raise GraphTooLargeError(
                _too_many_edges(n, threshold, estimate, max_edges, None)
                + f" (stopped after {b + 1} of {len(starts)} blocks, {total + count:,} edges so "
                "far; the estimate extrapolates them)"
            )
        total += count
        r, c = np.nonzero(hits)
        rows_out.append((r + start).astype(itype))
        cols_out.append((c + start).astype(itype))
        vals_out.append(sims[r, c])
        del sims, hits, r, c
    if not rows_out:
        return np.empty(0, itype), np.empty(0, itype), np.empty(0, np.float32)
    return np.concatenate(rows_out), np.concatenate(cols_out), np.concatenate(vals_out)


def _mutual_top_edges(
    emb: np.ndarray,
    thr: np.float32,
    block_size: int,
    max_edges: int | None,
    max_degree: int,
    threshold: float,
    show: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Edges ``r < c`` with cosine ``>= thr`` where each end is among the other's
    ``max_degree`` most similar labels (ties to the lower index).

    Returns ``(rows, cols, values, labels over max_degree, edges above the threshold)``.
    """
    n = emb.shape[0]
    itype = _index_dtype(n)
    step = max(1, min(block_size, _CELLS // max(n, 1)))
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    val: list[np.ndarray] = []
    directed_hits = 0
    over = 0
    kept = 0
    starts = range(0, n, step)
    for b, start in enumerate(tqdm(starts, desc="Label graph", unit="block", disable=not show)):
        stop = min(start + step, n)
        m = stop - start
        sims = _similarities(emb, start, stop, 0)
        sims[np.arange(m), np.arange(start, stop)] = -np.inf  # a label is not its own neighbour
        keep = sims >= thr
        counts = np.count_nonzero(keep, axis=1)
        directed_hits += int(counts.sum())
        big = np.flatnonzero(counts > max_degree)
        if big.size:
            over += int(big.size)
            sub = np.where(keep[big], sims[big], np.float32(-np.inf))
            kth = np.partition(sub, n - max_degree, axis=1)[:, n - max_degree, None]
            above = sub > kth
            need = max_degree - np.count_nonzero(above, axis=1)
            tied = sub == kth
            keep[big] = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need[:, None]))
            del sub, above, tied
        r, c = np.nonzero(keep)
        kept += r.size
        if max_edges is not None and kept / 2 > max_edges:
            estimate = kept / 2 * n / stop
            raise GraphTooLargeError(
                _too_many_edges(n, threshold, estimate, max_edges, max_degree)
                + f" (stopped after {b + 1} of {len(starts)} blocks)"
            )
        src.append((r + start).astype(itype))
        dst.append(c.astype(itype))
        val.append(sims[r, c])
        del sims, keep, r, c
    if src:
        a = sp.coo_matrix(
            (np.concatenate(val), (np.concatenate(src), np.concatenate(dst))), shape=(n, n)
        ).tocsr()
    else:
        a = sp.csr_matrix((n, n), dtype=np.float32)
    del src, dst, val
    pattern = a.copy()
    pattern.data[:] = 1
    # an entry survives only where its transpose exists; values from the row of the lower index
    mutual = sp.triu(a.multiply(pattern.T), k=1).tocoo()
    return (
        mutual.row.astype(itype),
        mutual.col.astype(itype),
        mutual.data.astype(np.float32),
        over,
        directed_hits // 2,
    )


def _check_build_options(
    threshold: float, block_size, max_edges, max_degree
) -> tuple[int, int | None, int | None]:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not -1.0 <= threshold <= 1.0
    ):
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    return (
        _check_count("block_size", block_size, minimum=1),
        _check_count("max_edges", max_edges, minimum=0, allow_none=True),
        _check_count("max_degree", max_degree, minimum=1, allow_none=True),
    )


def _cache_key(
    labels: list[str],
    embed,
    name: str,
    threshold: float,
    block_size: int,
    max_edges: int | None,
    max_degree: int | None,
) -> str | None:
    """The cache key of a graph built from ``labels`` with ``embed`` (named ``name``), or
    ``None`` when the embedder's content cannot be identified (then the graph is not cached)."""
    from hf_mig.models.identity import ModelIdentityError

    try:
        identity = embedder_identity(embed)
    except ModelIdentityError as err:
        logger.info("label graph cache not used: %s", err)
        return None
    if identity is None:
        return None
    return graph_cache_key(
        labels,
        embedder=name,
        identity=identity,
        threshold=threshold,
        block_size=block_size,
        max_edges=max_edges,
        max_degree=max_degree,
    )


def _check_labels(labels: Sequence[str]) -> list[str]:
    out = list(labels)
    seen: dict[str, int] = {}
    for i, label in enumerate(out):
        if not isinstance(label, str):
            raise TypeError(f"label {i} must be a string, got {type(label).__name__}: {label!r}")
        if label in seen:
            raise ValueError(f"duplicate label {label!r} at positions {seen[label]} and {i}")
        seen[label] = i
    return out


@dataclass
class LabelGraph:
    """Labels (node order) and W as a ``scipy.sparse.csr_matrix`` of float64.

    Build it with :meth:`from_labels`, :meth:`from_embeddings` or :meth:`from_edges`; persist it
    with :meth:`save` / :meth:`load` (a ``.npz`` of plain arrays, no pickle).
    """

    labels: list[str]
    weights: sp.csr_matrix
    threshold: float | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = _check_labels(self.labels)
        n = len(self.labels)
        w = sp.csr_matrix(self.weights, dtype=np.float64)
        if w.shape != (n, n):
            raise ValueError(f"weights must be {n} x {n} for {n} labels, got {w.shape}")
        w.sum_duplicates()
        w.sort_indices()
        self.weights = w
        self._index: dict[str, int] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edges(
        cls,
        labels: Sequence[str],
        rows: Sequence[int],
        cols: Sequence[int],
        weights: Sequence[float],
        *,
        threshold: float | None = None,
        symmetrize: bool = False,
        metadata: dict | None = None,
    ) -> LabelGraph:
        """A graph from explicit entries of W (both directions, diagonal optional).

        Missing diagonal entries are set to 1. An asymmetric input is an error unless
        ``symmetrize=True``, which mirrors one-sided edges (taking the larger weight where both
        directions are given).
        """
        labels = _check_labels(labels)
        n = len(labels)
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        vals = np.asarray(weights, dtype=np.float64)
        if not (rows.shape == cols.shape == vals.shape) or rows.ndim != 1:
            raise ValueError(
                f"rows, cols and weights must be 1-D of equal length, got "
                f"{rows.shape}, {cols.shape}, {vals.shape}"
            )
        for name, arr in (("rows", rows), ("cols", cols)):
            bad = np.flatnonzero((arr < 0) | (arr >= n))
            if bad.size:
                raise ValueError(
                    f"{name}[{bad[0]}] = {arr[bad[0]]} is not a label index in [0, {n})"
                )
        bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0))
        if bad.size:
            raise ValueError(f"weights[{bad[0]}] = {vals[bad[0]]}: weights must be finite and >= 0")
        w = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
        w.sum_duplicates()
        if symmetrize:
            w = w.maximum(w.T).tocsr()
        else:
            diff = (w - w.T).tocoo()
            mask = np.abs(diff.data) > 0
            if mask.any():
                i, j = int(diff.row[mask][0]), int(diff.col[mask][0])
                raise ValueError(
                    f"W is not symmetric: W[{i}, {j}] = {w[i, j]} but W[{j}, {i}] = {w[j, i]} "
                    f"({labels[i]!r} / {labels[j]!r}); pass symmetrize=True to mirror edges"
                )
        diag = w.diagonal()
        missing = np.flatnonzero(diag == 0)
        if missing.size:
            w = (
                w + sp.csr_matrix((np.ones(missing.size), (missing, missing)), shape=(n, n))
            ).tocsr()
        return cls(labels, w, threshold=threshold, metadata=dict(metadata or {}))

    @classmethod
    def from_embeddings(
        cls,
        labels: Sequence[str],
        embeddings: np.ndarray,
        *,
        threshold: float,
        block_size: int = 2048,
        max_edges: int | None = DEFAULT_MAX_EDGES,
        max_degree: int | None = None,
        progress: bool | None = None,
        metadata: dict | None = None,
    ) -> LabelGraph:
        """Threshold cosine similarities of label embeddings, block by block.

        Embeddings are L2-normalised here (float32). Memory is ``O(block_size * K + edges)``.

        ``max_edges`` caps the undirected edges (self-loops excluded) the graph may have; the
        default (:data:`DEFAULT_MAX_EDGES`, about 2.4 GB at the peak) is far above
        any real label vocabulary (the 4,531 InsTag tags have 711 edges with all-MiniLM-L6-v2
        at T=0.8). Before any block is thresholded the edge count is estimated from the
        similarities of a sample of labels to all labels; an estimate above the cap raises
        :class:`GraphTooLargeError` with the estimate and the memory it needs, and so does a
        running count that crosses the cap while blocks are thresholded. ``None`` disables the
        cap.

        ``max_degree`` keeps, for each label, only its ``max_degree`` most similar labels above
        the threshold (ties to the lower node index), and an edge only when each end is among
        the other's kept neighbours, so no label has more than ``max_degree`` neighbours and the
        graph at most ``K * max_degree / 2`` edges. Edges dropped this way are counted, never
        silent: ``metadata["labels_over_max_degree"]`` (labels that had more neighbours above
        the threshold) and ``metadata["edges_above_threshold"]`` (edges before the cap), with a
        warning when any were dropped. Similarities are then computed over whole rows (twice
        the work of the default upper-triangle pass).
        """
        labels = _check_labels(labels)
        emb = normalize_rows(embeddings)
        n = len(labels)
        if emb.shape[0] != n:
            raise ValueError(f"{n} labels but {emb.shape[0]} embedding rows")
        block_size, max_edges, max_degree = _check_build_options(
            threshold, block_size, max_edges, max_degree
        )
        meta = dict(metadata or {})
        thr = np.float32(threshold)
        show = progress if progress is not None else n > 20_000
        if max_edges is not None and n > block_size:
            estimate, sampled = _estimate_edges(emb, thr, max(block_size, 1024), max_degree)
            if estimate > max_edges:
                raise GraphTooLargeError(
                    _too_many_edges(n, threshold, estimate, max_edges, max_degree)
                    + f" (estimated from the similarities of {sampled:,} sampled labels to all "
                    "labels, before building)"
                )
        if max_degree is None:
            r, c, v = _upper_edges(emb, thr, block_size, max_edges, threshold, show)
        else:
            r, c, v, over, above = _mutual_top_edges(
                emb, thr, block_size, max_edges, max_degree, threshold, show
            )
            meta["max_degree"] = max_degree
            meta["labels_over_max_degree"] = over
            meta["edges_above_threshold"] = above
            if over:
                logger.warning(
                    "label graph: %d of %d labels have more than max_degree=%d neighbours at "
                    "T=%s; kept %d of about %d edges (mutual top-%d)",
                    over,
                    n,
                    max_degree,
                    threshold,
                    r.size,
                    above,
                    max_degree,
                )
        diag = np.arange(n, dtype=np.int64)
        v = v.astype(np.float64)
        w = sp.coo_matrix(
            (
                np.concatenate([v, v, np.ones(n)]),
                (np.concatenate([r, c, diag]), np.concatenate([c, r, diag])),
            ),
            shape=(n, n),
        ).tocsr()
        return cls(labels, w, threshold=float(threshold), metadata=meta)

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[str],
        *,
        embedder: EmbedderLike | None = None,
        threshold: float | None = None,
        block_size: int = 2048,
        max_edges: int | None = DEFAULT_MAX_EDGES,
        max_degree: int | None = None,
        progress: bool | None = None,
        cache: bool | str | os.PathLike = True,
    ) -> LabelGraph:
        """Embed the labels (as raw strings) and threshold their cosine similarities.

        ``embedder``: a sentence-transformers model id or local path, ``"static:<model>"``, or a
        callable ``list[str] -> array``; default all-MiniLM-L6-v2. ``threshold`` defaults to the
        value calibrated for a known embedder (see ``hf_mig.models.embedders.DEFAULT_THRESHOLDS``).
        ``max_edges`` and ``max_degree``: see :meth:`from_embeddings`.

        ``cache``: ``True`` (default) reads and writes the on-disk cache in
        :func:`graph_cache_dir`, a folder uses that folder instead, ``False`` disables it. Only
        graphs of named embedders are cached (see the module docstring); a hit is logged (INFO)
        with its key and path and returns the stored graph, equal to a fresh build, without
        loading the embedder. An entry that cannot be read or does not hold the requested labels,
        threshold and ``max_degree`` is reported with a warning and rebuilt. A model whose
        content cannot be identified, or a cache folder that cannot be written, means no caching
        (logged), never an error.
        """
        from hf_mig.models.embedders import default_threshold

        labels = _check_labels(labels)
        folder = cache_folder(cache)
        if threshold is None:
            threshold = default_threshold(embedder)
        _check_build_options(threshold, block_size, max_edges, max_degree)
        embed = load_embedder(embedder)
        name = embedder_name(embedder)
        path = key = None
        if folder is not None and labels:
            key = _cache_key(labels, embed, name, threshold, block_size, max_edges, max_degree)
        if key is not None:
            path = folder / f"{key}.npz"
            cached = read_cached(path, key, labels, threshold, max_degree, cls.load)
            if cached is not None:
                return cached
        embeddings = embed(labels) if labels else np.zeros((0, 1), np.float32)
        graph = cls.from_embeddings(
            labels,
            embeddings,
            threshold=threshold,
            block_size=block_size,
            max_edges=max_edges,
            max_degree=max_degree,
            progress=progress,
            metadata={"embedder": name},
        )
        if path is not None:
            try:
                graph._write(path, {"cache_key": key})
            except OSError as err:
                logger.warning("label graph cache: could not write %s (%s)", path, err)
            else:
                logger.info("label graph cached: key %s, %s", key, path)
        return graph

    # ------------------------------------------------------------------ queries
    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def index(self) -> dict[str, int]:
        """Label -> node id."""
        if self._index is None:
            self._index = {label: i for i, label in enumerate(self.labels)}
        return self._index

    def neighbors(self, label: str) -> list[tuple[str, float]]:
        """Labels linked to ``label`` (excluding itself), by decreasing similarity."""
        i = self.index[label]
        start, stop = self.weights.indptr[i], self.weights.indptr[i + 1]
        pairs = [
            (self.labels[j], float(w))
            for j, w in zip(self.weights.indices[start:stop], self.weights.data[start:stop])
            if j != i
        ]
        return sorted(pairs, key=lambda p: (-p[1], p[0]))

    def degrees(self) -> np.ndarray:
        """Number of neighbours of each label (self excluded)."""
        w = self.weights
        counts = np.diff(w.indptr)
        has_self = w.diagonal() != 0
        return counts - has_self.astype(counts.dtype)

    def stats(self) -> dict:
        """Nodes, undirected edges (self-loops excluded), isolated labels, degree histogram."""
        deg = self.degrees()
        hist = np.bincount(deg) if deg.size else np.zeros(1, dtype=np.int64)
        return {
            "num_labels": self.num_labels,
            "num_edges": int(deg.sum() // 2),
            "isolated_labels": int((deg == 0).sum()),
            "max_degree": int(deg.max()) if deg.size else 0,
            "mean_degree": float(deg.mean()) if deg.size else 0.0,
            "degree_histogram": {int(d): int(c) for d, c in enumerate(hist) if c},
            "threshold": self.threshold,
        }

    def subgraph(self, labels: Sequence[str]) -> LabelGraph:
        """The graph induced on ``labels`` (in that order); unknown labels raise KeyError."""
        missing = [label for label in labels if label not in self.index]
        if missing:
            raise KeyError(f"{len(missing)} labels are not in the graph, e.g. {missing[:3]}")
        ids = np.array([self.index[label] for label in labels], dtype=np.int64)
        sub = self.weights[ids][:, ids]
        return LabelGraph(list(labels), sub, threshold=self.threshold, metadata=dict(self.metadata))

    def fingerprint(self) -> str:
        """``sha256:<hex>`` of what a selection reads from the graph: the labels in node order,
        the threshold and W's nonzero entries (float64). ``metadata`` is not part of it, so
        equal graphs (a saved graph loaded twice, a cached and a fresh build) have one
        fingerprint, and graphs that differ in any label, position, edge or weight do not."""
        w = sp.csr_matrix(self.weights, dtype=np.float64, copy=True)
        w.sum_duplicates()
        w.eliminate_zeros()
        threshold = None if self.threshold is None else float(self.threshold)
        head = {"labels": list(self.labels), "shape": list(w.shape), "threshold": threshold}
        digest = hashlib.sha256(json.dumps(head, ensure_ascii=False).encode("utf-8"))
        for array in (w.indptr.astype(np.int64), w.indices.astype(np.int64), w.data):
            digest.update(b"\0" + np.ascontiguousarray(array).tobytes())
        return "sha256:" + digest.hexdigest()

    def propagation_matrix(self, prop_weight: float = 1.0) -> sp.csr_matrix:
        """P = diag(W) + prop_weight * offdiag(W), each column divided by its sum (float64)."""
        if not np.isfinite(prop_weight) or prop_weight < 0:
            raise ValueError(f"prop_weight must be finite and >= 0, got {prop_weight}")
        w = self.weights.tocoo()
        scale = np.where(w.row == w.col, 1.0, float(prop_weight))
        data = w.data * scale
        keep = data != 0
        p = sp.csr_matrix((data[keep], (w.row[keep], w.col[keep])), shape=w.shape)
        colsum = np.asarray(p.sum(axis=0)).ravel()
        empty = np.flatnonzero(colsum == 0)
        if empty.size:
            raise ValueError(
                f"label {self.labels[empty[0]]!r} has an all-zero column in P "
                f"(its self-similarity is 0); {empty.size} such labels"
            )
        p.sort_indices()
        p.data = p.data / colsum[p.indices]
        return p

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write a ``.npz`` holding ``labels, rows, cols, weights`` (all entries, both
        directions) and a JSON ``meta`` string; readable with ``numpy.load(allow_pickle=False)``.

        The file is written beside ``path`` and renamed onto it, so an interrupted save never
        leaves a truncated graph; an existing file at ``path`` is replaced.
        """
        self._write(path, {})

    def _write(self, path: str | os.PathLike, extra: dict) -> None:
        """:meth:`save` with ``extra`` entries added to the ``meta`` JSON."""
        from hf_mig.data.io import atomic_output

        w = self.weights.tocoo()
        meta = {
            "format_version": FORMAT_VERSION,
            "threshold": self.threshold,
            **self.metadata,
            **extra,
        }
        with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                labels=np.array(self.labels, dtype=str),
                rows=w.row.astype(np.int32),
                cols=w.col.astype(np.int32),
                weights=w.data.astype(np.float64),
                meta=np.array(json.dumps(meta)),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelGraph:
        """Read a graph written by :meth:`save` (or any npz with labels/rows/cols/weights).

        Raises ``FileNotFoundError`` for a missing file and :class:`LabelGraphFormatError`,
        naming the file, for one that is truncated or corrupted, is not an ``.npz`` archive,
        lacks one of the arrays ``labels, rows, cols, weights`` or holds inconsistent ones.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"label graph {path!r} not found")
        if os.path.isdir(path):
            raise LabelGraphFormatError(f"{path}: is a folder, not a label graph .npz file")
        with open(path, "rb") as fh:
            head = fh.read(6)
        hint = "write graphs with `hf-mig graph` or LabelGraph.save"
        if not head.startswith(b"PK"):
            what = "an empty file" if not head else f"a file starting with {head!r}"
            raise LabelGraphFormatError(
                f"{path}: not a label graph: {what}, not an .npz (zip) archive; {hint}"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [name for name in _NPZ_ARRAYS if name not in z.files]
                if missing:
                    raise LabelGraphFormatError(
                        f"{path}: not a label graph: missing arrays {missing} (found "
                        f"{sorted(z.files)}); a label graph holds {list(_NPZ_ARRAYS)}"
                    )
                meta_text = str(z["meta"]) if "meta" in z.files else "{}"
                arrays = {name: z[name] for name in _NPZ_ARRAYS}
        except LabelGraphFormatError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
            raise LabelGraphFormatError(
                f"{path}: truncated or corrupted label graph .npz ({type(err).__name__}: {err}); "
                f"write it again ({hint})"
            ) from err
        try:
            meta = json.loads(meta_text)
        except json.JSONDecodeError as err:
            raise LabelGraphFormatError(f"{path}: array 'meta' is not JSON: {err}") from err
        if not isinstance(meta, dict):
            raise LabelGraphFormatError(f"{path}: array 'meta' must be a JSON object")
        labels, rows, cols, weights = (arrays[name] for name in _NPZ_ARRAYS)
        if labels.ndim != 1 or labels.dtype.kind not in "US":
            raise LabelGraphFormatError(
                f"{path}: array 'labels' must be 1-D strings, got {labels.dtype} {labels.shape}"
            )
        for name, arr, kinds in (
            ("rows", rows, "iu"),
            ("cols", cols, "iu"),
            ("weights", weights, "fiu"),
        ):
            if arr.ndim != 1 or arr.dtype.kind not in kinds:
                raise LabelGraphFormatError(
                    f"{path}: array {name!r} must be 1-D numbers, got {arr.dtype} {arr.shape}"
                )
        threshold = meta.pop("threshold", None)
        meta.pop("format_version", None)
        try:
            return cls.from_edges(
                [str(s) for s in labels.tolist()],
                rows,
                cols,
                weights,
                threshold=threshold,
                metadata=meta,
            )
        except (TypeError, ValueError) as err:
            raise LabelGraphFormatError(f"{path}: not a valid label graph: {err}") from err

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"LabelGraph(num_labels={s['num_labels']}, num_edges={s['num_edges']}, "
            f"threshold={self.threshold})"
        )
