"""Benchmark generation through the shared backends (:mod:`hf_mig.models.generation`), resumable.

:func:`generate_incremental` sends conversations to a
:class:`~hf_mig.models.generation.GenerationBackend` in chunks and appends every successful output
to a JSON-lines progress file as soon as its chunk returns (flushed and fsynced). A re-run reads
that file and only generates what is missing, so an interrupted run (Ctrl-C, a killed job) resumes
where it stopped; a half-written last line (a kill in the middle of a write) is ignored and
regenerated. Failed rows are not written (so a re-run retries them) and are counted in the returned
:class:`GenerationReport`.

Backend choice (``--backend auto``): vLLM when it is installed and a CUDA GPU is present, else
transformers; ``openai`` sends the prompts to an OpenAI-compatible server (``--base-url``).
Decoding is greedy unless a benchmark protocol says otherwise (MT-Bench's official per-category
temperatures); the model's own chat template renders every conversation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.models.generation import arguments
from hf_mig.models.generation.arguments import add_backend_arguments, resolve_backend_name

logger = logging.getLogger(__name__)

__all__ = [
    "GenerationItem",
    "GenerationReport",
    "add_generation_args",
    "backend_from_args",
    "generate_incremental",
    "read_progress",
    "resolve_backend_name",
]


@dataclass(frozen=True)
class GenerationItem:
    """One conversation to complete: ``key`` identifies it in the progress file."""

    key: str
    messages: list[dict[str, str]]
    max_new_tokens: int
    temperature: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class GenerationReport:
    """What one :func:`generate_incremental` call did."""

    total: int = 0
    already_done: int = 0
    generated: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    skipped_bad_lines: int = 0

    def summary(self) -> str:
        """One line for the console."""
        text = (
            f"{self.total} items: {self.already_done} already done, {self.generated} generated, "
            f"{self.failed} failed"
        )
        if self.skipped_bad_lines:
            text += f", {self.skipped_bad_lines} unreadable progress line(s) ignored"
        if self.failures:
            text += f" (first failure: {self.failures[0]})"
        return text


def read_progress(path: str | Path) -> tuple[dict[str, dict[str, Any]], int]:
    """``({key: record}, n_bad_lines)`` from a progress file (missing file -> empty).

    Lines that are not complete JSON objects with a ``key`` (e.g. a line cut by a kill) are
    counted and ignored; a key written twice keeps its last record.
    """
    done: dict[str, dict[str, Any]] = {}
    bad = 0
    p = Path(path)
    if not p.exists():
        return done, 0
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(rec, dict) and "key" in rec:
                done[str(rec["key"])] = rec
            else:
                bad += 1
    return done, bad


def _append(fh: Any, records: Iterable[dict[str, Any]]) -> None:
    for rec in records:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def generate_incremental(
    backend: Any,
    items: Sequence[GenerationItem],
    progress_path: str | Path,
    *,
    chunk_size: int = 32,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], GenerationReport]:
    """Generate every item not yet in ``progress_path`` and append the results there.

    Items are grouped by ``(temperature, max_new_tokens, seed)`` and sent in chunks of
    ``chunk_size``.
    Each written record is ``{"key", "output", "finish_reason", "meta"}``. Returns all records
    (old and new) by key, and a :class:`GenerationReport`. ``on_chunk(n_written)`` is called
    after each chunk (progress display, tests).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        raise ValueError("generation items have duplicate keys")
    path = Path(progress_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done, bad = read_progress(path)
    report = GenerationReport(total=len(items), skipped_bad_lines=bad)
    todo = [it for it in items if it.key not in done]
    report.already_done = len(items) - len(todo)
    groups: dict[tuple[float, int, int | None], list[GenerationItem]] = {}
    for it in todo:
        group_key = (float(it.temperature), int(it.max_new_tokens), it.seed)
        groups.setdefault(group_key, []).append(it)
    if bad:
        # rewrite the file without the unreadable lines so appends start on a clean line
        with open(path, "w", encoding="utf-8") as fh:
            _append(fh, done.values())
    with open(path, "a", encoding="utf-8") as fh:
        for (temperature, max_new, seed), group in groups.items():
            for start in range(0, len(group), chunk_size):
                chunk = group[start : start + chunk_size]
                results = backend.generate(
                    [it.messages for it in chunk],
                    max_new_tokens=max_new,
                    temperature=temperature,
                    seed=seed,
                )
                written = []
                for it, res in zip(chunk, results):
                    if res.error is not None or res.text is None:
                        report.failed += 1
                        if len(report.failures) < 5:
                            report.failures.append(f"{it.key}: {res.error}")
                        continue
                    rec = {
                        "key": it.key,
                        "output": res.text,
                        "finish_reason": res.finish_reason,
                        "meta": it.meta,
                    }
                    written.append(rec)
                    done[it.key] = rec
                _append(fh, written)
                report.generated += len(written)
                if on_chunk is not None:
                    on_chunk(len(written))
    return done, report


# --------------------------------------------------------------------------------------------
# command-line plumbing


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every ``generate`` subcommand (the backend's through
    :func:`hf_mig.models.generation.arguments.add_backend_arguments`)."""
    g = p.add_argument_group("generation")
    g.add_argument("--model", required=True, help="Hub id, local folder, or served model name")
    g.add_argument(
        "--backend",
        choices=["auto", "transformers", "vllm", "openai"],
        default="auto",
        help="auto: vLLM if installed and a GPU is present, else transformers",
    )
    g.add_argument("--model-name", help="name recorded as the generator (default: from --model)")
    add_backend_arguments(
        g, ["base-url"], helps={"base-url": "OpenAI-compatible server for --backend openai"}
    )
    g.add_argument("--max-new-tokens", type=int, help="default: the benchmark's")
    add_backend_arguments(
        g,
        ["batch-size", "device", "dtype", "chat-template"],
        helps={
            "batch-size": "transformers batch size",
            "device": "transformers device",
            "dtype": "model dtype",
        },
    )
    g.add_argument("--generation-cache", help="sqlite response cache of the backend")
    g.add_argument(
        "--chunk-size", type=int, default=32, help="items per write to the progress file"
    )


def backend_from_args(args: argparse.Namespace) -> Any:
    """Create the generation backend described by :func:`add_generation_args` options (see
    :func:`hf_mig.models.generation.arguments.backend_from_args`); responses are cached in
    ``--generation-cache``."""
    return arguments.backend_from_args(args, cache=args.generation_cache)


def generator_name(args: argparse.Namespace) -> str:
    """The generator name written into outputs: ``--model-name`` or the model's last path part."""
    return args.model_name or Path(str(args.model).rstrip("/")).name
