"""Import paths of hf-mig 0.1 that moved into the pipeline-stage packages.

``import hf_mig.graph`` (and every other path listed in :data:`MOVED`, submodules included)
still works for one release: it returns the module at its new path, the very same object, and
emits a :class:`DeprecationWarning` naming the new path. Nothing inside the package imports an
old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old module (below ``hf_mig.``) -> its path since 0.2
MOVED: dict[str, str] = {
    "objective": "core.objective",
    "graph": "annotate.graph",
    "encoding": "core.encoding",
    "greedy": "core.greedy",
    "summary": "core.summary",
    "io": "data.io",
    "formats": "data.formats",
    "pool": "data.pool",
    "resources": "data.resources",
    "hub": "data.hub",
    "embedders": "models.embedders",
    "static_embedder": "models.static_embedder",
    "model_identity": "models.identity",
    "generation": "models.generation",
    "taggers": "annotate.taggers",
    "scorers": "annotate.scorers",
    "vocabulary": "annotate.vocabulary",
    "embeddings": "annotate.embeddings",
    "callbacks": "train.callbacks",
    "sharding": "runtime.sharding",
    "commands": "cli.commands",
    "demo": "cli.demo",
}


def new_name(fullname: str) -> str | None:
    """The current path of ``fullname`` when it is an old path (or below one), else None."""
    prefix = "hf_mig."
    if not fullname.startswith(prefix):
        return None
    rest = fullname[len(prefix):]
    head, dot, tail = rest.partition(".")
    if head not in MOVED:
        return None
    return prefix + MOVED[head] + dot + tail


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self.target_spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.target_spec  # the import machinery set the old name's spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves the old paths in :data:`MOVED` to the modules at their new paths."""

    def find_spec(self, fullname, path=None, target=None):
        target_name = new_name(fullname)
        if target_name is None:
            return None
        warnings.warn(
            f"{fullname} moved to {target_name}; the old path goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        spec = importlib.machinery.ModuleSpec(fullname, _Alias(target_name))
        return spec


def install() -> None:
    """Put :class:`MovedModuleFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
