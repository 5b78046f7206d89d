"""Taggers: ``Dataset.map`` callables that attach labels to conversations, registered by name in
:data:`TAGGERS` (``embedding``: :class:`EmbeddingTagger`; ``instag``: :class:`InsTagTagger`)."""

from hf_mig.annotate.base import TAGGERS, get_tagger, register_tagger
from hf_mig.annotate.taggers.embedding import DEFAULT_TAG_THRESHOLDS, EmbeddingTagger, TaggingStats
from hf_mig.annotate.taggers.instag import InsTagTagger

__all__ = [
    "DEFAULT_TAG_THRESHOLDS",
    "TAGGERS",
    "EmbeddingTagger",
    "InsTagTagger",
    "TaggingStats",
    "get_tagger",
    "register_tagger",
]
