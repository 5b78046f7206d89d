"""A local Ray for a test module: 2 CPUs, no dashboard, its files under a temporary folder, and
nothing written into the real ``HOME`` (checked on exit).

``HOME`` points at a temporary folder and ``RAY_AUTH_MODE=disabled``: a cluster that listens
on this machine only, for the tests, needs no token (Ray otherwise writes ``~/.ray/auth_token``
and, once it has turned token mode on in a process, expects that token in every later cluster
of the process).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def local_ray(pythonpath: Sequence[str] = ()) -> Iterator[None]:
    """Start Ray for the ``with`` block; ``pythonpath``: folders the workers import from."""
    import ray

    real = Path.home() / ".ray"
    before = sorted(real.rglob("*")) if real.exists() else None
    root = Path(tempfile.mkdtemp(prefix="hfmig-ray-", dir="/tmp"))  # short: Ray's socket paths
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(root / "home"))
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.delenv("RAY_ADDRESS", raising=False)
        if pythonpath:
            paths = [*pythonpath, os.environ.get("PYTHONPATH", "")]
            patch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _temp_dir=str(root / "ray"),
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield
        finally:
            ray.shutdown()
            shutil.rmtree(root, ignore_errors=True)
    after = sorted(real.rglob("*")) if real.exists() else None
    assert after == before, f"the tests wrote into {real}"
