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
