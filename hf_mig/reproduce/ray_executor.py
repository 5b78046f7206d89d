"""Steps of a plan as Ray tasks (``hf-mig reproduce ... --executor ray``).

Each step is one Ray task that runs the step's command as a subprocess from the plan's work
folder, asking Ray for the step's GPUs (``num_gpus``) and ``cpus_per_step`` CPUs; Ray places it
on a node with them free and sets its ``CUDA_VISIBLE_DEVICES``. Which steps start when is
:func:`~hf_mig.reproduce.scheduler.run_concurrently`'s, as with ``--jobs``: a step starts once
the steps producing its inputs succeeded, and steps using GPUs share the cluster's GPUs; the
markers, logs, skipping, resuming and ``keep_going`` are the local runner's. The driver (the
``hf-mig reproduce`` process) writes the markers and the head of each log; the task appends
the command's output to the log, so every node must see the work folder at the same path
(a shared file system).

A task is never retried (``max_retries=0``, where Ray's default retries a task whose worker
died): a second copy of a step would write the same outputs as a first one that may still be
running elsewhere. A step whose worker or node dies fails (exit status :data:`FAILED_TO_RUN`,
the reason in its log); a later run starts it again (a training step from its last checkpoint).

Ray is optional (``pip install "hf-mig[ray]"``). :func:`ray_executor` joins the cluster named
by ``RAY_ADDRESS`` (or starts a local one) unless Ray is already initialised, and leaves a
cluster it started when the run ends (:func:`hf_mig.runtime.ray_data.ray_session`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hf_mig.reproduce.plan import Step
from hf_mig.reproduce.scheduler import _Devices

__all__ = ["RayExecutor", "ray_executor", "run_step_command"]

#: exit status of a task whose command could not start or whose worker died
FAILED_TO_RUN = 127


class _ClusterDevices(_Devices):
    """The cluster's GPU slots; a task runs on one node, so no step may ask for more GPUs than
    the largest living node has (``node_gpus``)."""

    def __init__(self, total: int, node_gpus: int) -> None:
        super().__init__(total, [])
        self.node_gpus = node_gpus

    def check(self, steps: Sequence[Step]) -> None:
        """``ValueError`` naming the first of ``steps`` that no node could run."""
        for step in steps:
            if step.gpus > self.node_gpus:
                raise ValueError(
                    f"step {step.id} needs {step.gpus} GPUs, but the largest node of the Ray "
                    f"cluster has {self.node_gpus}: add a node with {step.gpus} GPUs, or run "
                    "the step elsewhere (--stage to leave it out)"
                )


def run_step_command(command: list[str], cwd: str, log: str) -> int:
    """Run a step's ``command`` from ``cwd``, appending its output to ``log``; return its exit
    status (:data:`FAILED_TO_RUN` when the program is not there). The body of the Ray task."""
    from hf_mig.reproduce.runner import resolve_command

    env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1")}
    with open(log, "a", encoding="utf-8") as handle:
        try:
            argv = resolve_command(command)
        except FileNotFoundError as err:
            handle.write(f"hf-mig reproduce: {err}\n")
            return FAILED_TO_RUN
        done = subprocess.run(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return done.returncode


class _RayTask:
    """A submitted step: ``poll()`` is ``None`` while it runs, then its exit status."""

    def __init__(self, ray: Any, ref: Any, log: Path) -> None:
        self.ray, self.ref, self.log = ray, ref, log

    def poll(self) -> int | None:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return int(self.ray.get(self.ref))
        except self.ray.exceptions.RayError as err:  # the worker or node died
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(f"hf-mig reproduce: the Ray task failed: {err}\n")
            return FAILED_TO_RUN


class RayExecutor:
    """Run steps as Ray tasks (see the module).

    ``ray``: the connected ``ray`` module; ``workdir``: the plan's work folder (the tasks'
    current folder); ``begin(launch)``: what the driver records as a step starts (its marker,
    the head of its log); ``cpus_per_step``: Ray CPUs each task asks for.
    """

    def __init__(
        self,
        ray: Any,
        workdir: Path,
        begin: Callable[[Any], None],
        cpus_per_step: float = 1.0,
    ) -> None:
        if cpus_per_step <= 0:
            raise ValueError(f"cpus_per_step must be > 0, got {cpus_per_step!r}")
        self.ray = ray
        self.workdir = Path(workdir).resolve()
        self.begin = begin
        self.cpus_per_step = cpus_per_step
        self._task = ray.remote(max_retries=0)(run_step_command)  # see the module

    def _node_gpus(self) -> int:
        """The most GPUs one living node has (a task runs on one node)."""
        return max(
            (int(n["Resources"].get("GPU", 0)) for n in self.ray.nodes() if n.get("Alive")),
            default=0,
        )

    def devices(self, gpus: int | None) -> _Devices:
        """The cluster's GPUs (``gpus`` when given): GPU steps share them as locally (with none
        counted, one at a time); a step needing more than one node has is refused."""
        total = int(self.ray.cluster_resources().get("GPU", 0)) if gpus is None else gpus
        return _ClusterDevices(total, self._node_gpus())

    def start(self, launch: Any, step: Step, env: dict[str, str]) -> _RayTask:
        """Record the step as started and submit its task, asking for its GPUs."""
        self.begin(launch)
        num_gpus = max(step.gpus, 0)
        ref = self._task.options(num_cpus=self.cpus_per_step, num_gpus=num_gpus).remote(
            list(launch.command), str(self.workdir), str(launch.log.resolve())
        )
        return _RayTask(self.ray, ref, launch.log)


@contextmanager
def ray_executor(
    workdir: Path, begin: Callable[[Any], None], cpus_per_step: float = 1.0
) -> Iterator[RayExecutor]:
    """``with ray_executor(workdir, begin) as executor:`` a :class:`RayExecutor` on a connected
    Ray (``ImportError`` naming ``pip install "hf-mig[ray]"`` when Ray is missing)."""
    from hf_mig.runtime.ray_data import ray_session

    with ray_session() as ray:
        yield RayExecutor(ray, workdir, begin, cpus_per_step)
