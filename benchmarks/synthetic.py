"""Synthetic selection pools shaped like the Tulu 3 pool used in the MIG paper.

The real pool has 939K rows, a vocabulary of 4,531 InsTag labels, ~4 labels per row (1 to 10),
a label-frequency curve with a few very frequent labels and a long tail, DEITA scores
(quality x complexity, each an expectation over "1".."6"; mean around 10-15) and a thresholded
label-similarity graph with ~1.7K edges, so that a propagated row ``u_i = e_i @ P`` has ~19
non-zeros (SPEC section 2b). Everything here reproduces that shape, deterministically from a
seed, with vectorised numpy (a 10M-row pool takes a few seconds).

Public functions:

- :func:`make_pool_arrays` -> ``(indptr, label_ids, scores)``: the CSR of sample -> label ids.
- :func:`make_label_edges` / :func:`make_label_graph`: the symmetric label graph (diagonal 1).
- :func:`label_names`: word-like, unique, lexicographically sorted label strings, so that
  label id ``j`` is the ``j``-th label of a sorted vocabulary.
- :func:`make_pool_dataset`: the same pool as a ``datasets.Dataset`` with a ``labels`` column
  of strings and a ``score`` column, built through pyarrow without Python-level row loops.
- :func:`clustered_embeddings`: L2-normalised vectors in clusters, for graph-building benchmarks.

The label frequencies are shared by the pool and the graph for one seed (frequent labels get
more graph neighbours, as generic tags do with real embeddings), so pool and graph must be made
with the same ``seed`` and ``k_labels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import datasets

    from hf_mig.annotate.graph import LabelGraph

__all__ = [
    "TULU_K_LABELS",
    "TULU_N_ROWS",
    "clustered_embeddings",
    "label_frequencies",
    "label_names",
    "make_label_edges",
    "make_label_graph",
    "make_pool_arrays",
    "make_pool_dataset",
    "pool_stats",
]

TULU_N_ROWS = 939_000
TULU_K_LABELS = 4_531

# Distribution of the number of labels per row (1..10); mean ~3.97.
_COUNT_PROBS = np.array([0.10, 0.17, 0.20, 0.18, 0.13, 0.09, 0.06, 0.04, 0.02, 0.01])
# Zipf-like label frequencies: p(rank r) ~ (r + _ZIPF_OFFSET) ** -_ZIPF_EXPONENT.
_ZIPF_EXPONENT = 1.0
_ZIPF_OFFSET = 3.0
# Resolution of the lookup table used to draw labels (each label gets >= 1 slot).
_TABLE_BITS = 22
# Graph: number of undirected off-diagonal edges per label, and how strongly a label's graph
# degree follows its frequency (Chung-Lu weights ~ p ** _DEGREE_EXPONENT).
_EDGES_PER_LABEL = 0.35
_DEGREE_EXPONENT = 0.5
_GRAPH_THRESHOLD = 0.7

# Stream ids for ``np.random.default_rng([seed, stream])``, so that each part of the pool is
# independent of the others and of ``n``.
_STREAM_FREQ, _STREAM_COUNTS, _STREAM_LABELS, _STREAM_SCORES, _STREAM_GRAPH = range(5)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def label_frequencies(k_labels: int, seed: int) -> np.ndarray:
    """Return the probability of each label id (float64, length ``k_labels``, sums to 1).

    Zipf-like over ranks, with ranks randomly permuted over ids so that frequency is
    unrelated to the (lexicographic) label order. Deterministic given ``(k_labels, seed)``.
    """
    if k_labels < 1:
        raise ValueError(f"k_labels must be >= 1, got {k_labels}")
    ranks = np.arange(k_labels, dtype=np.float64)
    freq = (ranks + _ZIPF_OFFSET) ** (-_ZIPF_EXPONENT)
    freq /= freq.sum()
    perm = _rng(seed, _STREAM_FREQ).permutation(k_labels)
    p = np.empty(k_labels, dtype=np.float64)
    p[perm] = freq
    return p


def _lookup_table(p: np.ndarray) -> np.ndarray:
    """Table of label ids where label ``j`` fills ~``p[j] * len(table)`` slots (at least 1)."""
    size = max(1 << _TABLE_BITS, 8 * p.size)
    slots = np.maximum(1, np.floor(p * size).astype(np.int64))
    return np.repeat(np.arange(p.size, dtype=np.int32), slots)


def make_pool_arrays(
    n: int = TULU_N_ROWS, k_labels: int = TULU_K_LABELS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate a synthetic pool as arrays.

    Returns ``(indptr, label_ids, scores)``:

    - ``indptr``: int64, length ``n + 1``, ``indptr[0] == 0``; row ``i``'s labels are
      ``label_ids[indptr[i]:indptr[i + 1]]``.
    - ``label_ids``: int32 in ``[0, k_labels)``; every row has 1 to 10 labels, distinct and
      sorted ascending within the row.
    - ``scores``: float64, length ``n``, all > 0 (DEITA-like, mean ~11).

    Deterministic given ``(n, k_labels, seed)``; rows are independent draws, and the label
    frequencies depend only on ``(k_labels, seed)``. Requires ``k_labels >= 10``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if k_labels < 10:
        raise ValueError(f"k_labels must be >= 10 (rows have up to 10 labels), got {k_labels}")
    p = label_frequencies(k_labels, seed)
    table = _lookup_table(p)
    counts_rng = _rng(seed, _STREAM_COUNTS)
    counts = counts_rng.choice(np.arange(1, 11), size=n, p=_COUNT_PROBS).astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    label_ids = np.empty(int(indptr[-1]), dtype=np.int32)

    rng = _rng(seed, _STREAM_LABELS)
    for c in range(1, 11):
        rows_c = np.flatnonzero(counts == c)
        if rows_c.size == 0:
            continue
        mat = table[rng.integers(0, table.size, size=(rows_c.size, c))]
        mat.sort(axis=1)
        # Redraw the duplicates of rows that drew a label twice until every row is distinct.
        bad = np.flatnonzero((mat[:, 1:] == mat[:, :-1]).any(axis=1))
        while bad.size:
            sub = mat[bad]
            dup = np.zeros(sub.shape, dtype=bool)
            dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
            sub[dup] = table[rng.integers(0, table.size, size=int(dup.sum()))]
            sub.sort(axis=1)
            mat[bad] = sub
            bad = bad[(sub[:, 1:] == sub[:, :-1]).any(axis=1)]
        label_ids[indptr[rows_c][:, None] + np.arange(c)] = mat

    scores = _deita_scores(n, _rng(seed, _STREAM_SCORES))
    return indptr, label_ids, scores


def _deita_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """DEITA-like scores: mean over 1-3 turns of quality x complexity, each in [1, 6]."""
    turns = rng.choice(np.array([1, 2, 3]), size=n, p=[0.7, 0.2, 0.1])
    total = np.zeros(n, dtype=np.float64)
    for t in range(3):
        active = turns > t
        m = int(active.sum())
        quality = np.clip(np.exp(rng.normal(np.log(3.6), 0.25, size=m)), 1.0, 6.0)
        complexity = np.clip(np.exp(rng.normal(np.log(2.9), 0.30, size=m)), 1.0, 6.0)
        total[active] += quality * complexity
    return total / turns


def make_label_edges(
    k_labels: int = TULU_K_LABELS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate the thresholded label-similarity graph as symmetric COO edges.

    Returns ``(rows, cols, weights)`` (int32, int32, float32) listing every non-zero of the
    K x K matrix W: the diagonal ``(j, j, 1.0)`` for every label, and each undirected edge in
    both directions with the same weight in ``[0.7, 1.0)`` (cosines that passed a 0.7
    threshold). Entries are sorted by ``(row, col)`` without duplicates.

    Edges follow a Chung-Lu model whose expected degrees grow with the label frequency of
    :func:`label_frequencies` (same ``seed``), ``~0.37 * k_labels`` undirected edges in all:
    at 4,531 labels ~1.65K edges, and ~19 non-zeros per propagated row of the matching pool.
    Deterministic given ``(k_labels, seed)``.
    """
    p = label_frequencies(k_labels, seed)
    rng = _rng(seed, _STREAM_GRAPH)
    n_edges = int(round(_EDGES_PER_LABEL * k_labels))
    w = p**_DEGREE_EXPONENT
    table = _lookup_table(w / w.sum())
    keys = np.empty(0, dtype=np.int64)
    draw = max(64, 2 * n_edges)
    while keys.size < n_edges:
        a = table[rng.integers(0, table.size, size=draw)].astype(np.int64)
        b = table[rng.integers(0, table.size, size=draw)].astype(np.int64)
        keep = a != b
        lo = np.minimum(a, b)[keep]
        hi = np.maximum(a, b)[keep]
        new = lo * k_labels + hi
        # Keep the first occurrence of each pair, in draw order, so the result is stable.
        allk = np.concatenate([keys, new])
        _, first = np.unique(allk, return_index=True)
        keys = allk[np.sort(first)]
    keys = keys[:n_edges]
    lo = (keys // k_labels).astype(np.int32)
    hi = (keys % k_labels).astype(np.int32)
    weights = _GRAPH_THRESHOLD + (1.0 - _GRAPH_THRESHOLD) * rng.beta(1.0, 3.0, size=n_edges)
    weights = np.minimum(weights, np.nextafter(1.0, 0.0)).astype(np.float32)
    diag = np.arange(k_labels, dtype=np.int32)
    rows = np.concatenate([diag, lo, hi])
    cols = np.concatenate([diag, hi, lo])
    vals = np.concatenate([np.ones(k_labels, dtype=np.float32), weights, weights])
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], vals[order]


def make_label_graph(k_labels: int = TULU_K_LABELS, seed: int = 0) -> LabelGraph:
    """Build the :class:`hf_mig.annotate.graph.LabelGraph` of :func:`make_label_edges`.

    Its labels are :func:`label_names` ``(k_labels)`` (sorted), so label id ``j`` in
    :func:`make_pool_arrays` is ``graph.labels[j]``.
    """
    from hf_mig.annotate.graph import LabelGraph

    rows, cols, weights = make_label_edges(k_labels, seed)
    return LabelGraph.from_edges(label_names(k_labels), rows, cols, weights)


_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w")
_NUCLEI = ("a", "e", "i", "o", "u", "ea", "io")
_CODAS = ("", "", "", "n", "r", "s", "t", "l")


def label_names(k_labels: int = TULU_K_LABELS) -> list[str]:
    """Return ``k_labels`` unique word-like label strings, sorted lexicographically.

    Names have 1-3 words of 2-4 syllables (e.g. ``"dalo tesivan"``), ~15 characters on average
    like InsTag tags. Deterministic given ``k_labels``.
    """
    rng = np.random.default_rng(20250413)
    syllables = np.array([o + n for o in _ONSETS for n in _NUCLEI])
    codas = np.array(_CODAS)
    names: set[str] = set()
    while len(names) < k_labels:
        batch = 2 * (k_labels - len(names)) + 16
        n_words = rng.choice(np.array([1, 2, 3]), size=batch, p=[0.3, 0.55, 0.15])
        words_total = int(n_words.sum())
        n_syll = rng.integers(2, 5, size=words_total)
        syl = syllables[rng.integers(0, syllables.size, size=int(n_syll.sum()))]
        coda = codas[rng.integers(0, codas.size, size=words_total)]
        pos = 0
        words = []
        for w_i in range(words_total):
            words.append("".join(syl[pos : pos + n_syll[w_i]]) + coda[w_i])
            pos += n_syll[w_i]
        pos = 0
        for c in n_words:
            names.add(" ".join(words[pos : pos + c]))
            pos += c
            if len(names) == k_labels:
                break
    return sorted(names)


def make_pool_dataset(
    n: int = TULU_N_ROWS, seed: int = 0, k_labels: int = TULU_K_LABELS
) -> datasets.Dataset:
    """Return :func:`make_pool_arrays` ``(n, k_labels, seed)`` as an in-memory ``Dataset``.

    Columns: ``labels`` (``list<string>``; row ``i`` holds ``label_names(k_labels)[j]`` for
    each of its label ids ``j``, in ascending id order) and ``score`` (float64). Built with
    ``pyarrow.ListArray.from_arrays`` over a ``take`` of the name array, so no Python loop
    over rows. Deterministic given ``(n, seed, k_labels)``.
    """
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    indptr, label_ids, scores = make_pool_arrays(n, k_labels, seed)
    names = pa.array(label_names(k_labels), type=pa.string())
    values = names.take(pa.array(label_ids))
    offsets_type = pa.int32() if indptr[-1] < np.iinfo(np.int32).max else pa.int64()
    offsets = pa.array(indptr.astype(offsets_type.to_pandas_dtype()), type=offsets_type)
    if offsets_type == pa.int32():
        labels = pa.ListArray.from_arrays(offsets, values)
    else:
        labels = pa.LargeListArray.from_arrays(offsets, values)
    table = pa.Table.from_arrays([labels, pa.array(scores)], names=["labels", "score"])
    return datasets.Dataset(InMemoryTable(table))


def pool_stats(
    indptr: np.ndarray, label_ids: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict[str, float]:
    """Summarise a pool and its graph: rows, labels per row, nnz per propagated row, edges.

    ``edges`` is :func:`make_label_edges`' output. The propagated-row count is the number of
    labels reachable in one graph step from a row's labels (its own labels included).
    """
    import scipy.sparse as sp

    rows, cols, _ = edges
    k_labels = int(max(rows.max(), label_ids.max() if label_ids.size else 0)) + 1
    n = indptr.size - 1
    v = sp.csr_matrix(
        (np.ones(label_ids.size, dtype=np.float32), label_ids, indptr), shape=(n, k_labels)
    )
    w = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(k_labels, k_labels)
    )
    u = v @ w
    freq = np.bincount(label_ids, minlength=k_labels)
    return {
        "rows": float(n),
        "labels": float(k_labels),
        "labels_per_row": float(label_ids.size / max(n, 1)),
        "propagated_nnz_per_row": float(u.nnz / max(n, 1)),
        "undirected_edges": float((rows != cols).sum() / 2),
        "top_label_row_share": float(freq.max() / max(n, 1)),
        "labels_used": float((freq > 0).sum()),
    }


def clustered_embeddings(
    k: int, dim: int = 384, seed: int = 0, mean_cluster_size: float = 3.0
) -> np.ndarray:
    """Return ``k`` L2-normalised float32 vectors of size ``dim`` that form small clusters.

    Each cluster has a random unit centre; a member is ``centre + noise`` with a per-cluster
    noise scale drawn so that, for ``dim = 384``, within-cluster cosines straddle 0.9 (some
    pairs pass a 0.9 threshold, most do not) while vectors of different clusters have cosines
    near 0 (std ~ 1/sqrt(dim)). Deterministic given ``(k, dim, seed, mean_cluster_size)``.
    """
    rng = np.random.default_rng([int(seed), 99])
    sizes = rng.geometric(1.0 / mean_cluster_size, size=k)
    cum = np.cumsum(sizes)
    n_clusters = int(np.searchsorted(cum, k) + 1)
    sizes = sizes[:n_clusters]
    sizes[-1] -= int(cum[n_clusters - 1] - k)
    cluster = np.repeat(np.arange(n_clusters), sizes)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # |noise| = sigma: two members have cosine ~ 1 / (1 + sigma^2); 0.9 <-> sigma ~ 0.33.
    sigma = rng.uniform(0.2, 0.45, size=n_clusters).astype(np.float32)
    noise = rng.standard_normal((k, dim)).astype(np.float32)
    noise *= (sigma[cluster] / np.sqrt(dim, dtype=np.float32))[:, None]
    emb = centres[cluster] + noise
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb
