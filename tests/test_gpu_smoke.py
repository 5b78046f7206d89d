"""benchmarks/gpu_smoke.sh: valid shell, refuses to run without CUDA, and its Python part runs
end to end on CPU (``--dry-run``: the tiny Llama, one batch, one training step)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(BENCH / "gpu_smoke.sh")], check=True)


def test_without_cuda_it_fails_with_a_message():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCH / "gpu_smoke.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr


@pytest.mark.slow
def test_dry_run_on_cpu(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCH / "gpu_smoke.sh"), "--dry-run", "--workdir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("generate", "deita", "ifd"):
        assert any(line.startswith(name) and "rows/s" in line for line in done.stdout.splitlines())
    assert "train      1 steps" in done.stdout and "gpu_smoke: ok" in done.stdout


def _bin(tmp_path: Path, **programs: str) -> Path:
    """A folder of stand-in programs (name -> shell body) and ``dirname``: the whole ``PATH``."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    programs["dirname"] = f'exec {shutil.which("dirname")} "$@"'
    for name, body in programs.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def _smoke(path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {"PATH": str(path), "CUDA_VISIBLE_DEVICES": "", "HOME": os.environ.get("HOME", "/")}
    return subprocess.run([shutil.which("bash"), str(BENCH / "gpu_smoke.sh")],
                          env={**full, **env}, capture_output=True, text=True)  # fmt: skip


def test_without_python_it_falls_back_to_python3(tmp_path):
    done = _smoke(_bin(tmp_path, python3=f'exec {sys.executable} "$@"'))
    assert done.returncode == 2
    assert "torch imports, but no CUDA device is visible" in done.stderr  # python3 ran it


def test_each_missing_piece_has_its_own_message(tmp_path):
    done = _smoke(_bin(tmp_path))
    assert done.returncode == 2 and "no Python interpreter: 'python3' is not on PATH" in done.stderr
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError('no torch in this environment')\n")
    done = _smoke(_bin(tmp_path / "t", python=f'exec {sys.executable} "$@"'), PYTHONPATH=str(fake))
    assert done.returncode == 2
    assert "python cannot import torch (ImportError: no torch in this environment)" in done.stderr
