"""Run a :class:`~hf_mig.reproduce.plan.Plan`: each step in order, skipping finished ones.

A step runs as a subprocess from the plan's work folder, its output going to
``logs/<step>.log``. Its marker is written as it starts (its outputs are then the plan's own)
and completed once it exited 0 and every output passed
:func:`~hf_mig.reproduce.outputs.inspect_output`, so a re-run skips it (see
:meth:`Plan.check`). A step that runs again over outputs the plan made (its command or inputs
changed, an earlier run stopped half way, ``force``) gets ``--overwrite`` when it is an
``hf-mig`` command that takes it; outputs the plan did not make are never replaced: such a step
is a ``conflict`` and fails before starting. A failure stops the run (or, with ``keep_going``,
skips the steps that need the failed one's outputs) and names the log. Before the first step,
what the steps to run read from outside the work folder is checked (:meth:`Plan.preflight`):
when something is missing, nothing runs. A training step
interrupted after a checkpoint resumes from it (``--resume_from_checkpoint true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.reproduce.outputs import inspect_output
from hf_mig.reproduce.plan import FINISHED, Plan, Step

__all__ = ["EXECUTORS", "RunSummary", "begin_step", "resolve_command", "run_plan"]


@dataclass
class RunSummary:
    """What :func:`run_plan` did: step ids by outcome, and seconds per executed step.

    ``conflicts``: the failed steps that did not run because an output the plan did not make
    was in the way (also in ``failed``). ``missing``: what the preflight check found missing
    (one line each); nothing ran.
    """

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was missing and no step failed or was blocked."""
        return not self.failed and not self.blocked and not self.missing


def resolve_command(command: Sequence[str]) -> list[str]:
    """Map the plan's program names to this environment: ``hf-mig`` and ``python`` run with
    this interpreter; ``accelerate`` is found on ``PATH`` (``FileNotFoundError`` if missing)."""
    program, *rest = command
    if program == "hf-mig":
        return [sys.executable, "-m", "hf_mig", *rest]
    if program == "python":
        return [sys.executable, *rest]
    found = shutil.which(program)
    if found is None:
        raise FileNotFoundError(f"{program!r} is not on PATH (needed by: {' '.join(command)})")
    return [found, *rest]


#: ``hf-mig`` subcommands with an ``--overwrite`` flag (checked against the command line by the
#: tests): a re-run of such a step replaces what this plan's earlier run wrote.
OVERWRITE_COMMANDS = frozenset({"graph", "merge", "report", "reproduce", "score", "select", "tag"})


def takes_overwrite(command: Sequence[str]) -> bool:
    """Whether ``command`` is an ``hf-mig`` subcommand with an ``--overwrite`` flag."""
    return len(command) >= 2 and command[0] == "hf-mig" and command[1] in OVERWRITE_COMMANDS


def _log_name(step: Step) -> str:
    return step.id.replace("/", "__") + ".log"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in text[-lines:])


def _checkpoints(plan: Plan, step: Step) -> bool:
    if not step.resume or not step.outputs:
        return False
    run_dir = plan.path(step.outputs[0]).parent
    return any(run_dir.glob("checkpoint-*"))


@dataclass
class _Launch:
    """A step ready to start: its command line, log, and its inputs' hashes before it ran."""

    step: Step
    head: str
    command: list[str]
    argv: list[str]
    log: Path
    inputs: dict[str, str | None]
    start: float = 0.0
    handle: Any = None


def _prepare(
    plan: Plan,
    step: Step,
    head: str,
    summary: RunSummary,
    producer: dict[str, str],
    logs: Path,
    force: bool,
    echo: Callable[[str], None],
) -> _Launch | str:
    """Decide what to do with ``step``: a :class:`_Launch` to start it, or its outcome when it
    does not run (``"blocked"``, ``"skipped"`` or ``"failed"``, recorded in ``summary``)."""
    missing_from = sorted(
        {producer[i] for i in step.inputs if i in producer} & set(summary.failed + summary.blocked)
    )
    if missing_from:
        summary.blocked.append(step.id)
        echo(f"{head}: blocked (needs {', '.join(missing_from)})")
        return "blocked"
    memo: dict[str, str | None] = {}
    check = plan.check(step, memo)
    if check.state in FINISHED and not force:
        record = plan.read_marker(step)
        if check.state == "done" and record and record.get("legacy"):
            # an older marker that matched by size and time: record the content from now on
            plan.write_marker(step, plan.seconds(step) or 0.0, plan.input_digests(step, memo))
        summary.skipped.append(step.id)
        echo(f"{head}: {check.state}, skipped" + (f" ({check.detail})" if check.detail else ""))
        return "skipped"
    if check.state == "conflict" or check.foreign:
        summary.failed.append(step.id)
        summary.conflicts.append(step.id)
        detail = check.detail
        if check.state != "conflict":  # finished, but forced over outputs made elsewhere
            detail = (
                f"{', '.join(check.foreign)} were not made by this plan and are never "
                "replaced (not even with --force): move them away to run this step"
            )
        echo(f"{head}: CONFLICT, not run: {detail}")
        return "failed"
    missing = [i for i in step.inputs if i not in producer and not plan.path(i).exists()]
    if missing:
        summary.failed.append(step.id)
        echo(f"{head}: FAILED before starting: input(s) missing: {', '.join(missing)}")
        return "failed"
    ran_before = plan.read_marker(step) is not None
    inputs = plan.input_digests(step, memo)  # as they are when the step reads them
    command = list(step.command)
    if ran_before and takes_overwrite(command):
        command.append("--overwrite")  # replaces what this plan's earlier run wrote
    if check.state in ("partial", "todo") and _checkpoints(plan, step):
        # an interrupted run of the same command: continue it (a changed or forced step
        # starts over: its checkpoints were trained on other inputs)
        command += ["--resume_from_checkpoint", "true"]
    log = logs / _log_name(step)
    echo(f"{head}: running ({step.title}); log: {log}")
    try:
        argv = resolve_command(command)
    except FileNotFoundError as err:
        summary.failed.append(step.id)
        echo(f"{head}: FAILED: {err}")
        return "failed"
    return _Launch(step, head, command, argv, log, inputs)


def begin_step(plan: Plan, launch: _Launch) -> None:
    """Mark ``launch``'s step as started: its output folders made, its marker started (its
    outputs are now the plan's own), its clock started and its log begun with the command."""
    for out in launch.step.outputs:
        plan.path(out).parent.mkdir(parents=True, exist_ok=True)
    plan.start_marker(launch.step)
    launch.start = time.perf_counter()
    launch.log.write_text("$ " + " ".join(launch.command) + "\n", encoding="utf-8")


def _start(plan: Plan, launch: _Launch, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Mark ``launch``'s step as started and start its command (``env``: extra variables)."""
    begin_step(plan, launch)
    full = {**os.environ, **(env or {})}
    full.setdefault("PYTHONUNBUFFERED", "1")
    launch.handle = open(launch.log, "a", encoding="utf-8")  # noqa: SIM115 (closed in _finish)
    return subprocess.Popen(
        launch.argv, cwd=plan.workdir, stdout=launch.handle, stderr=subprocess.STDOUT, env=full
    )


def _finish(
    plan: Plan, launch: _Launch, code: int, summary: RunSummary, echo: Callable[[str], None]
) -> bool:
    """Record how ``launch``'s step ended (exit status ``code``); True when it succeeded."""
    if launch.handle is not None:
        launch.handle.close()
    step, head, log = launch.step, launch.head, launch.log
    seconds = time.perf_counter() - launch.start
    unusable = []
    if code == 0:
        for out in step.outputs:
            found = inspect_output(plan.path(out))
            if not found.ok:
                unusable.append(f"{out} ({found.text})")
    if code != 0 or unusable:
        summary.failed.append(step.id)
        why = f"exit status {code}" if code else f"unusable output: {', '.join(unusable)}"
        echo(f"{head}: FAILED ({why}) after {seconds:.1f} s; last lines of {log}:")
        echo(_tail(log))
        return False
    plan.write_marker(step, seconds, launch.inputs)
    summary.ran.append(step.id)
    summary.seconds[step.id] = seconds
    echo(f"{head}: done in {seconds:.1f} s")
    return True


#: where :func:`run_plan` runs the steps
EXECUTORS = ("local", "ray")


def _check_run(jobs: int | None, gpus: int | None, executor: str) -> None:
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        raise ValueError(f"gpus must be a non-negative integer, got {gpus!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")


def run_plan(
    plan: Plan,
    *,
    stages: Sequence[str] | None = None,
    force: bool = False,
    keep_going: bool = False,
    echo: Callable[[str], None] = print,
    preflight: bool = True,
    jobs: int | None = None,
    gpus: int | None = None,
    executor: str = "local",
) -> RunSummary:
    """Run the steps of ``plan`` (only those of ``stages`` when given) and return a summary.

    Finished steps (``done``/``exists``) are skipped unless ``force``. Steps whose state is
    ``changed`` (their command or an input changed since they ran) or ``partial`` run again,
    with ``--overwrite`` where it applies (see the module). A ``conflict`` fails before starting,
    as does a forced step over outputs the plan did not make. With ``preflight`` (the default),
    the steps' external inputs are checked first; if any is missing, the summary lists it in
    ``missing`` and no step runs (nothing is written).

    ``jobs`` > 1 runs up to that many steps at once (default ``None``: one at a time), a step
    once the steps producing its inputs have finished, steps using GPUs sharing ``gpus``
    devices (default: the visible CUDA devices); see :mod:`hf_mig.reproduce.scheduler`.
    ``executor="ray"`` runs each step as a Ray task (:mod:`hf_mig.reproduce.ray_executor`) with
    the same order and GPU accounting over the cluster's GPUs; there ``jobs=None`` means no
    limit but the cluster's resources.
    """
    _check_run(jobs, gpus, executor)
    summary = RunSummary()
    concurrent = executor == "ray" or (jobs or 1) > 1
    states = {} if force or not (preflight or concurrent) else plan.status()  # one pass
    if preflight:
        summary.missing = plan.preflight(stages, force, states)
        for problem in summary.missing:
            echo(f"cannot start: {problem}")
        if summary.missing:
            return summary
    plan.workdir.mkdir(parents=True, exist_ok=True)
    logs = plan.workdir / "logs"
    logs.mkdir(exist_ok=True)
    producer = {out: s.id for s in plan.steps for out in s.outputs}
    selected = [s for s in plan.steps if not stages or s.stage in stages]

    def prepare(n: int, step: Step) -> _Launch | str:
        head = f"[{n}/{len(selected)}] {step.id}"
        return _prepare(plan, step, head, summary, producer, logs, force, echo)

    def finish(launch: _Launch, code: int) -> bool:
        return _finish(plan, launch, code, summary, echo)

    if concurrent:
        runs = [s for s in selected if states.get(s.id) not in FINISHED]
        _run_concurrently(plan, selected, runs, prepare, finish, (jobs, gpus), keep_going, executor)
        return summary
    for n, step in enumerate(selected, 1):
        launch = prepare(n, step)
        if isinstance(launch, str):
            if launch == "failed" and not keep_going:
                break
            continue
        if not finish(launch, _start(plan, launch).wait()) and not keep_going:
            break
    return summary


def _run_concurrently(
    plan: Plan,
    selected: list[Step],
    runs: list[Step],
    prepare: Callable[[int, Step], _Launch | str],
    finish: Callable[[_Launch, int], bool],
    limits: tuple[int | None, int | None],
    keep_going: bool,
    executor: str,
) -> None:
    """:func:`~hf_mig.reproduce.scheduler.run_concurrently` on the named executor; ``runs``:
    the steps of ``selected`` expected to run, ``limits = (jobs, gpus)``."""
    jobs, gpus = limits
    from hf_mig.reproduce.scheduler import LocalExecutor, run_concurrently

    if executor == "ray":
        from hf_mig.reproduce.ray_executor import ray_executor

        context: Any = ray_executor(plan.workdir, lambda launch: begin_step(plan, launch))
    else:
        context = nullcontext(LocalExecutor(lambda launch, env: _start(plan, launch, env)))
    with context as chosen:
        run_concurrently(
            plan,
            selected,
            prepare=prepare,
            finish=finish,
            jobs=jobs or max(1, len(selected)),
            gpus=gpus,
            keep_going=keep_going,
            executor=chosen,
            runs=runs,
        )
