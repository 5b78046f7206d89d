"""A reproduction plan: ordered steps, each a command with the files it reads and writes.

A :class:`Step` is one command line (``hf-mig ...``, ``python -m ...`` or ``accelerate launch
...``) run from the plan's work folder, with the files it needs (``inputs``) and the files that
exist once it has finished (``outputs``), its GPUs and estimated hours. A finished step leaves a
marker (``.reproduce/<step>.json``) with its command and the size and modification time of its
inputs. :meth:`Plan.status` says for each step whether it is ``done`` (outputs present, marker
matches), ``exists`` (outputs present without a marker: made elsewhere, kept), ``changed``
(outputs present, but the command or an input changed since), ``todo`` (outputs missing) or
``after`` (an earlier step it depends on will run first).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MARKER_DIR", "STAGES", "Plan", "Step"]

#: Stages in the order they run.
STAGES = ("annotate", "vocab", "graph", "select", "train", "eval", "compare", "report")
MARKER_DIR = ".reproduce"


@dataclass
class Step:
    """One command of a plan.

    ``command`` starts with a program name: ``hf-mig``, ``python`` or ``accelerate`` (resolved to
    this Python's tools when run). Paths inside the work folder are relative to it. ``hours`` is
    the estimated wall-clock time on ``gpus`` H100s (0 GPUs: a CPU step); ``resume`` marks a
    training step that continues from its last checkpoint when re-run after an interruption.
    """

    id: str
    stage: str
    title: str
    command: list[str]
    outputs: list[str]
    inputs: list[str] = field(default_factory=list)
    gpus: int = 0
    hours: float = 0.0
    note: str = ""
    resume: bool = False

    @property
    def gpu_hours(self) -> float:
        """Estimated GPU-hours (``gpus x hours``)."""
        return self.gpus * self.hours

    def shell(self) -> str:
        """The command as one shell line."""
        return shlex.join(self.command)


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


@dataclass
class Plan:
    """The steps of one experiment at one scale, run from ``workdir``."""

    experiment: str
    scale: str
    title: str
    workdir: Path
    steps: list[Step]
    notes: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    table: str = ""
    report: str = ""
    paper_table: str | None = None

    def __post_init__(self) -> None:
        ids = [s.id for s in self.steps]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"plan has duplicate step ids: {dup}")

    # -------------------------------------------------------------- state on disk

    def path(self, rel: str) -> Path:
        """``rel`` resolved against the work folder (absolute paths unchanged)."""
        p = Path(rel)
        return p if p.is_absolute() else self.workdir / p

    def marker_path(self, step: Step) -> Path:
        """Where ``step``'s completion marker lives."""
        return self.workdir / MARKER_DIR / (step.id.replace("/", "__") + ".json")

    def input_stamps(self, step: Step) -> dict[str, list[int] | None]:
        """Size and modification time of each input (None: missing)."""
        return {rel: _stamp(self.path(rel)) for rel in step.inputs}

    def write_marker(self, step: Step, seconds: float) -> None:
        """Record that ``step`` finished (atomically)."""
        from hf_mig import __version__

        marker = self.marker_path(step)
        marker.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "id": step.id,
            "command": step.command,
            "inputs": self.input_stamps(step),
            "outputs": step.outputs,
            "seconds": round(seconds, 3),
            "hf_mig": __version__,
        }
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, marker)

    def seconds(self, step: Step) -> float | None:
        """Measured run time of a finished step (from its marker), else None."""
        try:
            return float(json.loads(self.marker_path(step).read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def step_state(self, step: Step) -> str:
        """``done``, ``exists``, ``changed`` or ``todo`` for ``step`` alone (see the module)."""
        if not all(self.path(o).exists() for o in step.outputs):
            return "todo"
        marker = self.marker_path(step)
        if not marker.is_file():
            return "exists"
        try:
            record = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            return "changed"
        if record.get("command") != step.command:
            return "changed"
        if record.get("inputs") != self.input_stamps(step):
            return "changed"
        return "done"

    def status(self) -> dict[str, str]:
        """State of every step, with ``after`` for steps downstream of one that will run."""
        producer = {out: s.id for s in self.steps for out in s.outputs}
        states: dict[str, str] = {}
        for step in self.steps:
            state = self.step_state(step)
            upstream = {producer[i] for i in step.inputs if i in producer}
            if state in ("done", "exists") and any(
                states.get(u) in ("todo", "changed", "after") for u in upstream
            ):
                state = "after"
            states[step.id] = state
        return states

    # -------------------------------------------------------------- rendering

    def totals(self, states: dict[str, str] | None = None) -> dict[str, float]:
        """Estimated GPU-hours, over all steps and over those still to run (``states``: a
        :meth:`status` already computed)."""
        states = states or self.status()
        run = [s for s in self.steps if states[s.id] not in ("done", "exists")]
        return {
            "steps": len(self.steps),
            "steps_to_run": len(run),
            "gpu_hours": sum(s.gpu_hours for s in self.steps),
            "gpu_hours_to_run": sum(s.gpu_hours for s in run),
        }

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data (``--format json``)."""
        states = self.status()
        return {
            "experiment": self.experiment,
            "scale": self.scale,
            "title": self.title,
            "workdir": str(self.workdir),
            "notes": self.notes,
            "blockers": self.blockers,
            "table": self.table,
            "report": self.report,
            "paper_table": self.paper_table,
            "totals": self.totals(states),
            "steps": [
                {**asdict(s), "gpu_hours": s.gpu_hours, "status": states[s.id]} for s in self.steps
            ],
        }

    def render(self, stages: Sequence[str] | None = None) -> str:
        """Human-readable plan: one block per step with GPUs, hours, status and command."""
        states = self.status()
        lines = [
            f"{self.title}",
            f"experiment {self.experiment}, scale {self.scale}; work folder {self.workdir}",
            "",
        ]
        width = max((len(s.id) for s in self.steps), default=10)
        lines.append(f"  {'step':<{width}}  {'GPUs':>4}  {'est. h':>7}  {'GPU-h':>7}  status")
        for s in self.steps:
            if stages and s.stage not in stages:
                continue
            hours = f"{s.hours:7.2f}" if s.gpus else "    cpu"
            gpu_h = f"{s.gpu_hours:7.1f}" if s.gpus else "      -"
            state = states[s.id]
            took = self.seconds(s) if state == "done" else None
            if took is not None:
                state += f" (took {took:.1f} s)"
            lines.append(f"  {s.id:<{width}}  {s.gpus:>4}  {hours}  {gpu_h}  {state}")
            lines.append(f"      {s.title}")
            lines.append(f"      $ {s.shell()}")
            if s.note:
                lines.append(f"      note: {s.note}")
        t = self.totals(states)
        total = f"{t['steps']} steps ({t['steps_to_run']} to run); "
        if any(s.gpus for s in self.steps):
            total += (
                f"estimated {t['gpu_hours']:,.0f} GPU-hours on H100 in all, "
                f"{t['gpu_hours_to_run']:,.0f} still to run (ESTIMATES from token counts and "
                "FLOPs: hf_mig.reproduce.costs; an A100 80GB takes about 3.2x as long)"
            )
        else:
            total += "every step runs on CPU"
        lines += ["", total]
        if self.notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        if self.blockers:
            lines += ["", "Cannot run yet:"] + [f"- {b}" for b in self.blockers]
        return "\n".join(lines) + "\n"
