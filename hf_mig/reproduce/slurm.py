"""A plan as Slurm batch jobs: one ``sbatch`` script per step and a ``submit.sh`` that submits
them in order, each job waiting (``--dependency=afterok``) for the jobs of the steps that produce
its inputs (:meth:`Plan.dependencies`).

Each script asks for the step's GPUs (``--gres=gpu:N``; none for a CPU step), a time limit of
the step's estimated hours with a margin (:func:`time_limit`), writes its log to
``<workdir>/logs/slurm/``, changes to the work folder and runs the step's command. The jobs run
the commands themselves, not :func:`~hf_mig.reproduce.runner.run_plan`: they write no step
markers, so a later ``hf-mig reproduce`` run sees their outputs as made elsewhere (``exists``,
kept after a check). The folder is written whole (a temporary sibling renamed into place).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from hf_mig.data.atomic import rename_or_keep, replace_folder, temporary_folder
from hf_mig.data.errors import OutputExistsError
from hf_mig.reproduce.plan import Plan, Step

__all__ = ["export_slurm", "slurm_script", "time_limit"]

#: the first line of every file :func:`export_slurm` writes (an export folder holds only those)
HEADER = "#!/bin/bash"
#: how a script names its step (read back by tools and tests)
STEP_TAG = "# hf-mig step: "


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


def slurm_script(plan: Plan, step: Step, log_dir: Path) -> str:
    """The ``sbatch`` script of one step (``log_dir``: where Slurm writes its output)."""
    workdir = plan.workdir.resolve()
    lines = [
        HEADER,
        f"#SBATCH --job-name={_safe(f'hf-mig-{plan.experiment}-{step.id}')}",
        f"#SBATCH --time={time_limit(step.hours)}",
        f"#SBATCH --output={log_dir / (_safe(step.id) + '-%j.log')}",
    ]
    if step.gpus > 0:
        lines.append(f"#SBATCH --gres=gpu:{step.gpus}")
    lines += [
        f"{STEP_TAG}{step.id}",
        f"# {step.title}",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        *(f"mkdir -p {shlex.quote(str(plan.path(o).parent))}" for o in _parents(step)),
        step.shell(),
    ]
    return "\n".join(lines) + "\n"


def _parents(step: Step) -> list[str]:
    """One output per distinct parent folder (created before the command runs)."""
    seen: dict[str, str] = {}
    for out in step.outputs:
        seen.setdefault(str(Path(out).parent), out)
    return [o for parent, o in seen.items() if parent != "."]


def submit_script(plan: Plan, names: dict[str, str], steps: Sequence[Step], log_dir: Path) -> str:
    """``submit.sh``: create ``log_dir``, then ``sbatch`` each script in plan order, with
    ``afterok`` edges to the jobs of its producers among ``steps``; ``names``: step id ->
    script file name."""
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
    for step in steps:
        n = index[step.id]
        after = [f"${{J{index[u]}}}" for u in deps[step.id] if u in index]
        flag = f" --dependency=afterok:{':'.join(after)}" if after else ""
        lines.append(f"{STEP_TAG}{step.id}")
        lines.append(f"J{n}=$(sbatch --parsable{flag} {names[step.id]} | cut -d';' -f1)")
        lines.append(f'echo "{step.id}: job $J{n}"')
    return "\n".join(lines) + "\n"


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds only files this module writes."""
    files = list(folder.iterdir())
    return any(f.name == "submit.sh" for f in files) and all(
        f.is_file() and (f.name == "submit.sh" or f.suffix == ".sbatch") for f in files
    )


def export_slurm(
    plan: Plan, folder: str | Path, *, stages: Sequence[str] | None = None, overwrite: bool = False
) -> list[Path]:
    """Write ``plan``'s steps (those of ``stages`` when given) as Slurm jobs into ``folder``;
    return the scripts written, ``submit.sh`` last.

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
    steps = [s for s in plan.steps if not stages or s.stage in stages]
    if not steps:
        raise ValueError(f"no step of the plan is in stages {list(stages or [])}")
    log_dir = plan.workdir.resolve() / "logs" / "slurm"
    names = {step.id: _file_name(n, step) for n, step in enumerate(steps)}
    with temporary_folder(final) as tmp:
        for step in steps:
            (tmp / names[step.id]).write_text(slurm_script(plan, step, log_dir), encoding="utf-8")
        submit = tmp / "submit.sh"
        submit.write_text(submit_script(plan, names, steps, log_dir), encoding="utf-8")
        submit.chmod(0o755)
        if final.is_dir():
            replace_folder(tmp, final)
        else:
            rename_or_keep(tmp, final, lambda _: False)
    return [final / names[s.id] for s in steps] + [final / "submit.sh"]
