"""Adapters from common instruction-tuning record shapes to what MIG consumes.

The names live in their own modules and are importable from here too:

* :func:`to_messages`, :func:`detect_shape`, :func:`with_messages` (record shapes -> OpenAI
  ``messages``): :mod:`hf_mig.data.conversations`;
* :class:`MIGAnnotations` (the authors' annotation struct -> ``labels`` / ``score``):
  :mod:`hf_mig.data.annotations`;
* :func:`load_vocabulary` (a label vocabulary file): :mod:`hf_mig.data.resources`.
"""

from __future__ import annotations

from hf_mig.data.annotations import MIGAnnotations
from hf_mig.data.columns import LABELS_ARROW_TYPE, MESSAGES_ARROW_TYPE
from hf_mig.data.conversations import (
    ROLES,
    SHAPES,
    SHAREGPT_ROLES,
    detect_shape,
    to_messages,
    with_messages,
)
from hf_mig.data.resources import load_vocabulary

__all__ = [
    "LABELS_ARROW_TYPE",
    "MESSAGES_ARROW_TYPE",
    "ROLES",
    "SHAPES",
    "SHAREGPT_ROLES",
    "MIGAnnotations",
    "detect_shape",
    "load_vocabulary",
    "to_messages",
    "with_messages",
]
