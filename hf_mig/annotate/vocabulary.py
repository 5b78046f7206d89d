"""Tag vocabularies built from raw tags the way InsTag normalised its tags.

:class:`TagVocabulary` turns the raw tags of a tagged pool (e.g. the ``labels`` written by
:class:`~hf_mig.annotate.taggers.instag.InsTagTagger`) into a canonical vocabulary and maps raw
tags to it::

    vocab = TagVocabulary.from_dataset(ds, min_count=2, merge_threshold=0.9, top_k=5000)
    print(vocab.report())
    ds = ds.map(vocab, batched=True)          # labels -> canonical labels, + labels_dropped
    vocab.save("vocab.json"); vocab = TagVocabulary.load("vocab.json")

Stages (each one's size is in :meth:`TagVocabulary.report`):

1. **normalise**: strip, collapse whitespace, lower-case, then lemmatise word by word (see
   :func:`lemmatize_tag`), so ``"Data Analyses"`` and ``"data analysis"`` become one tag;
2. **frequency filter**: drop normalised tags seen in fewer than ``min_count`` rows (a tag
   repeated within one row counts once; a flat list of tags counts every occurrence);
3. **merge near-duplicates**: embed the remaining tags, link tags whose cosine is at or above
   ``merge_threshold`` (:meth:`hf_mig.LabelGraph.from_labels`), and merge each connected
   component into its most frequent member (ties: the alphabetically first); a component's
   count is the number of rows holding any of its members (for a flat list of tags: the sum of
   its members' counts). ``merge_threshold=None`` skips this stage;
4. **top-K**: keep the ``top_k`` canonical tags with the highest counts (ties: alphabetical).

:meth:`TagVocabulary.map` sends a raw tag through the same normalisation and returns its
canonical tag, or ``None`` when the tag was filtered out at any stage.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hf_mig.models.embedders import EmbedderLike, embedder_name

__all__ = ["FORMAT", "TagVocabulary", "lemmatize_tag", "lemmatize_word", "normalize_tag"]

FORMAT = "hf_mig.TagVocabulary"
FORMAT_VERSION = 1
LEMMATIZERS = ("auto", "lemminflect", "rules", "none")

_SPACE = re.compile(r"\s+")

# Nouns whose final "s" is not a plural (the rule set keeps them whole).
_KEEP_S = frozenset(
    "analysis basis crisis thesis hypothesis diagnosis synthesis emphasis axis news series "
    "species physics mathematics economics statistics ethics politics linguistics genetics "
    "electronics logistics robotics analytics graphics athletics acoustics aesthetics "
    "semantics phonetics kinetics dynamics mechanics optics thermodynamics bus gas lens "
    "status campus virus bonus corpus census canvas atlas chaos ethos pathos cosmos "
    "process access address class glass grass mass pass boss loss stress success business "
    "fitness wellness mindfulness kubernetes css sass aws ios macos windows postgres redis "
    "pandas numpy jenkins rails express sales means this tennis iris".split()
)
_IRREGULAR = {
    "children": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
    "geese": "goose",
    "criteria": "criterion",
    "phenomena": "phenomenon",
    "analyses": "analysis",
    "hypotheses": "hypothesis",
    "theses": "thesis",
    "crises": "crisis",
    "bases": "basis",
    "diagnoses": "diagnosis",
    "indices": "index",
    "matrices": "matrix",
    "vertices": "vertex",
    "appendices": "appendix",
    "leaves": "leaf",
    "knives": "knife",
    "lives": "life",
    "wives": "wife",
    "halves": "half",
    "shelves": "shelf",
    "wolves": "wolf",
}


def _rule_lemma(word: str) -> str:
    """Plural noun -> singular by a small documented rule set (no data files).

    Only purely alphabetic words of at least 4 letters change: an irregular plural from a fixed
    table; ``-ies`` -> ``-y`` (``queries``); ``-sses``/``-shes``/``-ches``/``-xes``/``-zes`` drop
    ``-es`` (``classes``, ``watches``); other words ending in a single ``-s`` (not ``-ss``,
    ``-us``, ``-sis``) drop it (``calculations``, ``apis``), except a fixed list of words that
    end in ``s`` (``news``, ``physics``, ``kubernetes``, ...). Everything else is unchanged.
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) < 4 or not word.isalpha() or word in _KEEP_S:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "sis")):
        return word[:-1]
    return word


@lru_cache(maxsize=1)
def _lemminflect() -> Any:
    try:
        import lemminflect
    except ImportError:
        return None
    return lemminflect


def resolve_lemmatizer(name: str) -> str:
    """``"auto"`` -> ``"lemminflect"`` when that package is installed, else ``"rules"``."""
    if name not in LEMMATIZERS:
        raise ValueError(f"lemmatizer must be one of {LEMMATIZERS}, got {name!r}")
    if name == "auto":
        return "lemminflect" if _lemminflect() is not None else "rules"
    if name == "lemminflect" and _lemminflect() is None:
        raise ImportError("lemmatizer='lemminflect' needs the package: pip install lemminflect")
    return name


@lru_cache(maxsize=65536)
def lemmatize_word(word: str, lemmatizer: str = "auto") -> str:
    """The noun lemma of one lower-case word.

    ``"lemminflect"``: the first noun lemma of lemminflect's dictionary (``getLemma(word,
    upos="NOUN", lemmatize_oov=False)``), so only words the dictionary knows as nouns change:
    ``calculations -> calculation``, ``queries -> query``, while ``programming``, ``writing``,
    ``news``, ``api``, ``kubernetes`` stay. ``"rules"``: :func:`_rule_lemma`. ``"none"``: the word.
    Words that are not purely alphabetic (``c++``, ``3d``, ``real-time``) are never changed.
    """
    which = resolve_lemmatizer(lemmatizer)
    if which == "none" or not word.isalpha():
        return word
    if which == "lemminflect":
        lemmas = _lemminflect().getLemma(word, upos="NOUN", lemmatize_oov=False)
        return lemmas[0].lower() if lemmas else word
    return _rule_lemma(word)


def lemmatize_tag(tag: str, lemmatizer: str = "auto") -> str:
    """Lemmatise every space-separated word of an already lower-cased tag."""
    return " ".join(lemmatize_word(w, lemmatizer) for w in tag.split(" "))


def normalize_tag(tag: str, lemmatizer: str = "auto") -> str:
    """Strip, collapse whitespace, lower-case and lemmatise a raw tag (``""`` for a blank one):
    the canonical form vocabularies compare. (Tags parsed from model output are first cleaned
    by :func:`hf_mig.annotate.taggers.json_tags.clean_tag`, which also drops quotes.)"""
    text = _SPACE.sub(" ", tag.strip()).lower()
    return lemmatize_tag(text, lemmatizer) if text else ""


class TagVocabulary:
    """A canonical tag vocabulary and the map from normalised tags to it.

    Build one with :meth:`build` (from tags or rows of tags) or :meth:`from_dataset`; persist it
    with :meth:`save` / :meth:`load` (JSON). Attributes:

    * :attr:`labels`: canonical tags, by decreasing count (ties alphabetical);
    * :attr:`counts`: canonical tag -> count (rows holding any of its merged members);
    * :attr:`mapping`: normalised tag -> canonical tag, for every normalised tag kept;
    * :attr:`members`: canonical tag -> the normalised tags merged into it.

    Used as a batched ``Dataset.map`` callable it canonicalises a labels column (see
    :meth:`__call__`).
    """

    def __init__(
        self,
        mapping: Mapping[str, str],
        counts: Mapping[str, int],
        *,
        config: Mapping[str, Any] | None = None,
        stages: Mapping[str, int] | None = None,
    ) -> None:
        self.counts: dict[str, int] = {str(k): int(v) for k, v in counts.items()}
        missing = sorted({c for c in mapping.values() if c not in self.counts})
        if missing:
            raise ValueError(f"mapping targets without a count: {missing[:5]}")
        self.mapping: dict[str, str] = dict(mapping)
        self.labels: list[str] = sorted(self.counts, key=lambda t: (-self.counts[t], t))
        self.config: dict[str, Any] = dict(config or {})
        self.stages: dict[str, int] = dict(stages or {})
        members: dict[str, list[str]] = {label: [] for label in self.labels}
        for tag, canonical in sorted(self.mapping.items()):
            members[canonical].append(tag)
        self.members = members

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        tags: Iterable[str | Sequence[str] | None],
        *,
        min_count: int = 2,
        merge_threshold: float | None = None,
        top_k: int | None = None,
        embedder: EmbedderLike | None = None,
        lemmatizer: str = "auto",
        progress: bool | None = None,
    ) -> TagVocabulary:
        """Build a vocabulary from raw tags (see the module docstring for the stages).

        ``tags`` is either a flat iterable of tag strings (every occurrence counts) or an
        iterable of rows, each a list of tags or ``None`` (a tag counts once per row). Raises
        ``ValueError`` for ``min_count < 1``, ``top_k < 1``, a threshold outside ``[-1, 1]`` or a
        tag that is not a string; ``TypeError`` for a non-string tag in a row.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        if merge_threshold is not None and not (
            isinstance(merge_threshold, (int, float))
            and math.isfinite(merge_threshold)
            and -1.0 <= merge_threshold <= 1.0
        ):
            raise ValueError(
                f"merge_threshold must be a cosine in [-1, 1], got {merge_threshold!r}"
            )
        lemmatizer = resolve_lemmatizer(lemmatizer)

        # 1. normalise; a row counts each normalised tag once, a flat list every occurrence
        counted = _Normalised.count(tags, lemmatizer)
        normal, flat, row_tags = counted.counts, counted.flat, counted.rows
        # 2. frequency filter
        frequent = {t: c for t, c in normal.items() if c >= min_count}
        # 3. merge near-duplicates (a row holding two members of a group counts once)
        canonical_of = {t: t for t in frequent}
        largest = 1 if frequent else 0
        if merge_threshold is not None and len(frequent) > 1:
            canonical_of, largest = _merge(frequent, float(merge_threshold), embedder, progress)
        merged: Counter[str] = Counter(canonical_of[t] for t in flat if t in canonical_of)
        for row in row_tags:
            merged.update({canonical_of[t] for t in row if t in canonical_of})
        # 4. top-K
        ranked = sorted(merged, key=lambda t: (-merged[t], t))
        kept = ranked if top_k is None else ranked[:top_k]
        kept_set = set(kept)
        mapping = {t: c for t, c in canonical_of.items() if c in kept_set}
        stages = {
            "rows": counted.row_count,
            "tag_occurrences": counted.occurrences,
            "raw_tags": len(counted.raw),
            "blank_tags": counted.blank,
            "normalized_tags": len(normal),
            "after_min_count": len(frequent),
            "after_merge": len(merged),
            "largest_merged_group": largest,
            "after_top_k": len(kept),
            "normalized_tags_kept": len(mapping),
        }
        config = {
            "min_count": min_count,
            "merge_threshold": merge_threshold,
            "top_k": top_k,
            "embedder": embedder_name(embedder) if merge_threshold is not None else None,
            "lemmatizer": lemmatizer,
        }
        return cls(mapping, {t: merged[t] for t in kept}, config=config, stages=stages)

    @classmethod
    def from_dataset(
        cls, dataset: Any, labels_column: str = "labels", **options: Any
    ) -> TagVocabulary:
        """:meth:`build` over the ``labels_column`` of a ``datasets.Dataset`` (rows of tags).

        Raises ``ValueError`` when the column is missing."""
        if labels_column not in dataset.column_names:
            raise ValueError(
                f"the dataset has no {labels_column!r} column (columns: {dataset.column_names})"
            )
        return cls.build(dataset[labels_column], **options)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and self.map(tag) is not None

    def normalize(self, tag: str) -> str:
        """The normalised form of a raw tag, with this vocabulary's lemmatiser."""
        return normalize_tag(tag, self.config.get("lemmatizer", "auto"))

    def map(self, tag: str) -> str | None:
        """The canonical tag of a raw tag, or ``None`` when it is not in the vocabulary."""
        if not isinstance(tag, str):
            raise TypeError(f"a tag must be a string, got {type(tag).__name__}")
        return self.mapping.get(self.normalize(tag))

    def report(self) -> dict[str, Any]:
        """Sizes at each stage (``raw_tags`` -> ``normalized_tags`` -> ``after_min_count`` ->
        ``after_merge`` -> ``after_top_k``), the settings and the most frequent tags."""
        return {
            **self.stages,
            "vocabulary_size": len(self.labels),
            "config": dict(self.config),
            "top_tags": [[t, self.counts[t]] for t in self.labels[:20]],
        }

    def format_report(self) -> str:
        """:meth:`report` as a few readable lines."""
        s = self.stages
        lines = [
            f"raw tags: {s.get('raw_tags', '?'):,} distinct in {s.get('rows', 0):,} rows "
            f"({s.get('tag_occurrences', 0):,} occurrences)",
            f"normalised (lower-case, {self.config.get('lemmatizer')} lemmas): "
            f"{s.get('normalized_tags', '?'):,}",
            f"seen in >= {self.config.get('min_count')} rows: {s.get('after_min_count', '?'):,}",
            f"after merging near-duplicates (threshold {self.config.get('merge_threshold')}): "
            f"{s.get('after_merge', '?'):,} (largest group {s.get('largest_merged_group', 0)})",
            f"top-k ({self.config.get('top_k')}): {s.get('after_top_k', len(self.labels)):,}",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ map callable

    def __call__(
        self,
        batch: Mapping[str, list],
        indices: Sequence[int] | None = None,
        *,
        labels_column: str = "labels",
        output_column: str = "labels",
    ) -> dict[str, list]:
        """Canonicalise a batch's labels: ``ds.map(vocab, batched=True)``.

        Returns ``{output_column: canonical labels (first occurrence order, de-duplicated),
        "labels_dropped": number of the row's raw tags that map to nothing}``. A ``None`` labels
        value gives ``[]`` and 0. Raises ``ValueError`` naming the row for a value that is not a
        list of strings. Column names can be changed with ``fn_kwargs``.
        """
        from hf_mig.data.columns import int_column, string_list_column

        if labels_column not in batch:
            raise KeyError(f"the batch has no {labels_column!r} column")
        out: list[list[str]] = []
        dropped: list[int] = []
        for pos, tags in enumerate(batch[labels_column]):
            row = indices[pos] if indices is not None else pos
            if tags is None:
                out.append([])
                dropped.append(0)
                continue
            if isinstance(tags, str) or not isinstance(tags, Sequence):
                raise ValueError(f"row {row}: {labels_column} must be a list of strings")
            kept: list[str] = []
            lost = 0
            for tag in tags:
                if not isinstance(tag, str):
                    raise ValueError(f"row {row}: {labels_column} holds a non-string {tag!r}")
                canonical = self.mapping.get(self.normalize(tag))
                if canonical is None:
                    lost += 1
                elif canonical not in kept:
                    kept.append(canonical)
            out.append(kept)
            dropped.append(lost)
        return {
            output_column: string_list_column(out),
            "labels_dropped": int_column(dropped),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.to_dict(),))

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content written by :meth:`save`."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "labels": list(self.labels),
            "counts": {t: self.counts[t] for t in self.labels},
            "mapping": dict(sorted(self.mapping.items())),
            "config": dict(self.config),
            "stages": dict(self.stages),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (UTF-8)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), "utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TagVocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is
        not such a vocabulary."""
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {source}")
        try:
            data = json.loads(source.read_text("utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not valid JSON: {err}") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source} is not a TagVocabulary file (format {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source}: unsupported TagVocabulary version {data.get('version')}")
        return _restore(data)

    def __repr__(self) -> str:
        return f"TagVocabulary({len(self.labels)} tags, {len(self.mapping)} normalised forms)"


def _restore(data: Mapping[str, Any]) -> TagVocabulary:
    return TagVocabulary(
        data["mapping"], data["counts"], config=data.get("config"), stages=data.get("stages")
    )


def _merge(
    counts: Mapping[str, int],
    threshold: float,
    embedder: EmbedderLike | None,
    progress: bool | None,
) -> tuple[dict[str, str], int]:
    """Connected components of the thresholded similarity graph; canonical = most frequent."""
    from scipy.sparse.csgraph import connected_components

    from hf_mig.annotate.graph import LabelGraph

    tags = sorted(counts)
    graph = LabelGraph.from_labels(tags, embedder=embedder, threshold=threshold, progress=progress)
    n_comp, comp = connected_components(graph.weights, directed=False)
    best: dict[int, str] = {}
    for tag, c in zip(tags, comp.tolist()):
        current = best.get(c)
        if current is None or (-counts[tag], tag) < (-counts[current], current):
            best[c] = tag
    sizes = np.bincount(comp, minlength=n_comp)
    mapping = {tag: best[c] for tag, c in zip(tags, comp.tolist())}
    return mapping, int(sizes.max()) if sizes.size else 0


@dataclass
class _Normalised:
    """Stage 1 of :meth:`TagVocabulary.build`: the tags normalised and counted."""

    counts: Counter[str] = field(default_factory=Counter)  # rows (or occurrences) per tag
    flat: list[str] = field(default_factory=list)  # normalised tags given as a flat list
    rows: list[tuple[str, ...]] = field(default_factory=list)  # normalised tags per row
    raw: set[str] = field(default_factory=set)
    occurrences: int = 0
    row_count: int = 0
    blank: int = 0

    @classmethod
    def count(cls, tags: Iterable[str | Sequence[str] | None], lemmatizer: str) -> _Normalised:
        """Normalise ``tags`` (tags, or rows of tags, see :meth:`TagVocabulary.build`)."""
        out = cls()
        cache: dict[str, str] = {}

        def norm(tag: str) -> str:
            out.occurrences += 1
            out.raw.add(tag)
            value = cache.get(tag)
            if value is None:
                value = cache[tag] = normalize_tag(tag, lemmatizer)
            if not value:
                out.blank += 1
            return value

        for k, item in enumerate(tags):
            if item is None:
                out.row_count += 1
            elif isinstance(item, str):
                value = norm(item)
                if value:
                    out.counts[value] += 1
                    out.flat.append(value)
            elif not isinstance(item, Sequence):
                raise TypeError(f"item {k}: expected a tag or a list of tags, got {item!r}")
            else:
                out.row_count += 1
                seen: dict[str, None] = {}
                for tag in item:
                    if not isinstance(tag, str):
                        raise TypeError(f"row {k}: tags must be strings, got {tag!r}")
                    value = norm(tag)
                    if value:
                        seen[value] = None
                out.counts.update(seen.keys())
                if seen:
                    out.rows.append(tuple(seen))
        return out
