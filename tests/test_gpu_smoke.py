"""benchmarks/gpu_smoke.sh: valid shell, refuses to run without CUDA, and its Python part runs
end to end on CPU (``--dry-run``: the tiny Llama, one batch, one training step)."""

from __future__ import annotations

import os
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
