"""What a plan's steps read from outside the work folder, checked before anything runs.

A :class:`Need` is one external input of a step: a local file or folder, a Python package, or
something on the Hugging Face Hub (a model or dataset repository, or one file of it).
:func:`check_needs` checks each distinct need once and returns one line per missing one, naming
it, the steps that read it and the way round (``hint``), so that a run stops before its first
step instead of failing half way with a traceback.

Hub needs are met by the local Hugging Face cache (or a local folder of that name, or the
``module`` that ships a copy); otherwise the Hub must be reachable: with ``HF_HUB_OFFLINE`` set
that is an error, else one request to the Hub's endpoint (``HF_ENDPOINT``) decides, for all of
them together.
"""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Need", "check_needs", "hub_status"]

KINDS = ("file", "module", "hub")


@dataclass(frozen=True)
class Need:
    """One external input of a step.

    ``kind``: ``file`` (``name`` is a path that must exist), ``module`` (``name`` is a Python
    package that must be installed) or ``hub`` (``name`` is a Hub repository of ``repo_type``
    ``model`` or ``dataset``; ``filename``: one file of it, else the repository). ``what`` says
    in words what it is; ``hint`` is the way round when it is missing. ``module``: an installed
    package that provides a local copy of a Hub need (it is then met without the Hub).
    """

    kind: str
    name: str
    what: str
    hint: str = ""
    repo_type: str = "model"
    filename: str = ""
    module: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Need.kind must be one of {KINDS}, got {self.kind!r}")
        if self.repo_type not in ("model", "dataset"):
            raise ValueError(f"Need.repo_type must be model or dataset, got {self.repo_type!r}")

    def label(self) -> str:
        """The need in a few words, e.g. ``alpaca_eval_gpt4_baseline.json of the Hub dataset
        tatsu-lab/alpaca_eval``."""
        if self.kind == "file":
            return f"{self.what} ({self.name})"
        if self.kind == "module":
            return f"{self.what} (Python package {self.name})"
        where = f"the Hub {self.repo_type} {self.name}"
        if self.module:
            where += f", or the Python package {self.module}"
        if self.filename:
            return f"{self.what} ({self.filename} of {where})"
        return f"{self.what} ({where})"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # found without importing it
    except (ImportError, ValueError):
        return False


def _hub_cached(need: Need) -> bool:
    if Path(need.name).expanduser().exists():  # a local folder named like the repository
        return True
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    if need.filename:
        found = try_to_load_from_cache(need.name, need.filename, repo_type=need.repo_type)
        return isinstance(found, str)
    try:
        snapshot_download(need.name, repo_type=need.repo_type, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not in the cache
        pass
    if need.repo_type == "dataset":  # a `datasets.load_dataset` cache of the repository
        try:
            import datasets.config

            cache = Path(datasets.config.HF_DATASETS_CACHE)
        except ImportError:
            return False
        return (cache / need.name.replace("/", "___")).is_dir()
    return False


def hub_status() -> str | None:
    """None when the Hub can be used now; else why not (offline, or the endpoint unreachable)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=10)
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"the Hub ({endpoint}) cannot be reached: {reason}"
    return None


def check_needs(needs: Iterable[tuple[str, Need]]) -> list[str]:
    """One line per missing need among ``(step id, need)`` pairs (empty: all there).

    Each distinct need is checked once; its line names the need, the first step that reads it
    (and how many more do) and its hint. The Hub is asked at most once, and only when a Hub need
    is not met locally.
    """
    steps: dict[Need, list[str]] = {}
    for step_id, need in needs:
        steps.setdefault(need, []).append(step_id)
    problems: list[str] = []
    hub_needed: list[Need] = []
    for need in steps:
        if need.kind == "file":
            if not Path(need.name).exists():
                problems.append(_line(need, steps[need], "does not exist"))
        elif need.kind == "module":
            if not _installed(need.name):
                problems.append(_line(need, steps[need], "is not installed"))
        elif not (need.module and _installed(need.module)) and not _hub_cached(need):
            hub_needed.append(need)
    if hub_needed:
        why = hub_status()
        if why is not None:
            for need in hub_needed:
                problems.append(_line(need, steps[need], f"is not in the local cache and {why}"))
    return problems


def _line(need: Need, step_ids: list[str], problem: str) -> str:
    more = f" and {len(step_ids) - 1} more" if len(step_ids) > 1 else ""
    text = f"{need.label()} {problem} (needed by {step_ids[0]}{more})"
    return f"{text}: {need.hint}" if need.hint else text
