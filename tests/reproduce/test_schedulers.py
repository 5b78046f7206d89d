"""Scaling a plan out: Slurm export (``--export slurm DIR``) and concurrent steps (``--jobs``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hf_mig.data.errors import OutputExistsError
from hf_mig.reproduce import EXPERIMENTS, SCALES, Plan, PlanOptions, Step, build_plan
from hf_mig.reproduce.slurm import STEP_TAG, export_slurm, time_limit

SUBMIT = re.compile(
    r"^J(\d+)=\$\(sbatch --parsable(?: --dependency=afterok:(\S+))? (\S+\.sbatch) \|"
)


@pytest.fixture
def no_shared(monkeypatch, tmp_path) -> Path:
    """HF_MIG_SHARED pointing at a folder that does not exist (a plain clone)."""
    missing = tmp_path / "no-shared-folder"
    monkeypatch.setenv("HF_MIG_SHARED", str(missing))
    return missing


def _plan_edges(plan: Plan) -> set[tuple[str, str]]:
    return {(u, s) for s, ups in plan.dependencies().items() for u in ups}


def _submitted_edges(folder: Path) -> set[tuple[str, str]]:
    """(producer id, consumer id) from submit.sh, step ids read from the scripts themselves."""
    jobs: dict[str, str] = {}
    edges = set()
    for line in (folder / "submit.sh").read_text().splitlines():
        found = SUBMIT.match(line)
        if not found:
            continue
        number, after, script = found.groups()
        text = (folder / script).read_text()
        step_id = next(ln[len(STEP_TAG) :] for ln in text.splitlines() if ln.startswith(STEP_TAG))
        jobs[number] = step_id
        for ref in (after or "").split(":") if after else []:
            upstream = re.fullmatch(r"\$\{J(\d+)\}", ref)
            assert upstream and upstream.group(1) in jobs, f"{ref} submitted before its job"
            edges.add((jobs[upstream.group(1)], step_id))
    return edges


def _bash_n(path: Path) -> None:
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"{path.name}: {done.stderr}"


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
@pytest.mark.parametrize("scale", sorted(SCALES))
def test_slurm_export_has_the_plans_edges(experiment, scale, no_shared, tmp_path):
    plan = build_plan(experiment, scale, PlanOptions(workdir=tmp_path / "w"))
    written = export_slurm(plan, tmp_path / "slurm")
    assert written[-1].name == "submit.sh" and len(written) == len(plan.steps) + 1
    for path in written:
        _bash_n(path)
    assert _submitted_edges(tmp_path / "slurm") == _plan_edges(plan)
    for step, path in zip(plan.steps, written):
        text = path.read_text()
        assert f"{STEP_TAG}{step.id}\n" in text
        assert text.rstrip("\n").endswith(step.shell())
        assert f"#SBATCH --time={time_limit(step.hours)}\n" in text
        assert ("#SBATCH --gres=gpu:" in text) == (step.gpus > 0)
        if step.gpus:
            assert f"#SBATCH --gres=gpu:{step.gpus}\n" in text
    assert not (tmp_path / "w" / ".reproduce").exists()  # exporting records nothing


def test_time_limit_has_a_margin():
    assert time_limit(0) == "0-00:30:00"
    assert time_limit(2) == "0-03:30:00"
    assert time_limit(20) == "1-06:30:00"
    with pytest.raises(ValueError, match="hours"):
        time_limit(-1)


def test_export_refuses_an_existing_folder_unless_overwrite(no_shared, tmp_path):
    plan = build_plan("table1", "tiny", PlanOptions(workdir=tmp_path / "w"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_slurm(plan, other)
    with pytest.raises(OutputExistsError, match="not an export"):
        export_slurm(plan, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    out = tmp_path / "slurm"
    export_slurm(plan, out, stages=["select"])
    first = sorted(p.name for p in out.iterdir())
    with pytest.raises(OutputExistsError):
        export_slurm(plan, out)
    export_slurm(plan, out, overwrite=True)
    assert len(list(out.iterdir())) == len(plan.steps) + 1 > len(first)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_cli_export(no_shared, tmp_path, run_main):
    out = tmp_path / "slurm"
    argv = ["reproduce", "labels", "--scale", "tiny", "--workdir", tmp_path / "w"]
    code, stdout, _ = run_main([*argv, "--export", "slurm", out])
    assert code == 0 and "submit.sh" in stdout and (out / "submit.sh").is_file()
    code, _, stderr = run_main([*argv, "--export", "slurm", out])
    assert code == 2 and "--overwrite" in stderr
    assert run_main([*argv, "--export", "slurm", out, "--overwrite"])[0] == 0
    assert run_main([*argv, "--export", "pbs", tmp_path / "pbs"])[0] == 2


# ------------------------------------------------------------------ --jobs


def _stamp_step(sid: str, out: str, inputs: list[str], seconds: float = 0.0, **kw) -> Step:
    """A step that records its start and end time (``time.time()``) in ``out`` as JSON, after
    checking that every input exists."""
    code = (
        "import json, sys, time, pathlib\n"
        "t0 = time.time()\n"
        "assert all(pathlib.Path(p).exists() for p in sys.argv[3:]), 'input missing'\n"
        "time.sleep(float(sys.argv[2]))\n"
        "pathlib.Path(sys.argv[1]).write_text(json.dumps({'start': t0, 'end': time.time(),"
        " 'ins': sys.argv[3:]}))\n"
    )
    command = ["python", "-c", code, out, str(seconds), *inputs]
    return Step(sid, "select", sid, command, outputs=[out], inputs=inputs, **kw)
