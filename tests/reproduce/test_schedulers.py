"""Scaling a plan out: Slurm export (``--export slurm DIR``), concurrent steps (``--jobs``) and
steps as Ray tasks (``--executor ray``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ray_local import local_ray

from hf_mig.data.errors import OutputExistsError
from hf_mig.reproduce import (
    EXPERIMENTS,
    SCALES,
    Plan,
    PlanOptions,
    Step,
    build_plan,
    run_plan,
    scheduler,
)
from hf_mig.reproduce.slurm import SKIPPED_TAG, STEP_TAG, export_slurm, time_limit

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


def _sbatch_arguments(line: str) -> list[str]:
    """The arguments sbatch reads from one ``#SBATCH`` line, split as Slurm does: at whitespace
    outside quotes (``"`` or ``'``), a backslash taking the next character as it is, an unquoted
    ``#`` ending the line."""
    args: list[str] = []
    current: list[str] | None = None
    quote = ""
    chars = iter(line)
    for char in chars:
        if char == "\\":
            current = (current or []) + [next(chars, "")]
        elif quote:
            if char == quote:
                quote = ""
            else:
                current = (current or []) + [char]
        elif char in "\"'":
            quote, current = char, current or []
        elif char == "#":
            break
        elif char.isspace():
            if current is not None:
                args.append("".join(current))
            current = None
        else:
            current = (current or []) + [char]
    if current is not None:
        args.append("".join(current))
    return args


def _slurm_file_name(pattern: str, job_id: int) -> str:
    """A Slurm file name pattern with ``%j`` (the job id) and ``%%`` expanded (a pattern with a
    backslash: taken as it is, ``\\\\`` as one backslash)."""
    if "\\" in pattern:
        return re.sub(r"\\(.)", r"\1", pattern)
    return re.sub(r"%(.)", lambda m: {"j": str(job_id), "%": "%"}[m.group(1)], pattern)


def _sbatch_options(script: Path) -> dict[str, str]:
    options = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH"):
            for arg in _sbatch_arguments(line[len("#SBATCH") :]):
                name, _, value = arg.partition("=")
                options[name] = value
    return options


@pytest.mark.parametrize("folder", ['my work#1 "q" 100%', "back\\slash"])
def test_sbatch_output_path_survives_spaces_hashes_quotes_and_percents(folder, tmp_path):
    plan = Plan("t", "tiny", "T", tmp_path / folder / "wd", [_step("a", [], gpus=1, hours=1)])
    script = export_slurm(plan, tmp_path / "slurm")[0]
    options = _sbatch_options(script)
    assert options["--time"] == time_limit(1) and options["--gres"] == "gpu:1"
    log = _slurm_file_name(options["--output"], 1234)
    logs = plan.workdir.resolve() / "logs" / "slurm"
    assert log == str(logs / ("a.log" if "\\" in folder else "a-1234.log"))
    _bash_n(script)


def _two_stages(workdir: Path) -> Plan:
    """a -> b (stage annotate), a -> c, b -> d (stage select), e independent (select)."""
    steps = [_step("a", []), _step("b", ["out/a.txt"]), _step("c", ["out/a.txt"])]
    steps += [_step("d", ["out/b.txt"]), _step("e", [])]
    for step in steps[:2]:
        step.stage = "annotate"
    return Plan("demo", "tiny", "two stages", workdir, steps)


def test_export_leaves_out_finished_steps_and_their_edges(tmp_path):
    plan = _two_stages(tmp_path / "w")
    assert run_plan(plan, stages=["annotate"], echo=lambda _: None).ran == ["a", "b"]
    written = export_slurm(plan, tmp_path / "slurm")
    ids = [next(ln[len(STEP_TAG) :] for ln in p.read_text().splitlines() if ln.startswith(STEP_TAG))
           for p in written[:-1]]  # fmt: skip
    assert ids == ["c", "d", "e"]
    assert _submitted_edges(tmp_path / "slurm") == set()  # their producers have finished
    submit = (tmp_path / "slurm" / "submit.sh").read_text()
    assert [ln[len(SKIPPED_TAG) :] for ln in submit.splitlines() if ln.startswith(SKIPPED_TAG)] == [
        "a", "b"
    ]  # fmt: skip
    for path in written:
        _bash_n(path)
    shown = subprocess.run(  # submit.sh says what it left out (sbatch: a stand-in)
        ["bash", str(tmp_path / "slurm" / "submit.sh")], capture_output=True, text=True,
        env={"PATH": f"{_stand_in(tmp_path, 'sbatch', 'echo 7')}:/usr/bin:/bin"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "skipped as finished: a, b"
    with pytest.raises(ValueError, match="nothing to submit"):
        export_slurm(plan, tmp_path / "none", stages=["annotate"])
    assert not (tmp_path / "none").exists()
    # b's input changed since it ran: b runs again (and d after it), a stays finished
    (tmp_path / "w" / "out" / "a.txt").write_text("changed")
    export_slurm(plan, tmp_path / "slurm", overwrite=True)
    assert _submitted_edges(tmp_path / "slurm") == {("b", "d")}
    assert f"{SKIPPED_TAG}a\n" in (tmp_path / "slurm" / "submit.sh").read_text()


def test_export_overwrites_only_what_the_plan_made(tmp_path):
    outs = {n: f"out/{n}.jsonl" for n in "xy"}
    steps = [
        Step(n, "select", n, ["hf-mig", "select", "in.jsonl", o], [o]) for n, o in outs.items()
    ]
    plan = Plan("demo", "tiny", "overwrite", tmp_path / "w", steps)
    plan.start_marker(steps[0])  # x started in an earlier run and stopped: its outputs are ours
    x, y = export_slurm(plan, tmp_path / "slurm")[:2]
    assert x.read_text().rstrip("\n").endswith(steps[0].shell() + " --overwrite")
    assert y.read_text().rstrip("\n").endswith(steps[1].shell())


def _stand_in(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/bash\n{body}\n")
    (folder / name).chmod(0o755)
    return folder


# ------------------------------------------------------------------ --jobs


STAMP_CODE = """
import json, pathlib, sys, time
start = time.time()
out, stamp, seconds, fail, *inputs = sys.argv[1:]
text = out + "|" + "|".join(pathlib.Path(i).read_text() for i in inputs)
time.sleep(float(seconds))
pathlib.Path(stamp).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(stamp).write_text(json.dumps({"start": start, "end": time.time()}))
if fail == "1":
    sys.exit(3)
pathlib.Path(out).write_text(text)
"""


def _step(sid: str, inputs: list[str], seconds: float = 0.0, fail: bool = False, **kw) -> Step:
    """A step writing ``out/<sid>.txt`` from its inputs' text (deterministic) and its own start
    and end time to ``stamps/<sid>.json`` (not an output); ``fail``: exit 3 instead."""
    out = f"out/{sid}.txt"
    stamp = f"stamps/{sid}.json"
    command = ["python", "-c", STAMP_CODE, out, stamp, str(seconds), "1" if fail else "0"]
    return Step(sid, "select", sid, [*command, *inputs], outputs=[out], inputs=inputs, **kw)


def _diamond(workdir: Path, fail_b: bool = False, **kw) -> Plan:
    """a -> (b, c: sleeping, independent) -> d; e independent of all."""
    steps = [
        _step("a", []),
        _step("b", ["out/a.txt"], 1.0, fail=fail_b, **kw),
        _step("c", ["out/a.txt"], 1.0, **kw),
        _step("d", ["out/b.txt", "out/c.txt"]),
        _step("e", [], 0.2),
    ]
    return Plan("demo", "tiny", "diamond", workdir, steps)


def _stamps(workdir: Path) -> dict[str, dict[str, float]]:
    return {p.stem: json.loads(p.read_text()) for p in (workdir / "stamps").glob("*.json")}


def _outputs(workdir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((workdir / "out").glob("*"))}


@pytest.fixture(scope="module")
def serial_diamond(tmp_path_factory) -> tuple[Path, Any]:
    """The diamond plan run once, one step after another: its work folder and summary."""
    work = tmp_path_factory.mktemp("serial")
    return work, run_plan(_diamond(work), echo=lambda _: None)


def test_jobs_run_independent_steps_at_once_and_dependents_after(serial_diamond, tmp_path):
    lines: list[str] = []
    serial_dir, serial = serial_diamond
    both = run_plan(_diamond(tmp_path / "jobs"), jobs=2, echo=lines.append)
    assert serial.ok and both.ok and sorted(both.ran) == sorted(serial.ran) == list("abcde")
    assert _outputs(tmp_path / "jobs") == _outputs(serial_dir)
    stamps = _stamps(tmp_path / "jobs")
    b, c = stamps["b"], stamps["c"]
    assert max(b["start"], c["start"]) < min(b["end"], c["end"])  # they overlapped
    for producer, consumer in _plan_edges(_diamond(tmp_path / "jobs")):
        assert stamps[producer]["end"] <= stamps[consumer]["start"]
    s = _stamps(serial_dir)
    assert not max(s["b"]["start"], s["c"]["start"]) < min(s["b"]["end"], s["c"]["end"])
    # same markers and logs: a re-run skips everything
    again = run_plan(_diamond(tmp_path / "jobs"), jobs=2, echo=lines.append)
    assert again.skipped == list("abcde") and not again.ran
    assert sorted(p.name for p in (tmp_path / "jobs" / "logs").iterdir()) == [
        f"{x}.log" for x in "abcde"
    ]


def test_jobs_never_more_than_n_at_once(tmp_path):
    steps = [_step(f"s{i}", [], 0.5) for i in range(5)]
    plan = Plan("demo", "tiny", "flat", tmp_path, steps)
    assert run_plan(plan, jobs=2, echo=lambda _: None).ok
    spans = list(_stamps(tmp_path).values())
    for span in spans:
        at_once = [o for o in spans if o["start"] <= span["start"] < o["end"]]
        assert len(at_once) <= 2


def test_gpu_steps_share_the_gpus(tmp_path, monkeypatch):
    """With --gpus 0, GPU steps run one at a time even with free job slots."""
    plan = _diamond(tmp_path, gpus=1)
    assert run_plan(plan, jobs=3, gpus=0, echo=lambda _: None).ok
    b, c = _stamps(tmp_path)["b"], _stamps(tmp_path)["c"]
    assert not max(b["start"], c["start"]) < min(b["end"], c["end"])
    monkeypatch.setattr(scheduler, "visible_gpus", lambda: ["0", "1"])  # a machine with 2 GPUs
    plan = _diamond(tmp_path / "two", gpus=1)
    assert run_plan(plan, jobs=3, gpus=2, echo=lambda _: None).ok
    b, c = _stamps(tmp_path / "two")["b"], _stamps(tmp_path / "two")["c"]
    assert max(b["start"], c["start"]) < min(b["end"], c["end"])


def test_a_failed_step_stops_its_dependents_only(tmp_path):
    lines: list[str] = []
    summary = run_plan(_diamond(tmp_path, fail_b=True), jobs=2, keep_going=True, echo=lines.append)
    assert summary.failed == ["b"] and summary.blocked == ["d"]
    assert sorted(summary.ran) == ["a", "c", "e"]
    assert any("b: FAILED (exit status 3)" in line for line in lines)
    # without keep_going nothing new starts, and the run stops as the serial one does
    stopped = run_plan(_diamond(tmp_path / "stop", fail_b=True), jobs=2, echo=lambda _: None)
    assert "b" in stopped.failed and "d" not in stopped.ran + stopped.blocked
    assert not stopped.ok


def test_jobs_and_gpus_are_checked(tmp_path):
    plan = _diamond(tmp_path)
    with pytest.raises(ValueError, match="jobs"):
        run_plan(plan, jobs=0)
    with pytest.raises(ValueError, match="gpus"):
        run_plan(plan, jobs=2, gpus=-1)


def test_gpu_steps_get_their_own_devices():
    from hf_mig.reproduce.scheduler import _Devices

    devices = _Devices(3, ["4", "5", "6"])
    one, two, big = (
        Step(n, "train", n, ["python"], [], gpus=g) for n, g in [("a", 1), ("b", 2), ("c", 4)]
    )
    taken_one, env_one = devices.take(one)
    assert env_one == {"CUDA_VISIBLE_DEVICES": "4"} and devices.fits(two)
    taken_two, env_two = devices.take(two)
    assert env_two == {"CUDA_VISIBLE_DEVICES": "5,6"} and not devices.fits(one)
    assert not devices.fits(big)
    devices.give(one, taken_one)
    devices.give(two, taken_two)
    assert devices.fits(big)  # more than there are: alone among GPU steps
    assert devices.take(big) == ([0, 1, 2], {})
    assert not devices.fits(one)


class _Stop(Exception):
    """Raised by the stand-in start once the steps a test expects have started."""


class _Running:
    """A stand-in process that runs for 20 looks at it (a second), then exits 0."""

    def __init__(self) -> None:
        self.looks = 0

    def poll(self) -> int | None:
        self.looks += 1
        return 0 if self.looks > 20 else None


def _start_until(count: int, started: list) -> Any:
    """A ``start(launch, env)`` recording what started, stopping the run at the ``count``-th."""

    def start(launch: Step, env: dict[str, str]) -> _Running:
        started.append((launch.id, env))
        if len(started) == count:
            raise _Stop
        return _Running()

    return start


def _concurrently(steps: list[Step], started: list, **kw) -> None:
    plan = Plan("demo", "tiny", "gpus", Path("/nonexistent"), steps)
    scheduler.run_concurrently(plan, steps, prepare=lambda n, s: s, finish=lambda s, c: True,
                               start=_start_until(len(steps), started), **kw)  # fmt: skip


def test_gpu_steps_at_once_each_name_their_own_devices(monkeypatch):
    monkeypatch.setattr(scheduler, "visible_gpus", lambda: ["3", "5"])
    started: list = []
    steps = [Step(f"s{i}", "train", "t", ["python"], [f"o{i}"], gpus=1) for i in range(2)]
    with pytest.raises(_Stop):
        _concurrently(steps, started, jobs=4, gpus=2)
    assert started == [("s0", {"CUDA_VISIBLE_DEVICES": "3"}), ("s1", {"CUDA_VISIBLE_DEVICES": "5"})]


@pytest.mark.parametrize("visible", [["0", "1"], []])
def test_more_gpus_than_visible_are_refused_before_any_step(monkeypatch, visible):
    monkeypatch.setattr(scheduler, "visible_gpus", lambda: visible)
    started: list = []
    steps = [Step(f"s{i}", "train", "t", ["python"], [f"o{i}"], gpus=1) for i in range(4)]
    with pytest.raises(ValueError, match=f"--gpus 4: this process sees {len(visible) or 'none'}"):
        _concurrently(steps, started, jobs=4, gpus=4)
    assert not started


def test_a_step_needing_more_gpus_than_shared_is_refused_before_any_step(monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler, "visible_gpus", lambda: ["0", "1"])
    started: list = []
    steps = [Step("small", "train", "t", ["python"], ["o1"], gpus=1)]
    steps.append(Step("big", "train", "t", ["python"], ["o2"], gpus=4))
    with pytest.raises(ValueError, match="step big needs 4 GPUs, but the steps share 2"):
        _concurrently(steps, started, jobs=2)
    assert not started
    plan = _diamond(tmp_path, gpus=3)  # through run_plan: nothing is written but the log folder
    with pytest.raises(ValueError, match="step b needs 3 GPUs"):
        run_plan(plan, jobs=2, echo=lambda _: None)
    assert not (tmp_path / ".reproduce").exists()


def test_cli_checks_jobs(no_shared, tmp_path, run_main):
    argv = ["reproduce", "labels", "--scale", "tiny", "--workdir", tmp_path / "w"]
    code, _, stderr = run_main([*argv, "--jobs", "0"])
    assert code == 2 and "--jobs" in stderr


# ------------------------------------------------------------------ --executor ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray for this module (:func:`ray_local.local_ray`)."""
    ray = pytest.importorskip("ray")
    with local_ray():
        yield ray


def test_ray_runs_the_plan_as_the_serial_run_does(ray_cluster, serial_diamond, tmp_path):
    serial_dir, serial = serial_diamond
    lines: list[str] = []
    on_ray = run_plan(_diamond(tmp_path / "ray"), executor="ray", jobs=None, echo=lines.append)
    assert serial.ok and on_ray.ok, "\n".join(lines)
    assert sorted(on_ray.ran) == sorted(serial.ran) == list("abcde")
    assert _outputs(tmp_path / "ray") == _outputs(serial_dir)
    stamps = _stamps(tmp_path / "ray")
    for producer, consumer in _plan_edges(_diamond(tmp_path / "ray")):
        assert stamps[producer]["end"] <= stamps[consumer]["start"]
    b, c = stamps["b"], stamps["c"]
    assert max(b["start"], c["start"]) < min(b["end"], c["end"])  # two CPUs: they overlapped
    log = (tmp_path / "ray" / "logs" / "d.log").read_text()
    assert log.startswith("$ python -c ")
    # same markers: a re-run (local or on Ray) skips everything
    again = run_plan(_diamond(tmp_path / "ray"), executor="ray", echo=lambda _: None)
    assert again.skipped == list("abcde") and not again.ran
    assert run_plan(_diamond(tmp_path / "ray"), echo=lambda _: None).skipped == list("abcde")


def test_ray_keep_going_as_the_local_scheduler(ray_cluster, tmp_path):
    lines: list[str] = []
    plan = _diamond(tmp_path, fail_b=True)
    summary = run_plan(plan, executor="ray", keep_going=True, echo=lines.append)
    assert summary.failed == ["b"] and summary.blocked == ["d"]
    assert sorted(summary.ran) == ["a", "c", "e"]
    assert any("b: FAILED (exit status 3)" in line for line in lines)
    stop = _diamond(tmp_path / "stop", fail_b=True)
    stopped = run_plan(stop, executor="ray", echo=lambda _: None)
    assert "b" in stopped.failed and "d" not in stopped.ran + stopped.blocked
    assert not stopped.ok


def test_executor_is_checked_and_ray_is_optional(tmp_path, monkeypatch, no_shared, run_main):
    with pytest.raises(ValueError, match="executor"):
        run_plan(_diamond(tmp_path), executor="dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as when Ray is not installed
    with pytest.raises(ImportError, match=r'pip install "hf-mig\[ray\]"'):
        run_plan(_diamond(tmp_path), executor="ray", echo=lambda _: None)
    argv = ["reproduce", "labels", "--scale", "tiny", "--workdir", tmp_path / "w"]
    code, _, stderr = run_main([*argv, "--executor", "ray", "--stage", "vocab"])
    assert code == 2 and 'pip install "hf-mig[ray]"' in stderr
    assert not (tmp_path / "w" / ".reproduce").exists()


KILL_PARENT = """
import os, pathlib, signal, sys
with open(sys.argv[1], "a") as fh:
    fh.write("started\\n")
os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker running this step dies
"""


def test_ray_never_starts_a_second_copy_of_a_step_whose_worker_died(ray_cluster, tmp_path):
    starts = tmp_path / "starts.txt"
    step = Step("k", "train", "k", ["python", "-c", KILL_PARENT, str(starts)], ["out/k.txt"])
    lines: list[str] = []
    summary = run_plan(Plan("demo", "tiny", "k", tmp_path / "w", [step]), executor="ray",
                       echo=lines.append)  # fmt: skip
    assert summary.failed == ["k"], "\n".join(lines)
    assert starts.read_text() == "started\n"  # one copy only, though its worker died
    assert "the Ray task failed" in (tmp_path / "w" / "logs" / "k.log").read_text()


def test_cli_export_names_the_finished_steps_it_leaves_out(no_shared, tmp_path, run_main):
    from hf_mig.reproduce import PlanOptions, build_plan

    argv = ["reproduce", "labels", "--scale", "tiny", "--workdir", tmp_path / "w"]
    plan = build_plan("labels", "tiny", PlanOptions(workdir=tmp_path / "w"))
    first = plan.steps[0]
    for output in first.outputs:  # the first step's outputs are there: it has finished
        plan.path(output).parent.mkdir(parents=True, exist_ok=True)
        plan.path(output).write_text('{"instruction": "made earlier", "labels": ["a"]}\n')
    assert plan.checks()[first.id].state == "exists"
    code, stdout, stderr = run_main([*argv, "--export", "slurm", tmp_path / "slurm"])
    assert code == 0, stderr
    assert f"finished, no job: {first.id}\n" in stdout


def test_a_finished_step_needing_more_gpus_than_shared_does_not_stop_the_run(monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler, "visible_gpus", lambda: ["0"])  # a machine with 1 GPU
    (tmp_path / "model.txt").write_text("trained elsewhere\n")
    write = "import sys; open(sys.argv[2], 'w').write(open(sys.argv[1]).read())"
    steps = [
        Step("train/big", "train", "train", [sys.executable, "-c", write, "x", "model.txt"],
             ["model.txt"], gpus=8),
        Step("eval/small", "eval", "eval", [sys.executable, "-c", write, "model.txt", "eval.txt"],
             ["eval.txt"], inputs=["model.txt"], gpus=1),
    ]  # fmt: skip
    plan = Plan("demo", "tiny", "gpus", tmp_path, steps)
    assert plan.status() == {"train/big": "exists", "eval/small": "todo"}
    summary = run_plan(plan, jobs=2, preflight=False, echo=lambda _: None)
    assert summary.ran == ["eval/small"]
    assert (tmp_path / "eval.txt").read_text() == "trained elsewhere\n"
    with pytest.raises(ValueError, match="step train/big needs 8 GPUs"):  # forced, it would run
        run_plan(plan, jobs=2, preflight=False, force=True, echo=lambda _: None)


class _FakeRay:
    """What RayExecutor reads of Ray: its nodes' GPUs and task submission (never run here)."""

    def __init__(self, node_gpus: list[int]) -> None:
        self._nodes = [{"Alive": True, "Resources": {"GPU": g}} for g in node_gpus]

    def nodes(self) -> list[dict]:
        return self._nodes

    def cluster_resources(self) -> dict:
        return {"GPU": sum(n["Resources"]["GPU"] for n in self._nodes)}

    def remote(self, **options):
        return lambda fn: fn


@pytest.mark.parametrize("node_gpus", [[4, 4], []])
def test_ray_refuses_a_step_larger_than_any_node(node_gpus, tmp_path):
    from hf_mig.reproduce.ray_executor import RayExecutor

    executor = RayExecutor(_FakeRay(node_gpus), tmp_path, begin=lambda launch: None)
    devices = executor.devices(None)
    small = Step("eval", "eval", "t", ["python"], ["o1"], gpus=max(node_gpus, default=0))
    big = Step("train", "train", "t", ["python"], ["o2"], gpus=8)
    devices.check([small])  # fits one node
    largest = max(node_gpus, default=0)
    message = rf"step train needs 8 GPUs, but the largest node of the Ray cluster has {largest}"
    with pytest.raises(ValueError, match=message):
        devices.check([small, big])
