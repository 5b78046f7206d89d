"""Taggers: ``Dataset.map`` callables that attach labels to conversations."""

from hf_mig.taggers.embedding import DEFAULT_TAG_THRESHOLDS, EmbeddingTagger, TaggingStats
from hf_mig.taggers.instag import InsTagTagger as InsTagTagger

__all__ = ["DEFAULT_TAG_THRESHOLDS", "EmbeddingTagger", "TaggingStats"]
