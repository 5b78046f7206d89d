"""Command-line options of the generation backends, defined once for every command.

:func:`add_backend_arguments` adds the options a command wants (``--base-url``, ``--device``,
``--chat-template``...), optionally under a prefix (``--judge-base-url``) and with the command's
own defaults; :func:`backend_options` turns the parsed options into the constructor arguments of
one backend (only the options that backend takes, and only those the command has);
:func:`backend_from_args` creates the backend. ``--backend auto`` (:func:`resolve_backend_name`)
is vLLM when it is installed and a CUDA GPU is present, else transformers.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BACKEND_OPTIONS",
    "BackendOption",
    "add_backend_arguments",
    "backend_from_args",
    "backend_options",
    "resolve_backend_name",
]


@dataclass(frozen=True)
class BackendOption:
    """One command-line option: the backends whose constructor takes it (as ``name`` with dashes
    made underscores) and its ``argparse`` settings."""

    name: str
    backends: frozenset[str]
    settings: Mapping[str, Any]

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def _option(name: str, backends: str, **settings: Any) -> BackendOption:
    return BackendOption(name, frozenset(backends.split()), settings)


#: Every backend option, in the order they are passed to a constructor.
BACKEND_OPTIONS: dict[str, BackendOption] = {
    o.name: o
    for o in (
        _option("base-url", "openai", help="openai: API root"),
        _option(
            "api-key-env",
            "openai",
            default="OPENAI_API_KEY",
            help="environment variable with the API key (default OPENAI_API_KEY)",
        ),
        _option("concurrency", "openai", type=int, default=8, help="openai: requests in flight"),
        _option("timeout", "openai", type=float, default=120.0, help="openai: seconds per request"),
        _option("max-retries", "openai", type=int, default=5, help="openai: retries per request"),
        _option("backoff", "openai", type=float, default=1.0, help="openai: first retry delay (s)"),
        _option(
            "device", "transformers", default="auto", help="transformers: auto, cpu, cuda:0, ..."
        ),
        _option(
            "dtype",
            "transformers vllm",
            default="auto",
            help="transformers/vllm: auto, bfloat16, ...",
        ),
        _option("batch-size", "transformers", type=int, default=8, help="transformers: batch size"),
        _option("gguf-file", "transformers", help="transformers: GGUF file inside --model"),
        _option("tensor-parallel-size", "vllm", type=int, default=1, help="vllm: GPUs per model"),
        _option(
            "chat-template",
            "transformers vllm",
            help="file with a Jinja chat template (overrides the model's)",
        ),
    )
}


def add_backend_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    options: Iterable[str],
    *,
    prefix: str = "",
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str | None] | None = None,
) -> None:
    """Add ``--<prefix><option>`` for each of ``options`` (names of :data:`BACKEND_OPTIONS`) to
    ``parser`` (or an argument group), with ``defaults`` and ``helps`` (by option name) replacing
    the shared ones. Raises ``KeyError`` for an unknown option name."""
    for name in options:
        option = BACKEND_OPTIONS[name]
        settings = dict(option.settings)
        if defaults and name in defaults:
            settings["default"] = defaults[name]
        if helps and name in helps:
            settings["help"] = helps[name]
        parser.add_argument(f"--{prefix}{name}", **settings)


def read_chat_template(path: str | Path, flag: str = "--chat-template") -> str:
    """The text of a chat-template file; ``FileNotFoundError`` naming ``flag`` when missing."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{flag}: no such file: {file}")
    return file.read_text(encoding="utf-8")


def backend_options(args: argparse.Namespace, backend: str, *, prefix: str = "") -> dict[str, Any]:
    """Constructor arguments of ``backend`` from options added by :func:`add_backend_arguments`.

    Only options the backend takes and ``args`` holds are used, and only those that are set
    (not ``None`` or empty); ``--chat-template`` is read from its file.
    """
    attr = prefix.replace("-", "_")
    out: dict[str, Any] = {}
    for option in BACKEND_OPTIONS.values():
        value = getattr(args, attr + option.dest, None)
        if backend not in option.backends or value is None or value == "":
            continue
        if option.name == "chat-template":
            value = read_chat_template(value, f"--{prefix}{option.name}")
        out[option.dest] = value
    return out


def resolve_backend_name(name: str) -> str:
    """``auto`` -> ``vllm`` when vLLM imports and CUDA is available, else ``transformers``."""
    if name != "auto":
        return name
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return "vllm"
        except ImportError:  # pragma: no cover
            pass
    return "transformers"


def backend_from_args(
    args: argparse.Namespace,
    *,
    prefix: str = "",
    backend: str | None = None,
    model: str | None = None,
    required: Sequence[str] = ("base-url",),
    **extra: Any,
) -> Any:
    """The generation backend the parsed options describe.

    ``backend`` (default ``args.<prefix>backend``, ``auto`` resolved by
    :func:`resolve_backend_name`) and ``model`` (default ``args.<prefix>model``) name it; its
    arguments are :func:`backend_options` plus ``extra`` (e.g. ``cache=``, ``progress=``).
    Raises ``SystemExit`` naming the option when one of ``required`` that the backend takes is
    not set (``--backend openai needs --base-url``).
    """
    from hf_mig.models.generation import load_backend

    attr = prefix.replace("-", "_")
    name = resolve_backend_name(backend or getattr(args, attr + "backend"))
    options = backend_options(args, name, prefix=prefix)
    for option in required:
        if name in BACKEND_OPTIONS[option].backends and BACKEND_OPTIONS[option].dest not in options:
            raise SystemExit(f"--{prefix}backend {name} needs --{prefix}{option}")
    return load_backend(name, model or getattr(args, attr + "model"), **options, **extra)
