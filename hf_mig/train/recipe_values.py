"""A recipe's values before parsing: ``${VAR}`` / ``${VAR:-default}`` expanded from the
environment, and relative paths resolved (:mod:`hf_mig.train.config` says against which folders).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PATH_FIELDS", "PATH_OPTIONS", "expand_env", "resolve_path", "resolve_paths"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML value."""
    if isinstance(value, str):

        def repl(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ValueError(f"environment variable {name!r} is not set (used as ${{{name}}})")

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


#: Recipe fields holding paths, resolved against the recipe folder, then the current directory
#: (see :mod:`hf_mig.train.config`).
PATH_FIELDS = (
    "model_name_or_path",
    "dataset_name",
    "pool",
    "vocabulary",
    "eval_dataset_name",
    "selection_cache_dir",
    "chat_template_name",
    "generation_preview_prompts_file",
)
#: Selector options holding paths (resolved like the data paths).
PATH_OPTIONS = ("label_graph", "vocabulary", "embeddings", "embedding_path")


def resolve_path(value: Any, bases: Sequence[Path]) -> Any:
    """``value`` as a path: a bundled data id's file; a relative path that exists under the
    first of ``bases`` holding it, made absolute; an absolute path, with ``~`` expanded.
    Anything else (a Hub id, a URL, a non-string, a path found nowhere) is returned as is."""
    from hf_mig.data.resources import bundled_path, is_bundled_id

    if is_bundled_id(value):  # hf-mig:demo-annotated, hf-mig:demo-graph, ...
        return str(bundled_path(value))
    if not isinstance(value, str) or not value or ":" in value.split("/")[0]:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    for base in bases:
        candidate = base / path
        if candidate.exists():
            return str(candidate.resolve())
    return value


def resolve_paths(values: dict[str, Any], bases: Sequence[Path]) -> None:
    """Resolve the path fields of a flat mapping (and the file-valued selection options)."""
    for key in PATH_FIELDS:
        if key in values:
            values[key] = resolve_path(values[key], bases)
    options = values.get("selection_options")
    if isinstance(options, dict):
        values["selection_options"] = {
            k: resolve_path(v, bases) if k in PATH_OPTIONS else v for k, v in options.items()
        }
