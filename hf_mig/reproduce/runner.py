"""Run a :class:`~hf_mig.reproduce.plan.Plan`: each step in order, skipping finished ones.

A step runs as a subprocess from the plan's work folder, its output going to
``logs/<step>.log``; on success its outputs are checked and its marker written, so a re-run
skips it (see :meth:`Plan.status`). A failure stops the run (or, with ``keep_going``, skips the
steps that need the failed one's outputs) and names the log. A training step interrupted after a
checkpoint resumes from it (``--resume_from_checkpoint true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .plan import Plan, Step

__all__ = ["RunSummary", "resolve_command", "run_plan"]


@dataclass
class RunSummary:
    """What :func:`run_plan` did: step ids by outcome, and seconds per executed step."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no step failed or was blocked."""
        return not self.failed and not self.blocked


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


def run_plan(
    plan: Plan,
    *,
    stages: Sequence[str] | None = None,
    force: bool = False,
    keep_going: bool = False,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """Run the steps of ``plan`` (only those of ``stages`` when given) and return a summary.

    Finished steps (``done``/``exists``) are skipped unless ``force``. Steps whose state is
    ``changed`` (their command or an input changed since they ran) run again.
    """
    plan.workdir.mkdir(parents=True, exist_ok=True)
    logs = plan.workdir / "logs"
    logs.mkdir(exist_ok=True)
    summary = RunSummary()
    producer = {out: s.id for s in plan.steps for out in s.outputs}
    selected = [s for s in plan.steps if not stages or s.stage in stages]
    for n, step in enumerate(selected, 1):
        head = f"[{n}/{len(selected)}] {step.id}"
        missing_from = sorted(
            {producer[i] for i in step.inputs if i in producer}
            & set(summary.failed + summary.blocked)
        )
        if missing_from:
            summary.blocked.append(step.id)
            echo(f"{head}: blocked (needs {', '.join(missing_from)})")
            continue
        state = plan.step_state(step)
        if state in ("done", "exists") and not force:
            summary.skipped.append(step.id)
            echo(f"{head}: {state}, skipped")
            continue
        missing = [i for i in step.inputs if i not in producer and not plan.path(i).exists()]
        if missing:
            summary.failed.append(step.id)
            echo(f"{head}: FAILED before starting: input(s) missing: {', '.join(missing)}")
            if not keep_going:
                break
            continue
        command = list(step.command)
        if _checkpoints(plan, step):
            command += ["--resume_from_checkpoint", "true"]
        log = logs / _log_name(step)
        echo(f"{head}: running ({step.title}); log: {log}")
        start = time.perf_counter()
        try:
            argv = resolve_command(command)
        except FileNotFoundError as err:
            summary.failed.append(step.id)
            echo(f"{head}: FAILED: {err}")
            if not keep_going:
                break
            continue
        for out in step.outputs:
            plan.path(out).parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log, "w", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(command) + "\n")
            fh.flush()
            code = subprocess.run(
                argv, cwd=plan.workdir, stdout=fh, stderr=subprocess.STDOUT, env=env
            ).returncode
        seconds = time.perf_counter() - start
        not_written = [o for o in step.outputs if not plan.path(o).exists()]
        if code != 0 or not_written:
            summary.failed.append(step.id)
            why = f"exit status {code}" if code else f"did not write {', '.join(not_written)}"
            echo(f"{head}: FAILED ({why}) after {seconds:.1f} s; last lines of {log}:")
            echo(_tail(log))
            if not keep_going:
                break
            continue
        plan.write_marker(step, seconds)
        summary.ran.append(step.id)
        summary.seconds[step.id] = seconds
        echo(f"{head}: done in {seconds:.1f} s")
    return summary
