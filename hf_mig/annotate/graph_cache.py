"""The on-disk cache of label graphs built by :meth:`hf_mig.annotate.graph.LabelGraph.from_labels`.

An entry is ``<key>.npz`` in :func:`graph_cache_dir` (or the folder given as ``cache``), written
by :meth:`~hf_mig.annotate.graph.LabelGraph.save`. The key (:func:`graph_cache_key`) is the SHA-256
of the sorted label set, the embedder's name and content identity (:func:`embedder_identity`),
the threshold, ``block_size``, ``max_edges``, ``max_degree``, :data:`GRAPH_CACHE_VERSION` and
the graph file's format version. Only named embedders have a content identity; a callable's
graph is never cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hf_mig.core.versions import package_versions

if TYPE_CHECKING:
    from hf_mig.annotate.graph import LabelGraph

# cache hits, misses and writes are logged as part of building the graph
logger = logging.getLogger("hf_mig.annotate.graph")

__all__ = [
    "FORMAT_VERSION",
    "GRAPH_CACHE_VERSION",
    "cache_folder",
    "embedder_identity",
    "graph_cache_dir",
    "graph_cache_key",
    "read_cached",
]

#: Version of the label graph files (``format_version`` of their metadata).
FORMAT_VERSION = 1

#: Version of the label-graph cache key and entry layout; part of every key.
GRAPH_CACHE_VERSION = 1

#: Packages whose versions are part of a cached graph's key, by embedder kind: the libraries that
#: turn the model's files into embeddings (and numpy, which thresholds them).
_EMBEDDING_PACKAGES = {
    "sentence-transformers": ("sentence-transformers", "transformers", "torch", "numpy"),
    "static": ("model2vec", "tokenizers", "numpy"),
}


def graph_cache_dir() -> Path:
    """Folder of cached label graphs: ``$HF_MIG_CACHE/label_graphs``, by default
    ``~/.cache/hf_mig/label_graphs`` (the root of every hf-mig cache,
    :func:`hf_mig.core.config.cache_root`)."""
    from hf_mig.core.config import cache_root

    return cache_root() / "label_graphs"


def embedder_identity(embed) -> dict | None:
    """What the embeddings of ``embed`` (an object returned by
    :func:`hf_mig.models.embedders.load_embedder`) depend on, or ``None`` when that cannot be
    known: a callable other than the named-model embedders has no content identity.

    A sentence-transformers model: the content identity of the folder or Hub snapshot it loads
    (:func:`hf_mig.models.identity.model_identity`), its batch size and device; a static
    embedder: its distillation key (source model content, parameters, versions) and
    ``max_length``; both with the versions of the packages that compute the embeddings.
    Raises :class:`hf_mig.models.identity.ModelIdentityError` when the model cannot be found.
    """
    from hf_mig.models.embedders import SentenceTransformerEmbedder, _offline_path
    from hf_mig.models.identity import model_identity
    from hf_mig.models.static_embedder import StaticEmbedder

    if isinstance(embed, StaticEmbedder):
        return {
            "kind": "static",
            "distillation": embed.cache_key(),
            "max_length": embed.max_length,
            "versions": package_versions(_EMBEDDING_PACKAGES["static"]),
        }
    if isinstance(embed, SentenceTransformerEmbedder):
        source = _offline_path(embed.model_name) or embed.model_name
        return {
            "kind": "sentence-transformers",
            "model": model_identity(source),
            "batch_size": embed.batch_size,
            "device": None if embed.device is None else str(embed.device),
            "versions": package_versions(_EMBEDDING_PACKAGES["sentence-transformers"]),
        }
    return None


def graph_cache_key(
    labels: Sequence[str],
    *,
    embedder: str,
    identity: dict,
    threshold: float,
    block_size: int,
    max_edges: int | None,
    max_degree: int | None,
) -> str:
    """The cache key (hex SHA-256) of a graph built by :meth:`LabelGraph.from_labels`.

    ``embedder``: its name (``hf_mig.models.embedders.embedder_name``); ``identity``: what
    :func:`embedder_identity` returns for it. The labels enter as the SHA-256 of their sorted
    set, so the key does not depend on their order.
    """
    labels_text = json.dumps(sorted(labels), separators=(",", ":"))
    payload = {
        "cache_version": GRAPH_CACHE_VERSION,
        "format_version": FORMAT_VERSION,
        "labels_sha256": hashlib.sha256(labels_text.encode("utf-8")).hexdigest(),
        "num_labels": len(labels),
        "embedder": embedder,
        "embedder_identity": identity,
        "threshold": float(threshold),
        "block_size": int(block_size),
        "max_edges": max_edges,
        "max_degree": max_degree,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_folder(cache: bool | str | os.PathLike) -> Path | None:
    """The folder of :meth:`LabelGraph.from_labels`'s ``cache`` argument: ``True`` is
    :func:`graph_cache_dir`, ``False`` is ``None`` (no cache), a path is that folder;
    ``TypeError`` for anything else."""
    if cache is False:
        return None
    if cache is True:
        return graph_cache_dir()
    if isinstance(cache, (str, os.PathLike)) and os.fspath(cache) != "":
        return Path(cache).expanduser()
    raise TypeError(
        f"cache must be True (default folder), False (no cache) or a folder, got {cache!r}"
    )


def read_cached(
    path: Path,
    key: str,
    labels: list[str],
    threshold: float,
    max_degree: int | None,
    load: Callable[[Path], LabelGraph],
) -> LabelGraph | None:
    """The graph ``load`` reads from the entry at ``path`` when it holds exactly what was asked
    for, else ``None`` (missing entry; an unreadable or mismatching one is reported with a
    warning)."""
    if not path.is_file():
        return None
    try:
        graph = load(path)
    except (OSError, ValueError) as err:  # LabelGraphFormatError is a ValueError
        logger.warning(
            "label graph cache: ignoring unreadable entry %s (%s); rebuilding", path, err
        )
        return None
    stored_key = graph.metadata.pop("cache_key", None)
    problem = None
    if stored_key != key:
        problem = f"it records key {stored_key!r}"
    elif set(graph.labels) != set(labels) or graph.num_labels != len(labels):
        problem = f"its {graph.num_labels:,} labels are not the {len(labels):,} requested"
    elif graph.threshold != float(threshold):
        problem = f"its threshold {graph.threshold} is not {float(threshold)}"
    elif graph.metadata.get("max_degree") != max_degree:
        problem = f"its max_degree {graph.metadata.get('max_degree')} is not {max_degree}"
    if problem:
        logger.warning("label graph cache: ignoring entry %s: %s; rebuilding", path, problem)
        return None
    if graph.labels != labels:
        graph = graph.subgraph(labels)  # same set in another node order
    logger.info(
        "label graph cache hit: key %s, %s (%d labels, %d edges)",
        key,
        path,
        graph.num_labels,
        graph.stats()["num_edges"],
    )
    return graph
