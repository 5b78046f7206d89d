"""Tag conversations with the nearest labels of a fixed vocabulary, by embedding similarity.

:class:`EmbeddingTagger` is a batched ``datasets.Dataset.map`` callable::

    tagger = EmbeddingTagger()                      # InsTag vocabulary, all-MiniLM-L6-v2
    ds = ds.map(tagger, batched=True, with_indices=True)   # adds a "labels" column

Every user turn used for tagging is embedded with the configured embedder (rows L2-normalised),
compared by cosine with the embedded vocabulary, and the labels whose cosine is ``>= threshold``
are kept, best first, at most ``top_m`` of them. With ``turns="all"`` each label's score is its
best cosine over the user turns, so the result is the union of the per-turn labels ranked by best
similarity. Equal scores are ordered by vocabulary position, so the output is deterministic.

The model and the vocabulary embedding matrix are loaded on the first call, once per process
(they are cached per process by embedder and vocabulary, so several taggers that share a model
share it, and ``num_proc`` workers started by ``fork`` reuse what the parent already loaded).
A forked worker runs torch on one thread: after the parent has run the model, a multi-threaded
(OpenMP) torch op in a forked child deadlocks. Pickling and ``datasets`` fingerprinting see only
the configuration and ``hf_mig.__version__``, so equal configurations share ``map`` caches.

Similarities are float32. A label whose cosine is within ~1e-6 of the threshold may flip when
the same text is embedded in a batch of different padding length; otherwise results do not
depend on batching or ``num_proc``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from hf_mig.annotate.base import (
    ConfigValue,
    Option,
    Tagger,
    map_arguments,
    register_tagger,
    row_label,
)
from hf_mig.data.columns import LABELS_ARROW_TYPE, row_numbers
from hf_mig.data.conversations import (
    ConversationError,
    batch_conversations,
    detect_shape,
    user_turns,
)
from hf_mig.data.resources import load_vocabulary as read_vocabulary
from hf_mig.models.embedders import (
    DEFAULT_EMBEDDER,
    EmbedderLike,
    SentenceTransformerEmbedder,
    cached_embedder,
    calibrated_threshold,
    clear_embedder_cache,
    embedder_name,
)
from hf_mig.models.fork import single_thread_torch_if_forked
from hf_mig.models.static_embedder import StaticEmbedder

logger = logging.getLogger(__name__)

#: Tagging thresholds (cosine between a user turn and a label) calibrated per embedder on real
#: instructions; see ``benchmarks/CALIBRATION.md``. They are lower than label-to-label thresholds:
#: a whole instruction is never as close to a two-word tag as two synonymous tags are to each other.
DEFAULT_TAG_THRESHOLDS: dict[str, float] = {
    "sentence-transformers/all-MiniLM-L6-v2": 0.4,
    "all-MiniLM-L6-v2": 0.4,
    # static embeddings distilled from MiniLM (another cosine scale): the threshold whose labels
    # agree best (F1) with MiniLM's at 0.4 on LIMA and Alpaca
    "static:sentence-transformers/all-MiniLM-L6-v2": 0.47,
    "static:all-MiniLM-L6-v2": 0.47,
}

VocabularyLike = Sequence[str] | str | os.PathLike

_TURNS = ("first", "all")
# Texts whose cosines with the vocabulary are computed in one matrix product (bounds the memory
# to _SCORE_BLOCK x vocabulary floats; one product per row costs more than a static embedder).
_SCORE_BLOCK = 1024


def default_tag_threshold(embedder: EmbedderLike | None) -> float:
    """The calibrated tagging threshold for a named embedder (:data:`DEFAULT_TAG_THRESHOLDS`);
    raise ``ValueError`` if none is known (a callable or an unknown model: pass
    ``threshold=...``)."""
    return calibrated_threshold(DEFAULT_TAG_THRESHOLDS, embedder, "tagging")


def load_vocabulary(vocabulary: VocabularyLike | None) -> list[str]:
    """Return the labels of ``vocabulary`` as a new list, validated.

    ``None`` means the 4,531 InsTag tags shipped with ``hf_mig``; a ``str`` or path names a file,
    a list or tuple is used as given. Read by :func:`hf_mig.data.resources.load_vocabulary`
    with blank lines of a text file skipped. Raises ``ValueError`` on an empty vocabulary, an
    empty label or a duplicate label (duplicates would make one concept fill several of the
    ``top_m`` slots), and ``FileNotFoundError`` when the file does not exist.
    """
    return read_vocabulary(vocabulary, skip_blank_lines=True)


def _vocabulary_digest(labels: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(labels), ensure_ascii=False).encode("utf-8")).hexdigest()


# Per-process cache of embedded vocabularies by (model id, batch size, vocabulary digest); the
# embedders themselves are shared by hf_mig.models.embedders.cached_embedder. Only named
# embedders are cached; a user callable lives (and is loaded) on its tagger.
_MATRICES: dict[tuple[str, int, str], np.ndarray] = {}


def clear_model_cache() -> None:
    """Forget every embedder and vocabulary matrix loaded by taggers in this process."""
    clear_embedder_cache()
    _MATRICES.clear()


@dataclass
class TaggingStats:
    """Counts over the rows tagged by one tagger object in this process.

    ``rows`` = ``tagged`` + ``no_user_text`` + ``below_threshold``. ``labels`` is the total number
    of labels written. Rows tagged in ``num_proc`` worker processes are counted (and logged) in
    those workers, not here.
    """

    rows: int = 0
    tagged: int = 0
    no_user_text: int = 0
    below_threshold: int = 0
    labels: int = 0

    @property
    def empty(self) -> int:
        """Rows that received no label (they are kept, with ``[]``)."""
        return self.no_user_text + self.below_threshold


@register_tagger("embedding")
class EmbeddingTagger(Tagger):
    """Batched ``Dataset.map`` callable writing the nearest vocabulary labels of each conversation.

    Args:
        vocabulary: labels, or a path to a JSON list / one-label-per-line text file. Default: the
            4,531 InsTag tags shipped with ``hf_mig`` (see :func:`load_vocabulary`).
        embedder: model id, local path or callable ``list[str] -> (n, dim) array`` (rows are
            L2-normalised by :func:`hf_mig.models.embedders.load_embedder`). Default:
            all-MiniLM-L6-v2.
            ``"static:<model>"`` uses static embeddings distilled from the model
            (:class:`hf_mig.models.static_embedder.StaticEmbedder`; needs ``hf-mig[fast]``): over
            100x the rows/s of MiniLM on CPU, with labels that agree only partly with MiniLM's
            (see ``benchmarks/CALIBRATION.md``); the first use distils and caches it.
        threshold: minimum cosine between a user turn and a label. ``None`` uses the value
            calibrated for the embedder (:data:`DEFAULT_TAG_THRESHOLDS`: 0.4 for MiniLM, 0.47 for
            its static distillation) and raises ``ValueError`` for an embedder without one.
        top_m: at most this many labels per conversation (``None``: no limit).
        turns: ``"first"`` tags the first non-empty user turn; ``"all"`` tags every non-empty user
            turn and ranks the union of their labels by each label's best cosine.
        messages_column: column holding OpenAI-style lists of ``{"role", "content"}`` dicts.
        output_column: column written with the labels (``list[str]`` per row, best first).
        batch_size: texts per forward pass of a named model (sentence-transformers sorts the
            texts of a ``map`` batch by length, then encodes them in batches of this size), or
            per call of a callable embedder. 32 is fastest for MiniLM on CPU; larger batches pad
            more and run slower there.

    Calling ``tagger(batch)`` or ``tagger(batch, indices)`` returns ``{output_column: labels}``
    with one list per input row, in row order. A row with no non-empty user turn, or with no label
    at or above the threshold, gets ``[]`` and is kept; both cases are counted in :attr:`stats` and
    logged (``logging`` INFO) per batch. A row whose messages are not a list of dicts with a
    string ``role`` and a ``content`` (a string; ``None`` is accepted for non-user turns; a list of
    ``{"type": "text", "text": ...}`` parts is joined) raises ``ValueError`` naming the row (the
    dataset index when called with ``with_indices=True``) and the field; a missing messages column
    raises ``KeyError`` unless the batch holds another conversation shape that
    :func:`hf_mig.data.conversations.to_messages` reads (ShareGPT ``conversations``, alpaca
    ``instruction``/``output``, ``dialogs``), which is converted on the fly. Only ``role ==
    "user"`` turns are embedded.

    Also: :meth:`load` (load now), :meth:`similarities` (raw cosines, for calibration),
    :attr:`fingerprint` (the hash ``Dataset.map`` uses), :attr:`stats` (counts in this process).
    """

    Stats = TaggingStats
    options = (
        Option(
            "embedder",
            "embedder id or path (default sentence-transformers/all-MiniLM-L6-v2; "
            "'static:<model>' for static embeddings)",
            flag="--model",
        ),
        Option("turns", "user turns to tag (default first)", choices=_TURNS),
        Option("batch_size", "texts per embedder call", type=int),
        Option("threshold", "cosine threshold", type=float),
        Option("top_m", "labels per row at most (default 5)", type=int),
        Option("vocabulary", "label vocabulary file"),
    )

    def __init__(
        self,
        vocabulary: VocabularyLike | None = None,
        embedder: EmbedderLike | None = None,
        threshold: float | None = None,
        top_m: int | None = 5,
        turns: str = "first",
        messages_column: str = "messages",
        output_column: str = "labels",
        batch_size: int = 32,
    ) -> None:
        labels = load_vocabulary(vocabulary)
        if embedder is None:
            embedder = DEFAULT_EMBEDDER
        if isinstance(embedder, os.PathLike):
            embedder = str(embedder)
        if isinstance(embedder, str):
            embedder = embedder.rstrip("/") or embedder
        elif not callable(embedder):
            raise TypeError(
                f"embedder must be a model id, a path or a callable, got {type(embedder).__name__}"
            )
        if threshold is None:
            threshold = default_tag_threshold(embedder)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
            raise TypeError(f"threshold must be a number, got {threshold!r}")
        threshold = float(threshold)
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine and must lie in [-1, 1], got {threshold}")
        if top_m is not None and (
            isinstance(top_m, bool) or not isinstance(top_m, (int, np.integer)) or top_m < 1
        ):
            raise ValueError(f"top_m must be a positive integer or None, got {top_m!r}")
        if turns not in _TURNS:
            raise ValueError(f"turns must be one of {_TURNS}, got {turns!r}")
        for name, value in (("messages_column", messages_column), ("output_column", output_column)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

        self._setup(
            {
                # None = the shipped InsTag vocabulary (keeps pickles and hashes small).
                "vocabulary": None if vocabulary is None else tuple(labels),
                "embedder": embedder,
                "threshold": threshold,
                "top_m": None if top_m is None else int(top_m),
                "turns": turns,
                "messages_column": messages_column,
                "output_column": output_column,
                "batch_size": int(batch_size),
            },
            labels=labels,
        )

    # ------------------------------------------------------------------ configuration / pickling

    def _setup(self, config: dict[str, Any], labels: list[str] | None = None) -> None:
        if labels is None:
            labels = load_vocabulary(config["vocabulary"])
        if config["vocabulary"] is not None:
            from hf_mig.data.resources import INSTAG_VOCABULARY_SIZE, instag_vocabulary

            if len(labels) == INSTAG_VOCABULARY_SIZE and labels == instag_vocabulary():
                config = {**config, "vocabulary": None}  # same labels, same fingerprint
        super()._setup(config)
        self._labels = labels
        self._digest = _vocabulary_digest(labels)
        self._embed: Callable[[list[str]], np.ndarray] | None = None
        self._matrix: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The configuration (a copy); ``vocabulary`` is ``None`` for the shipped InsTag tags."""
        return dict(self._config)

    def output_types(self) -> dict[str, pa.DataType]:
        return {self._config["output_column"]: LABELS_ARROW_TYPE}

    @property
    def vocabulary(self) -> list[str]:
        """The labels, in vocabulary order (a copy)."""
        return list(self._labels)

    threshold = ConfigValue("Minimum cosine between a user turn and a label.")
    top_m = ConfigValue("Maximum number of labels per row (``None``: no limit).")
    turns = ConfigValue('``"first"`` or ``"all"`` user turns.')
    messages_column = ConfigValue("Input column of OpenAI-style messages.")
    output_column = ConfigValue("Output column of labels.")
    batch_size = ConfigValue("Texts per embedder call.")
    embedder = ConfigValue("Model id or callable, as configured.")

    def __repr__(self) -> str:
        vocab = "InsTag(4531)" if self._config["vocabulary"] is None else f"{len(self._labels)}"
        return (
            f"{type(self).__name__}(vocabulary={vocab}, "
            f"embedder={embedder_name(self._config['embedder'])!r}, "
            f"threshold={self.threshold}, top_m={self.top_m}, turns={self.turns!r}, "
            f"messages_column={self.messages_column!r}, output_column={self.output_column!r}, "
            f"batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------ model

    @property
    def loaded(self) -> bool:
        """Whether this object already holds the embedder and the vocabulary matrix."""
        return self._matrix is not None

    def load(self) -> EmbeddingTagger:
        """Load the embedder and embed the vocabulary now (otherwise done on the first call).

        Returns ``self``. Named models are shared through a per-process cache."""
        single_thread_torch_if_forked()
        if self._matrix is not None:
            return self
        embedder = self._config["embedder"]
        batch_size = self._config["batch_size"]
        embed = cached_embedder(embedder, batch_size)
        if isinstance(embedder, str):
            key = (embedder, batch_size)
            matrix = _MATRICES.get((*key, self._digest))
            if matrix is None:
                matrix = self._embed_texts(embed, self._labels)
                _MATRICES[(*key, self._digest)] = matrix
        else:
            matrix = self._embed_texts(embed, self._labels)
        if matrix.shape[0] != len(self._labels):
            raise ValueError(
                f"embedder returned {matrix.shape[0]} rows for {len(self._labels)} labels"
            )
        self._embed, self._matrix = embed, matrix
        return self

    def _embed_texts(self, embed: Callable[[list[str]], np.ndarray], texts: Sequence[str]):
        size = self._config["batch_size"]
        if isinstance(embed, (SentenceTransformerEmbedder, StaticEmbedder)):
            size = max(size, len(texts))  # it batches by itself
        parts = []
        for start in range(0, len(texts), size):
            chunk = list(texts[start : start + size])
            out = np.asarray(embed(chunk), dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != len(chunk):
                raise ValueError(
                    f"embedder returned shape {out.shape} for {len(chunk)} texts; "
                    "expected (n_texts, dim)"
                )
            parts.append(out)
        return np.concatenate(parts, axis=0)

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """Cosines between ``texts`` and every label, as a float32 array of shape
        ``(len(texts), len(vocabulary))``, columns in vocabulary order. Loads the model if needed.
        Useful to inspect or calibrate ``threshold``: tagging keeps, per row, the labels whose
        cosine is ``>= threshold``."""
        self.load()
        assert self._embed is not None and self._matrix is not None
        if not texts:
            return np.zeros((0, len(self._labels)), dtype=np.float32)
        return self._embed_texts(self._embed, list(texts)) @ self._matrix.T

    # ------------------------------------------------------------------ tagging

    def __call__(
        self, batch: Mapping[str, list], *args: Any, indices: Sequence[int] | None = None
    ) -> dict[str, list]:
        """Tag one batch; see the class docstring for the contract."""
        if indices is None:
            indices, _ = map_arguments(args, "EmbeddingTagger")
        conversations = self._conversations(batch, indices)
        row_numbers(len(conversations), indices)
        per_row = [
            self._user_texts(messages, pos, indices) for pos, messages in enumerate(conversations)
        ]
        flat = [text for texts in per_row for text in texts]
        out: list[list[str]] = [[] for _ in per_row]
        empty_text: list[int] = []
        below: list[int] = []
        queries = matrix = None
        if flat:
            self.load()
            assert self._embed is not None and self._matrix is not None
            matrix = self._matrix
            queries = self._embed_texts(self._embed, flat)
            if queries.shape[1] != matrix.shape[1]:
                raise ValueError(
                    f"embedder returned dimension {queries.shape[1]} for texts but "
                    f"{matrix.shape[1]} for labels"
                )
        start = 0
        block, block_start = np.zeros((0, 0), dtype=np.float32), 0
        for pos, texts in enumerate(per_row):
            if not texts:
                empty_text.append(pos)
                continue
            assert queries is not None and matrix is not None
            end = start + len(texts)
            if end > block_start + len(block):  # cosines of the next texts, in one product
                block_start = start
                block = queries[start : start + max(_SCORE_BLOCK, len(texts))] @ matrix.T
            scores = block[start - block_start : end - block_start]
            start = end
            out[pos] = self._select(scores.max(axis=0))
            if not out[pos]:
                below.append(pos)
        self._count(len(per_row), out, empty_text, below, indices)
        return self._typed({self._config["output_column"]: out})

    def _conversations(self, batch: Mapping[str, list], indices: Sequence[int] | None) -> list:
        """The batch's messages column, or its conversations as OpenAI messages when it holds
        another known shape (ShareGPT ``conversations``, alpaca ``instruction``/``output``,
        ``dialogs``)."""
        column = self._config["messages_column"]
        if column not in batch:
            try:
                shape = detect_shape(batch.keys())
            except ValueError as err:
                shape, reason = None, str(err)
            else:
                reason = f"it has a {shape!r} column; set messages_column={shape!r}"
            if shape is None or shape == "messages":
                raise KeyError(
                    f"EmbeddingTagger: the batch has no {column!r} column ({reason}); "
                    "set messages_column=..."
                )
        return batch_conversations(batch, column, indices)

    def _select(self, scores: np.ndarray) -> list[str]:
        keep = np.flatnonzero(scores >= self._config["threshold"])
        if keep.size == 0:
            return []
        order = keep[np.lexsort((keep, -scores[keep]))]  # best first, ties by vocabulary order
        top_m = self._config["top_m"]
        if top_m is not None:
            order = order[:top_m]
        return [self._labels[i] for i in order]

    def _user_texts(self, messages: Any, pos: int, indices: Sequence[int] | None) -> list[str]:
        """The user texts of one row to embed ([] if none); raise ValueError on a bad row."""
        column = self._config["messages_column"]
        first = self._config["turns"] == "first"
        try:
            return user_turns(messages, column, first=first, require_content=True)
        except ConversationError as err:
            raise ValueError(f"EmbeddingTagger: {row_label(pos, indices)}: {err}") from None

    def _count(
        self,
        n_rows: int,
        out: list[list[str]],
        empty_text: list[int],
        below: list[int],
        indices: Sequence[int] | None,
    ) -> None:
        stats = self.stats
        stats.rows += n_rows
        stats.no_user_text += len(empty_text)
        stats.below_threshold += len(below)
        stats.tagged += n_rows - len(empty_text) - len(below)
        stats.labels += sum(len(labels) for labels in out)
        if empty_text or below:

            def names(positions: list[int]) -> str:
                shown = [str(indices[p] if indices is not None else p) for p in positions[:10]]
                return ", ".join(shown) + (", ..." if len(positions) > 10 else "")

            logger.info(
                "EmbeddingTagger: %d of %d rows got no label and were kept with []: "
                "%d without a user turn (%s %s), %d below threshold %.3f (%s %s)",
                len(empty_text) + len(below),
                n_rows,
                len(empty_text),
                "rows" if indices is not None else "batch positions",
                names(empty_text) or "-",
                len(below),
                self._config["threshold"],
                "rows" if indices is not None else "batch positions",
                names(below) or "-",
            )

    def stats_summary(self) -> dict[str, int]:
        """:attr:`stats` as a plain dict (with ``empty``), e.g. for a manifest."""
        return {**asdict(self.stats), "empty": self.stats.empty}
