"""Taggers: ``Dataset.map`` callables that attach labels to conversations."""

from hf_mig.annotate.taggers.embedding import DEFAULT_TAG_THRESHOLDS, EmbeddingTagger, TaggingStats
from hf_mig.annotate.taggers.instag import InsTagTagger as InsTagTagger

__all__ = ["DEFAULT_TAG_THRESHOLDS", "EmbeddingTagger", "TaggingStats"]
