"""A reproduction plan: ordered steps, each a command with the files it reads and writes.

A :class:`Step` is one command line (``hf-mig ...``, ``python -m ...`` or ``accelerate launch
...``) run from the plan's work folder, with the files it needs (``inputs``) and the files that
exist once it has finished (``outputs``), its GPUs and estimated hours.

The plan trusts only its own markers (``.reproduce/<step>.json``). The runner writes one when a
step starts (``complete: false``; the step's outputs are then the plan's own, ``owned``) and
completes it when the step has finished and its outputs passed :func:`inspect_output`,
recording the command and a content hash (xxh3-128) of every input file (of every file of an
input folder). :meth:`Plan.check` says for each step:

* ``done``: a complete marker, the same command and inputs with the same content, outputs there;
* ``changed``: a complete marker, but the command or an input's content changed since;
* ``partial``: an earlier run of the step started and did not finish; it runs again;
* ``todo``: outputs missing (and none there that the plan did not make);
* ``exists``: no marker of the plan, but every output is there and passes
  :func:`inspect_output` (made elsewhere: kept, and the check says what was found);
* ``conflict``: an output is there that the plan did not make, and it is unusable (empty,
  truncated, ...) or the step must run and would replace it: nothing is run or replaced;
* ``after`` (in :meth:`Plan.status` only): an earlier step it depends on will run first.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.data.io import write_text_atomic
from hf_mig.reproduce.outputs import inspect_output
from hf_mig.reproduce.preflight import Need, check_needs

__all__ = ["MARKER_DIR", "STAGES", "Plan", "Step", "StepCheck"]

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
    ``needs``: what the step reads from outside the work folder (files, packages, the Hub),
    checked by :meth:`Plan.preflight` before a run starts.
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
    needs: list[Need] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        """Estimated GPU-hours (``gpus x hours``)."""
        return self.gpus * self.hours

    def shell(self) -> str:
        """The command as one shell line."""
        return shlex.join(self.command)


def _digest(path: Path) -> str | None:
    """Content hash of an input file or folder (None: missing)."""
    from hf_mig.data.io import file_fingerprint

    if not path.exists():
        return None
    return file_fingerprint(path, algorithm="xxh3_128")


def _legacy_stamp(path: Path) -> list[int] | None:
    """How markers of older hf-mig versions recorded an input: [size, mtime_ns]."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


#: states of :meth:`Plan.check` after which the step does not run (without ``force``)
FINISHED = ("done", "exists")
#: states of steps that will run
TO_RUN = ("todo", "changed", "partial", "after")


@dataclass(frozen=True)
class StepCheck:
    """What :meth:`Plan.check` found for one step: ``state`` (see the module), ``detail`` (why,
    in words; empty for a plain ``done``/``todo``) and ``foreign`` (outputs present that the
    plan did not make: never replaced)."""

    state: str
    detail: str = ""
    foreign: tuple[str, ...] = ()


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

    def input_digests(
        self, step: Step, memo: dict[str, str | None] | None = None
    ) -> dict[str, str | None]:
        """Content hash of each input (None: missing). ``memo``: hashes already taken in this
        same look at the work folder (by input name), reused and extended."""
        memo = {} if memo is None else memo
        for rel in step.inputs:
            if rel not in memo:
                memo[rel] = _digest(self.path(rel))
        return {rel: memo[rel] for rel in step.inputs}

    def read_marker(self, step: Step) -> dict[str, Any] | None:
        """``step``'s marker, or None when there is none (or it cannot be read).

        A marker of an older hf-mig (no ``complete`` field) was written when the step had
        finished: it counts as complete, owning the outputs it lists, and gets ``legacy: True``
        (its inputs are recorded by size and modification time, see :meth:`check`).
        """
        try:
            record = json.loads(self.marker_path(step).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        if "complete" not in record:
            owned = list(record.get("outputs") or [])
            record = {**record, "complete": True, "owned": owned, "legacy": True}
        return record

    def _write_marker(self, record: dict[str, Any], step: Step) -> None:
        from hf_mig import __version__

        record = {"id": step.id, "command": step.command, **record, "hf_mig": __version__}
        text = json.dumps(record, indent=1) + "\n"
        write_text_atomic(self.marker_path(step), text, overwrite=True)

    def start_marker(self, step: Step) -> None:
        """Record that ``step`` is starting: from now on its outputs are the plan's own."""
        self._write_marker(
            {"complete": False, "outputs": step.outputs, "owned": step.outputs}, step
        )

    def write_marker(
        self, step: Step, seconds: float, inputs: dict[str, str | None] | None = None
    ) -> None:
        """Record that ``step`` finished; ``inputs``: the input hashes taken before it ran
        (default: now)."""
        self._write_marker(
            {
                "complete": True,
                "inputs": self.input_digests(step) if inputs is None else inputs,
                "outputs": step.outputs,
                "owned": step.outputs,
                "seconds": round(seconds, 3),
            },
            step,
        )

    def seconds(self, step: Step) -> float | None:
        """Measured run time of a finished step (from its marker), else None."""
        try:
            return float((self.read_marker(step) or {})["seconds"])
        except (ValueError, KeyError, TypeError):
            return None

    def check(self, step: Step, memo: dict[str, str | None] | None = None) -> StepCheck:
        """The state of ``step`` alone, with the reason (see the module). ``memo``: as for
        :meth:`input_digests`."""
        record = self.read_marker(step)
        owned = set(record.get("owned") or []) if record else set()
        present = {o: self.path(o).exists() or self.path(o).is_symlink() for o in step.outputs}
        missing = [o for o in step.outputs if not present[o]]
        foreign = tuple(o for o in step.outputs if present[o] and o not in owned)
        need: StepCheck | None = None  # why the step must run, if it must
        legacy: StepCheck | None = None  # done, by an old marker
        if record is not None and not record.get("complete"):
            if any(present[o] for o in owned):
                need = StepCheck("partial", "an earlier run stopped before finishing; runs again")
            else:
                need = StepCheck("todo", "an earlier run stopped before writing its outputs")
        elif missing:
            need = StepCheck("todo", "" if record is None else f"missing: {', '.join(missing)}")
        elif record is not None:
            if record.get("command") != step.command:
                need = StepCheck("changed", "the command changed")
            else:
                was = record.get("inputs")
                if record.get("legacy"):
                    now = {rel: _legacy_stamp(self.path(rel)) for rel in step.inputs}
                else:
                    now = self.input_digests(step, memo)
                if was != now:
                    was = was if isinstance(was, dict) else {}
                    diff = [i for i in step.inputs if was.get(i) != now.get(i)]
                    diff += sorted(set(was) - set(now))
                    need = StepCheck("changed", f"input(s) changed: {', '.join(diff)}")
                elif record.get("legacy"):
                    legacy = StepCheck(
                        "done",
                        "marker of an older hf-mig (inputs matched by size and time); the runner "
                        "records their content hashes when it passes",
                    )
        if foreign:
            found = {o: inspect_output(self.path(o)) for o in foreign}
            bad = [f"{o}: {c.text}" for o, c in found.items() if not c.ok]
            if bad:
                return StepCheck(
                    "conflict",
                    f"{'; '.join(bad)}. Not made by this plan, so never replaced: move it away "
                    "(the step then runs) or replace it with a complete output",
                    foreign,
                )
            if need is not None:
                return StepCheck(
                    "conflict",
                    f"{', '.join(foreign)} exist(s) but were not made by this plan, and the step "
                    f"must run ({need.state}: {need.detail or 'outputs missing'}), which would "
                    "replace them: move them away to let it run",
                    foreign,
                )
            checked = "; ".join(f"{o}: {c.text}" for o, c in found.items())
            detail = f"not made by this plan; kept after a check ({checked})"
            return StepCheck("exists", detail, foreign)
        return need or legacy or StepCheck("done")

    def preflight(
        self,
        stages: Sequence[str] | None = None,
        force: bool = False,
        states: Mapping[str, str] | None = None,
    ) -> list[str]:
        """What the steps that would run (those of ``stages``; finished ones only with
        ``force``) need from outside the work folder and is missing: one line each, naming it,
        a step that reads it and the way round (:func:`~hf_mig.reproduce.preflight.check_needs`).
        Empty when everything is there. ``states``: :meth:`status`, when already computed."""
        if force:
            states = {}
        elif states is None:
            states = self.status()
        pairs = [
            (step.id, need)
            for step in self.steps
            if (not stages or step.stage in stages) and states.get(step.id) not in FINISHED
            for need in step.needs
        ]
        return check_needs(pairs)

    def step_state(self, step: Step) -> str:
        """The state of ``step`` alone: :meth:`check`'s ``state``."""
        return self.check(step).state

    def dependencies(self) -> dict[str, list[str]]:
        """For each step id, the ids of the steps that produce its inputs (sorted; a step never
        depends on itself). Producers come earlier in :attr:`steps`."""
        producer = {out: s.id for s in self.steps for out in s.outputs}
        return {
            step.id: sorted({producer[i] for i in step.inputs if i in producer} - {step.id})
            for step in self.steps
        }

    def checks(self) -> dict[str, StepCheck]:
        """:meth:`check` of every step, with state ``after`` for a finished step downstream of
        one that will run."""
        upstreams = self.dependencies()
        found: dict[str, StepCheck] = {}
        memo: dict[str, str | None] = {}
        for step in self.steps:
            check = self.check(step, memo)
            waits = [u for u in upstreams[step.id] if found[u].state in TO_RUN]
            if check.state in FINISHED and waits:
                check = StepCheck("after", f"after {', '.join(waits)}", check.foreign)
            found[step.id] = check
        return found

    def status(self) -> dict[str, str]:
        """State of every step (see :meth:`checks`)."""
        return {step_id: check.state for step_id, check in self.checks().items()}

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
        checks = self.checks()
        states = {step_id: check.state for step_id, check in checks.items()}
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
                {
                    **asdict(s),
                    "gpu_hours": s.gpu_hours,
                    "status": states[s.id],
                    "status_detail": checks[s.id].detail,
                }
                for s in self.steps
            ],
        }

    def render(self, stages: Sequence[str] | None = None) -> str:
        """Human-readable plan: one block per step with GPUs, hours, status and command."""
        checks = self.checks()
        states = {step_id: check.state for step_id, check in checks.items()}
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
            if checks[s.id].detail:
                lines.append(f"      {states[s.id]}: {checks[s.id].detail}")
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
        needs = {n: None for s in self.steps if not stages or s.stage in stages for n in s.needs}
        if needs:
            lines += ["", "Read from outside the work folder (checked before a run starts):"]
            lines += [f"- {n.label()}" for n in needs]
        if self.notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        if self.blockers:
            lines += ["", "Cannot run yet:"] + [f"- {b}" for b in self.blockers]
        return "\n".join(lines) + "\n"
