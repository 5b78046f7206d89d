"""Steps of a plan run at once (``hf-mig reproduce --jobs N``).

A step starts once every step producing its inputs (:meth:`Plan.dependencies`, among the steps
being run) has finished, never more than ``jobs`` at once, in plan order among those ready.
Steps that use GPUs share ``gpus`` devices: together they never ask for more, and each gets its
own devices through ``CUDA_VISIBLE_DEVICES``. Locally, ``gpus`` above the visible CUDA
devices (:func:`visible_gpus`) and a step asking for more than ``gpus`` are refused before any
step starts (``ValueError`` naming them); with ``gpus=0`` (or, by default, no visible device)
GPU steps run one at a time, each seeing the devices of this process. What each step does
before, while and after it runs (markers, logs, skipping, conflicts) is the serial runner's
(:func:`~hf_mig.reproduce.runner.run_plan`). A failed step blocks the steps that need its
outputs; without ``keep_going`` no further step starts, and those running finish.

Where a step runs is the executor's: :class:`LocalExecutor` starts it as a subprocess of this
process on this machine's GPUs; :class:`~hf_mig.reproduce.ray_executor.RayExecutor` as a Ray task
anywhere in a Ray cluster. The order, the limits and the GPU accounting above are the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hf_mig.reproduce.plan import Plan, Step

__all__ = ["Executor", "LocalExecutor", "run_concurrently", "visible_gpus"]

#: seconds between looks at the running steps
POLL_SECONDS = 0.05


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty when
    there are none, or torch is not installed)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        count = 0
    if given is not None:
        names = [d.strip() for d in given.split(",") if d.strip()]
        return names[:count]
    return [str(i) for i in range(count)]


class _Devices:
    """Which of ``total`` GPU slots are free; ``names``: the device of each slot."""

    def __init__(self, total: int, names: Sequence[str]) -> None:
        self.names = list(names)
        self.free = list(range(total))
        self.total = total
        self.busy = 0  # GPU steps running

    def fits(self, step: Step) -> bool:
        """Whether ``step`` may start now."""
        return step.gpus <= 0 or self.busy == 0 or step.gpus <= len(self.free)

    def check(self, steps: Sequence[Step]) -> None:
        """``ValueError`` naming the first of ``steps`` asking for more than the named devices
        (nothing to check when no device is named: GPU steps then run one at a time)."""
        if not self.names:
            return
        for step in steps:
            if step.gpus > self.total:
                raise ValueError(
                    f"step {step.id} needs {step.gpus} GPUs, but the steps share "
                    f"{self.total} ({', '.join(self.names)}): give it more with --gpus, or run "
                    "it alone (--jobs 1, or --stage to leave it out)"
                )

    def take(self, step: Step) -> tuple[list[int], dict[str, str]]:
        """Reserve ``step``'s devices: their slots and the environment naming them."""
        if step.gpus <= 0:
            return [], {}
        self.busy += 1
        if step.gpus > len(self.free):  # more than there are: runs alone among GPU steps
            taken, self.free = self.free, []
        else:
            taken, self.free = self.free[: step.gpus], self.free[step.gpus :]
        if step.gpus > len(taken) or len(self.names) < self.total:
            return taken, {}  # not enough named devices: leave the step's view as it is
        return taken, {"CUDA_VISIBLE_DEVICES": ",".join(self.names[i] for i in taken)}

    def give(self, step: Step, taken: list[int]) -> None:
        if step.gpus > 0:
            self.busy -= 1
            self.free = sorted(self.free + taken)


class Executor(Protocol):
    """Where :func:`run_concurrently` runs the steps."""

    def devices(self, gpus: int | None) -> _Devices:
        """The GPU slots the steps share (``gpus``: how many, ``None``: all there are)."""
        ...

    def start(self, launch: Any, step: Step, env: dict[str, str]) -> Any:
        """Start ``launch`` (``env``: the variables naming its devices, if any); return a
        handle whose ``poll()`` is ``None`` while it runs, then its exit status."""
        ...


class LocalExecutor:
    """Steps as subprocesses of this process: ``start(launch, env)`` starts one and returns its
    :class:`subprocess.Popen`; the GPUs are the visible CUDA devices (:func:`visible_gpus`)."""

    def __init__(self, start: Callable[[Any, dict[str, str]], Any]) -> None:
        self._start = start

    def devices(self, gpus: int | None) -> _Devices:
        """The visible CUDA devices (the first ``gpus`` of them); ``ValueError`` when ``gpus``
        is more than there are."""
        names = visible_gpus()
        if gpus is None:
            return _Devices(len(names), names)
        if gpus > len(names):
            seen = f"{len(names)} ({', '.join(names)})" if names else "none"
            raise ValueError(
                f"--gpus {gpus}: this process sees {seen} of the CUDA devices (torch's count, "
                "within CUDA_VISIBLE_DEVICES): give at most that many, or --gpus 0 to run the "
                "GPU steps one at a time"
            )
        return _Devices(gpus, names[:gpus])

    def start(self, launch: Any, step: Step, env: dict[str, str]) -> Any:
        return self._start(launch, env)


def run_concurrently(
    plan: Plan,
    steps: Sequence[Step],
    *,
    prepare: Callable[[int, Step], Any],
    finish: Callable[[Any, int], bool],
    jobs: int,
    start: Callable[[Any, dict[str, str]], Any] | None = None,
    gpus: int | None = None,
    keep_going: bool = False,
    executor: Executor | None = None,
    runs: Sequence[Step] | None = None,
) -> None:
    """Run ``steps`` (in plan order) up to ``jobs`` at once; see the module.

    ``runs``: the steps expected to run (default: all of ``steps``; finished ones that
    ``prepare`` will skip can be left out), whose GPU needs are checked before any starts.

    ``prepare(n, step)`` returns a launch, or a string outcome when the step does not run
    (``"failed"`` counts as a failure); ``executor`` starts it (default: a
    :class:`LocalExecutor` around ``start(launch, env)``, which returns a
    :class:`subprocess.Popen`); ``finish(launch, exit status)`` records it, True on success.
    """
    if executor is None:
        if start is None:
            raise ValueError("run_concurrently needs start= or executor=")
        executor = LocalExecutor(start)
    devices = executor.devices(gpus)
    devices.check(steps if runs is None else runs)
    deps = plan.dependencies()
    number = {step.id: n for n, step in enumerate(steps, 1)}
    pending = list(steps)
    ended: set[str] = set()
    running: dict[str, tuple[Any, Any, list[int], Step]] = {}
    stop = False
    while pending or running:
        for step in list(pending):
            if stop or len(running) >= jobs:
                break
            if any(u in number and u not in ended for u in deps[step.id]):
                continue
            if not devices.fits(step):
                continue
            pending.remove(step)
            launch = prepare(number[step.id], step)
            if isinstance(launch, str):
                ended.add(step.id)
                stop = launch == "failed" and not keep_going
                continue
            taken, env = devices.take(step)
            running[step.id] = (launch, executor.start(launch, step, env), taken, step)
        if stop:
            pending.clear()
        if not running:
            if pending:
                raise RuntimeError(f"steps wait on steps that never run: {[s.id for s in pending]}")
            break
        time.sleep(POLL_SECONDS)
        for step_id, (launch, process, taken, step) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            del running[step_id]
            devices.give(step, taken)
            ended.add(step_id)
            if not finish(launch, code) and not keep_going:
                stop = True
