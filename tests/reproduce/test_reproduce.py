"""``hf-mig reproduce``: plans of every experiment, the step runner, and the tiny chain end to end.

The tiny chain runs for real (tagging with MiniLM, DEITA / IFD scoring, label graph, selection,
training and evaluation with the offline tiny Llama, AlpacaEval judged by SmolLM2, IFEval scored
offline, the comparison table and the report) on the bundled self-instruct pool.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hf_mig import LabelGraph, MIGSelector, RandomSelector, load_pool
from hf_mig.eval.compare import load_paper_rows, paper_table_names
from hf_mig.reproduce import EXPERIMENTS, SCALES, STAGES, PlanOptions, Step, build_plan, run_plan
from hf_mig.reproduce.costs import train_hours
from hf_mig.reproduce.paper import METHOD_TITLES, RELEASED, model_by_slug
from hf_mig.reproduce.plan import Plan


def _plan(experiment: str, scale: str = "paper", tmp: Path | None = None, **kw) -> Plan:
    return build_plan(experiment, scale, PlanOptions(workdir=tmp or Path("/tmp/unused"), **kw))


def _by_stage(plan: Plan, stage: str) -> list[Step]:
    return [s for s in plan.steps if s.stage == stage]


def _assert_inputs_come_first(plan: Plan) -> None:
    produced: set[str] = set()
    all_outputs = {o for s in plan.steps for o in s.outputs}
    for step in plan.steps:
        for i in step.inputs:
            if i in all_outputs:
                assert i in produced, f"{step.id} reads {i} before the step that writes it"
        produced.update(step.outputs)


# ------------------------------------------------------------------ plans at the paper scale


def test_table1_plan_has_every_method_stage_and_estimate():
    plan = _plan("table1", base="llama-3.1-8b")
    assert [s.stage for s in plan.steps] == sorted((s.stage for s in plan.steps), key=STAGES.index)
    _assert_inputs_come_first(plan)
    trains = _by_stage(plan, "train")
    assert len(trains) == 9  # 8 methods + the full pool
    assert {s.id.rsplit("/", 1)[1] for s in trains} == {
        *(f"{m}-50k" for m in ("random", "ifd", "instag", "deita", "car", "qdit", "zip", "mig")),
        "full",
    }
    assert len(_by_stage(plan, "select")) == 8
    assert len(_by_stage(plan, "annotate")) == 3
    assert len(_by_stage(plan, "eval")) == 9 * 4
    llama = model_by_slug("llama-3.1-8b")
    for step in trains:
        assert step.command[:2] == ["accelerate", "launch"]
        recipe = Path(step.command[step.command.index("--config") + 1])
        assert recipe.is_file(), recipe
        rows = 939_000 if step.id.endswith("/full") else 50_000
        assert step.gpus == 8
        assert step.hours == pytest.approx(train_hours(llama.params, rows, 1000, 8))
        data = step.command[step.command.index("--data.dataset") + 1]
        assert data in step.inputs
        assert step.command[step.command.index("--data.shape") + 1] == "messages"
    mig = next(s for s in _by_stage(plan, "select") if s.id.endswith("mig-50k"))
    graph = next(s for s in _by_stage(plan, "graph"))
    assert graph.outputs[0] in mig.inputs
    assert "--threshold" in graph.command and "0.9" in graph.command
    assert "intfloat/e5-mistral-7b-instruct" in graph.command
    compare = next(s for s in plan.steps if s.stage == "compare")
    assert set(compare.inputs) == {o for s in _by_stage(plan, "eval") for o in s.outputs}
    assert compare.command[compare.command.index("--paper-table") + 1] == "table1/llama-3.1-8b"
    renames = compare.command[compare.command.index("--rename") + 1 :]
    assert "llama-3.1-8b/tulu3/mig-50k=MIG" in renames and len(renames) == 9
    assert compare.outputs == ["tables/table1-llama-3.1-8b.md", "tables/table1-llama-3.1-8b.csv"]
    assert plan.report == "reports/table1-llama-3.1-8b"
    assert next(s for s in plan.steps if s.stage == "report").outputs == [
        "reports/table1-llama-3.1-8b/report.html"
    ]
    totals = plan.totals()
    assert totals["gpu_hours"] == pytest.approx(sum(s.gpus * s.hours for s in plan.steps))
    text = plan.render()
    assert "GPU-hours" in text and "accelerate launch" in text


def test_other_bases_share_the_selections():
    plan = _plan("table1", base="all")
    assert len(_by_stage(plan, "train")) == 27
    assert len(_by_stage(plan, "select")) == 8  # a selection does not depend on the base
    titles = {s.title for s in _by_stage(plan, "train")}
    assert "train qwen2.5-7b on MIG [qwen2.5-7b]" in titles
    _assert_inputs_come_first(plan)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_experiment_plans(experiment, scale, tmp_path):
    plan = _plan(experiment, scale, tmp_path)
    _assert_inputs_come_first(plan)
    assert _by_stage(plan, "train") and _by_stage(plan, "compare") and _by_stage(plan, "report")
    assert plan.paper_table in paper_table_names()
    assert json.loads(json.dumps(plan.to_dict()))["experiment"] == experiment
    for step in _by_stage(plan, "report"):
        args = step.command
        for i, arg in enumerate(args[:-1]):
            if arg == "--selection":  # NAME=FILE: the name holds no '=' and FILE is an input
                name, path = args[i + 1].split("=", 1)
                assert path in step.inputs, (name, path)
    if scale == "tiny":
        assert all(s.gpus == 0 for s in plan.steps)
        assert not plan.blockers


def test_experiments_share_steps_in_one_workdir(tmp_path):
    table1 = {s.id: s.command for s in _plan("table1", "paper", tmp_path).steps}
    threshold = {s.id: s.command for s in _plan("threshold", "paper", tmp_path).steps}
    shared = set(table1) & set(threshold)
    assert "train/llama-3.1-8b/tulu3/mig-50k" in shared  # the T = 0.9 row is table1's MIG run
    assert "eval/llama-3.1-8b/tulu3/mig-50k/wildbench" in shared
    assert all(table1[i] == threshold[i] for i in shared)  # same commands: finished = reused


def test_ablation_variants_reach_the_commands():
    sc = SCALES["paper"]
    graphs = _by_stage(_plan("threshold"), "graph")
    assert sorted(float(s.command[s.command.index("--threshold") + 1]) for s in graphs) == sorted(
        sc.thresholds
    )
    selects = _by_stage(_plan("prop-weight"), "select")
    weights = sorted(float(s.command[s.command.index("--prop-weight") + 1]) for s in selects)
    assert weights == sorted(sc.prop_weights)
    vocabs = _by_stage(_plan("labels"), "vocab")
    for step in vocabs:  # the selector and graph read the plain list written by --labels-out
        assert step.command[step.command.index("--labels-out") + 1] == step.outputs[0]
    assert sorted(int(s.command[s.command.index("--top-k") + 1]) for s in vocabs) == sorted(
        n for n in sc.label_counts if n is not None
    )
    sizes = {
        (s.command[s.command.index("--method") + 1], int(s.command[s.command.index("--num") + 1]))
        for s in _by_stage(_plan("scaling"), "select")
    }
    assert sizes == {(m, k) for k in sc.sizes for m in ("mig", "random")}


def test_pool_without_public_source_blocks_running_not_planning(tmp_path):
    plan = _plan("pools", "paper", tmp_path)
    assert any("--pool deita=PATH" in b for b in plan.blockers)
    given = tmp_path / "deita.jsonl"
    given.write_text("")
    plan = _plan("pools", "paper", tmp_path, pools={"deita": str(given)})
    assert not plan.blockers
    assert not any(s.id.startswith("annotate/deita") for s in plan.steps)
    select = next(s for s in plan.steps if s.id == "select/deita/mig-6k")
    assert str(given) in select.command and "6000" in select.command
    train = next(s for s in plan.steps if s.id == "train/llama-3.1-8b/deita/mig-6k")
    assert "--data.shape" not in train.command  # a pool we did not annotate: detected


def test_released_subsets_replace_selection():
    plan = _plan("table1", released=True, methods=["mig", "random"])
    trains = _by_stage(plan, "train")
    data = {s.command[s.command.index("--data.dataset") + 1] for s in trains}
    assert data == {RELEASED[("tulu3", "mig")], RELEASED[("tulu3", "random")]}
    assert not _by_stage(plan, "select") and not _by_stage(plan, "annotate")


def test_bad_requests_name_what_is_known():
    with pytest.raises(ValueError, match="known: table1"):
        _plan("table9")
    with pytest.raises(ValueError, match="unknown base model 'gpt-2'.*llama-3.1-8b"):
        _plan("table1", base="gpt-2")
    with pytest.raises(ValueError, match=r"--methods \['dieta'\].*'deita'"):
        _plan("table1", methods=["dieta"])
    with pytest.raises(ValueError, match="--base all applies to table1"):
        _plan("scaling", base="all")


def test_published_numbers_ship_as_data():
    rows = {r["model"]: r for r in load_paper_rows("table1/llama-3.1-8b")}
    assert rows["MIG (paper)"]["AE"] == 14.66 and rows["MIG (paper)"]["Avg"] == 55.32
    assert rows["ZIP (paper)"]["Avg"] == 47.44
    assert {m.removesuffix(" (paper)") for m in rows} == set(METHOD_TITLES.values())
    for exp in EXPERIMENTS.values():
        assert exp.paper_table.format(base="llama-3.1-8b") in paper_table_names()
    assert load_paper_rows("threshold") == []  # not recorded: empty, never invented


def test_cli_dry_run_and_help(tmp_path, run_main):
    code, out, err = run_main(["reproduce", "table1", "--dry-run", "--format", "json",
                               "--workdir", tmp_path])  # fmt: skip
    assert code == 0, err
    plan = json.loads(out)
    assert plan["totals"]["gpu_hours"] > 100
    assert {s["status"] for s in plan["steps"]} == {"todo"}
    code, helptext, _ = run_main(["reproduce", "--help"])
    assert code == 0
    for word in ("--dry-run", "--scale", "tiny", "prop-weight", "scaling", "resum"):
        assert word in helptext
    code, _, err = run_main(["reproduce", "table1", "--workdir", "/nonexistent/x"])
    assert code == 2 and "--judge-base-url" in err


# ------------------------------------------------------------------ the runner


def _write(path: str, text: str) -> list[str]:
    code = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "p.parent.mkdir(parents=True, exist_ok=True); p.write_text(sys.argv[2])"
    )
    return ["python", "-c", code, path, text]


def _copy(src: str, dst: str) -> list[str]:
    code = (
        "import pathlib, sys; "
        "pathlib.Path(sys.argv[2]).write_text(pathlib.Path(sys.argv[1]).read_text() + '!')"
    )
    return ["python", "-c", code, src, dst]


def _toy_plan(tmp_path: Path, fail: bool = False) -> Plan:
    second = (
        ["python", "-c", "import sys; print('boom'); sys.exit(3)"]
        if fail
        else _copy("a.txt", "b.txt")
    )
    steps = [
        Step("make/a", "annotate", "write a", _write("a.txt", "A"), ["a.txt"]),
        Step("make/b", "select", "copy a to b", second, ["b.txt"], ["a.txt"]),
        Step("make/c", "train", "copy b to c", _copy("b.txt", "c.txt"), ["c.txt"], ["b.txt"]),
        Step("make/d", "eval", "independent", _write("d.txt", "D"), ["d.txt"]),
    ]
    return Plan("toy", "tiny", "toy", tmp_path, steps)


def test_runner_skips_finished_steps_and_reruns_changed_ones(tmp_path):
    plan = _toy_plan(tmp_path)
    lines: list[str] = []
    first = run_plan(plan, echo=lines.append)
    assert first.ran == ["make/a", "make/b", "make/c", "make/d"] and first.ok
    assert (tmp_path / "c.txt").read_text() == "A!!"
    assert set(plan.status().values()) == {"done"}
    again = run_plan(plan, echo=lines.append)
    assert again.ran == [] and len(again.skipped) == 4
    # an input changed upstream: b is 'changed', c waits for it ('after'), then both re-run
    (tmp_path / "a.txt").write_text("Z")
    assert plan.status() == {"make/a": "done", "make/b": "changed",
                             "make/c": "after", "make/d": "done"}  # fmt: skip
    third = run_plan(plan, echo=lines.append)
    assert third.ran == ["make/b", "make/c"]
    assert (tmp_path / "c.txt").read_text() == "Z!!"
    # outputs made elsewhere (no marker) are kept after a check, and said so
    (tmp_path / ".reproduce" / "make__d.json").unlink()
    check = plan.check(plan.steps[3])
    assert check.state == "exists" and "d.txt: 1 bytes" in check.detail
    assert run_plan(plan, echo=lines.append).ran == []
    # --force runs everything again, except over an output the plan did not make
    (tmp_path / "d.txt").write_text("mine")
    forced = run_plan(plan, force=True, keep_going=True, echo=lines.append)
    assert forced.ran == ["make/a", "make/b", "make/c"] and forced.failed == ["make/d"]
    assert (tmp_path / "d.txt").read_text() == "mine"
    assert "CONFLICT" in lines[-1] and "d.txt" in lines[-1]
    # only some stages
    (tmp_path / "d.txt").unlink()
    assert run_plan(plan, stages=["eval"], force=True, echo=lines.append).ran == ["make/d"]


def test_markers_of_older_versions_are_rekeyed_by_content(tmp_path):
    """A finished step's marker from before content hashes (inputs as [size, mtime_ns]) still
    counts as done while those match; the runner then records content hashes, from which on a
    rewrite with the same size and time is a change."""
    plan = _toy_plan(tmp_path)
    assert run_plan(plan, echo=lambda _: None).ok
    step = plan.steps[1]  # make/b reads a.txt
    a = tmp_path / "a.txt"
    marker = plan.marker_path(step)
    record = json.loads(marker.read_text())
    stat = a.stat()
    old = {key: record[key] for key in ("id", "command", "outputs", "seconds", "hf_mig")}
    old["inputs"] = {"a.txt": [stat.st_size, stat.st_mtime_ns]}
    marker.write_text(json.dumps(old))
    check = plan.check(step)
    assert check.state == "done" and "older hf-mig" in check.detail
    assert run_plan(plan, echo=lambda _: None).ran == []
    record = json.loads(marker.read_text())
    assert record["complete"] is True and record["inputs"]["a.txt"].startswith("xxh3_128:")
    a.write_text("Y")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert plan.step_state(step) == "changed"


def test_runner_failure_names_the_log_and_blocks_dependents(tmp_path):
    plan = _toy_plan(tmp_path, fail=True)
    lines: list[str] = []
    summary = run_plan(plan, echo=lines.append)
    assert summary.failed == ["make/b"] and summary.ran == ["make/a"] and not summary.ok
    text = "\n".join(lines)
    assert "exit status 3" in text and "boom" in text and "make__b.log" in text
    assert not (tmp_path / "d.txt").exists()  # stopped at the failure
    lines.clear()
    summary = run_plan(plan, keep_going=True, echo=lines.append)
    assert summary.failed == ["make/b"] and summary.blocked == ["make/c"]
    assert summary.ran == ["make/d"] and summary.skipped == ["make/a"]


def test_runner_resumes_training_from_a_checkpoint(tmp_path):
    code = (
        "import json, pathlib, sys; "
        "pathlib.Path('run/config.json').write_text(json.dumps(sys.argv))"
    )
    step = Step("train/x", "train", "train", ["python", "-c", code, "--output_dir", "run"],
                ["run/config.json"], resume=True)  # fmt: skip
    plan = Plan("toy", "tiny", "toy", tmp_path, [step])
    (tmp_path / "run" / "checkpoint-10").mkdir(parents=True)
    assert run_plan(plan, echo=lambda _: None).ok
    argv = json.loads((tmp_path / "run/config.json").read_text())
    assert argv[-2:] == ["--resume_from_checkpoint", "true"]
    assert plan.step_state(step) == "done"  # the marker keeps the plan's own command
    # a changed training step starts over: its checkpoints were trained on something else
    changed = Step(step.id, "train", "train", [*step.command, "--learning_rate", "2e-5"],
                   step.outputs, resume=True)  # fmt: skip
    plan = Plan("toy", "tiny", "toy", tmp_path, [changed])
    assert plan.step_state(changed) == "changed"
    assert run_plan(plan, echo=lambda _: None).ran == ["train/x"]
    argv = json.loads((tmp_path / "run/config.json").read_text())
    assert argv[-2:] == ["--learning_rate", "2e-5"]


# ------------------------------------------------------------------ the tiny chain, end to end


def test_tiny_table1_chain_runs_every_step(tiny_table1_run):
    first = tiny_table1_run.succeeded()  # the first run (tests/reproduce/conftest.py)
    assert "0 failed, 0 blocked" in first.stdout


def test_tiny_table1_selections_are_the_librarys(tiny_table1_run):
    work = tiny_table1_run.work
    tiny_table1_run.succeeded()
    pool = load_pool(work / "pools/self-instruct/annotated.jsonl")
    assert len(pool) == 427 and {"labels", "score", "ifd"} <= set(pool.column_names)
    graph = LabelGraph.load(work / "graphs/self-instruct-labels-t0.8.npz")
    mig = load_pool(work / "selections/self-instruct/mig-64.jsonl")
    expected = MIGSelector(64, label_graph=graph).select_indices(pool)
    assert mig["id"] == [pool["id"][i] for i in np.asarray(expected)]
    positions = json.loads((work / "selections/self-instruct/mig-64.indices.json").read_text())
    assert positions["positions"] == np.asarray(expected).tolist()  # what the report reads
    rnd = load_pool(work / "selections/self-instruct/random-64.jsonl")
    assert rnd["id"] == [pool["id"][i] for i in RandomSelector(64, seed=42).select_indices(pool)]


def test_tiny_table1_table_holds_the_results_and_the_report_is_written(tiny_table1_run):
    """Both models trained and evaluated; the table holds exactly the result files' numbers."""
    work, first = tiny_table1_run.work, tiny_table1_run.succeeded()
    rows = {r["model"]: r for r in csv.DictReader(open(work / "tables/table1.csv"))}
    for title, key in (("MIG", "mig-64"), ("Random", "random-64")):
        assert (work / f"runs/tiny-llama/self-instruct/{key}/config.json").is_file()
        ae = json.loads(
            (work / f"eval/tiny-llama/self-instruct/{key}/alpaca_eval/alpaca_eval.json").read_text()
        )
        ifeval = json.loads(
            (work / f"eval/tiny-llama/self-instruct/{key}/ifeval/objective.json").read_text()
        )
        assert ae["model"] == f"tiny-llama/self-instruct/{key}" and ae["n_total"] == 2
        assert float(rows[title]["AE"]) == pytest.approx(ae["win_rate"])
        assert float(rows[title]["IFEval"]) == pytest.approx(ifeval["scores"]["IFEval"])
    assert float(rows["MIG (paper)"]["Avg"]) == 55.32
    assert "| MIG |" in (work / "tables/table1.md").read_text()
    assert "| MIG |" in first.stdout  # the table is printed at the end
    assert f"selection report: {work / 'reports/table1/report.html'}" in first.stdout

    report = json.loads((work / "reports/table1/report.json").read_text())
    assert "MIG" in json.dumps(report) and "Random" in json.dumps(report)
    assert (work / "reports/table1/report.html").stat().st_size > 10_000


def test_tiny_table1_rerun_changes_nothing_and_a_removed_result_alone_reruns(tiny_table1_run):
    """Last of the module: it runs the chain again (twice) in the same work folder."""
    work = tiny_table1_run.work
    tiny_table1_run.succeeded()
    mtimes = {
        p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file() and "logs" not in p.parts
    }
    second = tiny_table1_run.again()
    assert second.returncode == 0 and "0 step(s) run" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    result = work / "eval/tiny-llama/self-instruct/random-64/ifeval/objective.json"
    before = result.read_bytes()
    result.unlink()
    third = tiny_table1_run.again()
    assert third.returncode == 0, third.stdout[-3000:]
    ran = [
        ln.split(":")[0].split("] ")[1]
        for ln in third.stdout.splitlines()
        if ln.endswith("s") and ": done in " in ln
    ]
    # the table is made again only when the new result's bytes differ (inputs keyed by content)
    again = ["compare/table1"] if result.read_bytes() != before else []
    assert ran == ["eval/tiny-llama/self-instruct/random-64/ifeval", *again]
