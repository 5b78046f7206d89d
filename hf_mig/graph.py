"""The label graph: a label vocabulary and a sparse symmetric similarity matrix W.

``W[p, q] = cos(emb(p), emb(q))`` where that cosine is ``>= threshold`` (inclusive), else 0; the
diagonal is 1. The graph never materialises a dense K x K matrix: similarities are computed in
row blocks over the upper triangle and thresholded block by block.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .embedders import EmbedderLike, embedder_name, load_embedder, normalize_rows

FORMAT_VERSION = 1


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
        progress: bool | None = None,
        metadata: dict | None = None,
    ) -> LabelGraph:
        """Threshold cosine similarities of label embeddings, block by block.

        Embeddings are L2-normalised here (float32). Memory is ``O(block_size * K + edges)``.
        """
        labels = _check_labels(labels)
        emb = normalize_rows(embeddings)
        n = len(labels)
        if emb.shape[0] != n:
            raise ValueError(f"{n} labels but {emb.shape[0]} embedding rows")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
        rows_out: list[np.ndarray] = []
        cols_out: list[np.ndarray] = []
        vals_out: list[np.ndarray] = []
        starts = range(0, n, block_size)
        show = progress if progress is not None else n > 20_000
        for start in tqdm(starts, desc="Label graph", unit="block", disable=not show):
            stop = min(start + block_size, n)
            sims = emb[start:stop] @ emb[start:].T  # upper triangle: columns from `start` on
            r, c = np.nonzero(sims >= np.float32(threshold))
            c_abs = c + start
            r_abs = r + start
            keep = c_abs > r_abs  # strictly above the diagonal
            rows_out.append(r_abs[keep])
            cols_out.append(c_abs[keep])
            vals_out.append(sims[r[keep], c[keep]].astype(np.float64))
            del sims
        r = np.concatenate(rows_out) if rows_out else np.empty(0, np.int64)
        c = np.concatenate(cols_out) if cols_out else np.empty(0, np.int64)
        v = np.concatenate(vals_out) if vals_out else np.empty(0)
        diag = np.arange(n)
        w = sp.coo_matrix(
            (
                np.concatenate([v, v, np.ones(n)]),
                (np.concatenate([r, c, diag]), np.concatenate([c, r, diag])),
            ),
            shape=(n, n),
        ).tocsr()
        return cls(labels, w, threshold=float(threshold), metadata=dict(metadata or {}))

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[str],
        *,
        embedder: EmbedderLike | None = None,
        threshold: float | None = None,
        block_size: int = 2048,
        progress: bool | None = None,
    ) -> LabelGraph:
        """Embed the labels (as raw strings) and threshold their cosine similarities.

        ``embedder``: a sentence-transformers model id or local path, or a callable
        ``list[str] -> array``; default all-MiniLM-L6-v2. ``threshold`` defaults to the value
        calibrated for a known embedder (see ``hf_mig.embedders.DEFAULT_THRESHOLDS``).
        """
        from .embedders import default_threshold

        labels = _check_labels(labels)
        if threshold is None:
            threshold = default_threshold(embedder)
        embed = load_embedder(embedder)
        embeddings = embed(labels) if labels else np.zeros((0, 1), np.float32)
        meta = {"embedder": embedder_name(embedder)}
        return cls.from_embeddings(
            labels,
            embeddings,
            threshold=threshold,
            block_size=block_size,
            progress=progress,
            metadata=meta,
        )

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
        """
        w = self.weights.tocoo()
        meta = {"format_version": FORMAT_VERSION, "threshold": self.threshold, **self.metadata}
        path = os.fspath(path)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as fh:
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
        """Read a graph written by :meth:`save` (or any npz with labels/rows/cols/weights)."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            missing = {"labels", "rows", "cols", "weights"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a label graph, missing arrays {sorted(missing)}")
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            labels = [str(s) for s in z["labels"].tolist()]
            rows, cols, weights = z["rows"], z["cols"], z["weights"]
        threshold = meta.pop("threshold", None)
        meta.pop("format_version", None)
        return cls.from_edges(labels, rows, cols, weights, threshold=threshold, metadata=meta)

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"LabelGraph(num_labels={s['num_labels']}, num_edges={s['num_edges']}, "
            f"threshold={self.threshold})"
        )
