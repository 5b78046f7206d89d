"""Torch in forked worker processes (``Dataset.map(num_proc=...)``).

A process forked after torch ran OpenMP-parallel code deadlocks in its first parallel torch op
(GNU libgomp is not fork-safe). Like torch's own DataLoader workers, a forked child therefore runs
torch on one thread: model-running code calls :func:`single_thread_torch_if_forked` before its
first torch op in a process.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

_FORKED = False


def _mark_forked() -> None:
    global _FORKED
    _FORKED = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


def single_thread_torch_if_forked() -> None:
    """In a forked child, set torch to one thread (once); elsewhere do nothing."""
    global _FORKED
    if not _FORKED:
        return
    _FORKED = False
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > 1:
        torch.set_num_threads(1)
        logger.debug("forked process %d runs torch on 1 thread", os.getpid())
