"""A plan as Slurm batch jobs: one ``sbatch`` script per step and a ``submit.sh`` that submits
them in order, each job waiting (``--dependency=afterok``) for the jobs of the steps that produce
its inputs (:meth:`Plan.dependencies`).

Each script asks for the step's GPUs (``--gres=gpu:N``; none for a CPU step), a time limit of
the step's estimated hours with a margin (:func:`time_limit`), writes its log to
``<workdir>/logs/slurm/``, changes to the work folder and runs the step's command. The jobs run
the commands themselves, not :func:`~hf_mig.reproduce.runner.run_plan`: they write no step
markers, so a later ``hf-mig reproduce`` run sees their outputs as made elsewhere (``exists``,
kept after a check). The folder is written whole (a temporary sibling renamed into place).

Only the steps a run would not skip are exported: a step :meth:`Plan.checks` finds finished
(``done``/``exists``) gets no job, ``submit.sh`` names it as skipped, and the jobs that read its
outputs do not wait for it. A step the plan ran before (its marker is there) gets ``--overwrite``
where its command takes it, and an interrupted training step with checkpoints continues from
them, as with :func:`~hf_mig.reproduce.runner.run_plan`.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from hf_mig.data.atomic import rename_or_keep, replace_folder, temporary_folder
from hf_mig.data.errors import OutputExistsError
from hf_mig.reproduce.plan import FINISHED, Plan, Step
from hf_mig.reproduce.runner import _checkpoints, takes_overwrite

__all__ = ["export_slurm", "job_command", "sbatch_quote", "slurm_script", "time_limit"]

#: the first line of every file :func:`export_slurm` writes (an export folder holds only those)
HEADER = "#!/bin/bash"
#: how a script names its step (read back by tools and tests)
STEP_TAG = "# hf-mig step: "
#: how ``submit.sh`` names a step it has no job for, because it had finished
SKIPPED_TAG = "# finished, no job: "


def time_limit(hours: float, *, factor: float = 1.5, extra_minutes: int = 30) -> str:
    """Slurm ``--time`` for a step estimated at ``hours``: ``hours x factor`` plus
    ``extra_minutes``, rounded up to whole minutes, as ``D-HH:MM:SS``."""
    if hours < 0 or math.isnan(hours):
        raise ValueError(f"hours must be >= 0, got {hours!r}")
    minutes = math.ceil(hours * 60 * factor) + extra_minutes
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _safe(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``._-`` as ``__``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", text)


def _file_name(index: int, step: Step) -> str:
    return f"{index:03d}-{_safe(step.id)}.sbatch"


def sbatch_quote(value: str) -> str:
    """``value`` as one argument of an ``#SBATCH`` line: in double quotes, with ``"`` and ``\\``
    escaped by a backslash (sbatch splits those lines at whitespace outside quotes and ends them
    at an unquoted ``#``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log_pattern(log_dir: Path, name: str) -> str:
    """Slurm ``--output`` pattern of the log of job ``name`` in ``log_dir``: ``%`` in the
    folder doubled (a literal ``%`` in a Slurm file name pattern), ``-%j`` (the job id) before
    ``.log``. Slurm expands nothing in a pattern holding a backslash, and reads ``\\\\`` there as
    one backslash: such a folder gets its backslashes doubled and the name ``NAME.log``."""
    if "\\" in str(log_dir):
        return str(log_dir / f"{name}.log").replace("\\", "\\\\")
    return str(log_dir).replace("%", "%%") + f"/{name}-%j.log"


def slurm_script(
    plan: Plan, step: Step, log_dir: Path, command: Sequence[str] | None = None
) -> str:
    """The ``sbatch`` script of one step (``log_dir``: where Slurm writes its output;
    ``command``: what the job runs, default the step's command)."""
    workdir = plan.workdir.resolve()
    lines = [
        HEADER,
        f"#SBATCH --job-name={_safe(f'hf-mig-{plan.experiment}-{step.id}')}",
        f"#SBATCH --time={time_limit(step.hours)}",
        f"#SBATCH --output={sbatch_quote(log_pattern(log_dir, _safe(step.id)))}",
    ]
    if step.gpus > 0:
        lines.append(f"#SBATCH --gres=gpu:{step.gpus}")
    lines += [
        f"{STEP_TAG}{step.id}",
        f"# {step.title}",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        *(f"mkdir -p {shlex.quote(str(plan.path(o).parent))}" for o in _parents(step)),
        shlex.join(step.command if command is None else command),
    ]
    return "\n".join(lines) + "\n"


def _parents(step: Step) -> list[str]:
    """One output per distinct parent folder (created before the command runs)."""
    seen: dict[str, str] = {}
    for out in step.outputs:
        seen.setdefault(str(Path(out).parent), out)
    return [o for parent, o in seen.items() if parent != "."]


def submit_script(
    plan: Plan,
    names: dict[str, str],
    steps: Sequence[Step],
    log_dir: Path,
    finished: Sequence[str] = (),
) -> str:
    """``submit.sh``: create ``log_dir``, say which steps were left out as ``finished``, then
    ``sbatch`` each script in plan order, with ``afterok`` edges to the jobs of its producers
    among ``steps``; ``names``: step id -> script file name."""
    deps = plan.dependencies()
    index = {step.id: n for n, step in enumerate(steps)}
    lines = [
        HEADER,
        f"# {plan.title}: experiment {plan.experiment}, scale {plan.scale}",
        "# Submits every step as a Slurm job; a job starts once the jobs it depends on succeeded.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f"mkdir -p {shlex.quote(str(log_dir))}",
    ]
    if finished:
        lines.append(f"# {len(finished)} finished step(s) have no job (their outputs are there):")
        lines += [f"{SKIPPED_TAG}{step_id}" for step_id in finished]
        said = "skipped as finished: " + ", ".join(finished)
        lines.append(f"echo {shlex.quote(said)}")
    for step in steps:
        n = index[step.id]
        after = [f"${{J{index[u]}}}" for u in deps[step.id] if u in index]
        flag = f" --dependency=afterok:{':'.join(after)}" if after else ""
        lines.append(f"{STEP_TAG}{step.id}")
        lines.append(f"J{n}=$(sbatch --parsable{flag} {names[step.id]} | cut -d';' -f1)")
        lines.append(f'echo "{step.id}: job $J{n}"')
    return "\n".join(lines) + "\n"


def job_command(plan: Plan, step: Step, state: str) -> list[str]:
    """What the job of ``step`` (in ``state``, from :meth:`Plan.checks`) runs: its command, with
    ``--overwrite`` when the plan ran it before and the command takes it, and
    ``--resume_from_checkpoint true`` for an interrupted training step with checkpoints (as
    :func:`~hf_mig.reproduce.runner.run_plan` runs it)."""
    command = list(step.command)
    if plan.read_marker(step) is not None and takes_overwrite(command):
        command.append("--overwrite")
    if state in ("partial", "todo") and _checkpoints(plan, step):
        command += ["--resume_from_checkpoint", "true"]
    return command


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds only files this module writes."""
    files = list(folder.iterdir())
    return any(f.name == "submit.sh" for f in files) and all(
        f.is_file() and (f.name == "submit.sh" or f.suffix == ".sbatch") for f in files
    )


def export_slurm(
    plan: Plan, folder: str | Path, *, stages: Sequence[str] | None = None, overwrite: bool = False
) -> list[Path]:
    """Write ``plan``'s steps still to run (those of ``stages`` when given) as Slurm jobs into
    ``folder``; return the scripts written, ``submit.sh`` last.

    A step :meth:`Plan.checks` finds finished (``done``/``exists``) gets no job; ``submit.sh``
    lists it (:data:`SKIPPED_TAG`) and says so when run. ``ValueError`` when no step is left.
    An existing ``folder`` is refused (:class:`OutputExistsError`) unless ``overwrite``, and
    even then only when it holds nothing but an earlier export.
    """
    final = Path(folder).expanduser()
    if final.exists() or final.is_symlink():
        if not overwrite or not final.is_dir() or not _is_export(final):
            why = "pass --overwrite to replace it" if not overwrite else "it is not an export"
            raise OutputExistsError(
                f"{final}: the export folder exists; {why} (only a folder holding nothing but "
                "submit.sh and *.sbatch files is ever replaced), or choose a new path"
            )
    chosen = [s for s in plan.steps if not stages or s.stage in stages]
    if not chosen:
        raise ValueError(f"no step of the plan is in stages {list(stages or [])}")
    states = {step_id: check.state for step_id, check in plan.checks().items()}
    finished = [s.id for s in chosen if states[s.id] in FINISHED]
    steps = [s for s in chosen if states[s.id] not in FINISHED]
    if not steps:
        raise ValueError(
            f"every step to export has finished ({', '.join(finished)}): there is nothing to "
            "submit; `hf-mig reproduce --dry-run` shows their state"
        )
    log_dir = plan.workdir.resolve() / "logs" / "slurm"
    names = {step.id: _file_name(n, step) for n, step in enumerate(steps)}
    with temporary_folder(final) as tmp:
        for step in steps:
            command = job_command(plan, step, states[step.id])
            text = slurm_script(plan, step, log_dir, command)
            (tmp / names[step.id]).write_text(text, encoding="utf-8")
        submit = tmp / "submit.sh"
        submit.write_text(submit_script(plan, names, steps, log_dir, finished), encoding="utf-8")
        submit.chmod(0o755)
        if final.is_dir():
            replace_folder(tmp, final)
        else:
            rename_or_keep(tmp, final, lambda _: False)
    return [final / names[s.id] for s in steps] + [final / "submit.sh"]
