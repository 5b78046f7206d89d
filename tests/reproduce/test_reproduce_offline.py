"""``hf-mig reproduce`` without the shared data folder and without the Hub.

The tiny scale plans and runs from a clone of the repository alone: the ``pools`` experiment on the
bundled annotated pool (LIMA and Alpaca-GPT-4 left out, with the reason, when the shared folder
does not have them), IFEval on the repository's copy of its prompts, and AlpacaEval's protocol on
the MT-Bench questions with FastChat's GPT-4 reference answers (``AE*`` in the table, never
``AE``). What steps read from outside the work folder is checked before the first step runs: a
missing file, package or Hub input stops the run with one line naming it and the way round.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hf_mig import LabelGraph, MIGSelector, load_pool
from hf_mig.data.resources import bundled_path
from hf_mig.eval import alpaca_eval as ae
from hf_mig.eval import compare
from hf_mig.reproduce import EXPERIMENTS, SCALES, PlanOptions, Step, build_plan, run_plan
from hf_mig.reproduce.plan import Plan
from hf_mig.reproduce.planner import MT_BENCH_REFERENCE_OUT
from hf_mig.reproduce.preflight import Need, check_needs

REPO = Path(__file__).resolve().parents[2]
MT_BENCH = REPO / "tests/fixtures/data/mt_bench/mt_bench"
IFEVAL = REPO / "tests/fixtures/data/ifeval/input_data.jsonl"


@pytest.fixture
def no_shared(monkeypatch, tmp_path) -> Path:
    """HF_MIG_SHARED pointing at a folder that does not exist (a plain clone)."""
    missing = tmp_path / "no-shared-folder"
    monkeypatch.setenv("HF_MIG_SHARED", str(missing))
    return missing


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in extra}
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def _cmd_arg(step: Step, flag: str) -> str:
    return step.command[step.command.index(flag) + 1]


# ------------------------------------------------------------------ pools without shared data


def test_tiny_pools_plan_on_bundled_data_and_say_what_was_left_out(no_shared, tmp_path):
    plan = build_plan("pools", "tiny", PlanOptions(workdir=tmp_path / "w"))
    assert not plan.blockers
    trained = {s.id for s in plan.steps if s.stage == "train"}
    assert trained == {
        "train/tiny-llama/self-instruct-annotated/mig-64",
        "train/tiny-llama/self-instruct-annotated/random-64",
    }
    assert not [s for s in plan.steps if s.stage == "annotate"]  # shipped with labels and scores
    select = next(s for s in plan.steps if s.id == "select/self-instruct-annotated/mig-64")
    assert select.command[2] == str(bundled_path("hf-mig:demo-annotated"))
    notes = "\n".join(plan.notes)
    for key, licence in (("lima", "CC BY-NC-SA"), ("alpaca-gpt4", "CC BY-NC 4.0")):
        line = next(n for n in plan.notes if n.startswith(f"pool {key} "))
        assert "left out" in line and licence in line and str(no_shared) in line
        assert "--shared DIR" in line and f"--pool {key}=PATH" in line
    assert "another annotation of the same instructions" in notes

    # a pool given with --pool is planned without the shared folder
    lima = tmp_path / "lima.jsonl"
    lima.write_text('{"messages": [], "labels": ["a"], "score": 1.0}\n')
    opts = PlanOptions(workdir=tmp_path / "w", pools={"lima": str(lima)})
    plan = build_plan("pools", "tiny", opts)
    assert "select/lima/mig-64" in {s.id for s in plan.steps}
    assert not any(n.startswith("pool lima ") for n in plan.notes)

    # a shared folder named on the command line must hold the pools: an error, not a skip
    given = tmp_path / "empty-shared"
    given.mkdir()
    with pytest.raises(ValueError, match=r"pool lima: .*lima\.json does not exist.*--shared"):
        build_plan("pools", "tiny", PlanOptions(workdir=tmp_path / "w", shared_dir=given))


def test_tiny_pools_with_the_shared_folder_plan_all_three(shared_dir, tmp_path):
    plan = build_plan("pools", "tiny", PlanOptions(workdir=tmp_path, shared_dir=shared_dir))
    pools = {s.id.split("/")[2] for s in plan.steps if s.stage == "train"}
    assert pools == {"self-instruct-annotated", "lima", "alpaca-gpt4"}
    assert not any("left out" in n for n in plan.notes)


# ------------------------------------------------------------------ evaluation without shared data


def test_tiny_evaluation_reads_only_repository_data(no_shared, tmp_path):
    plan = build_plan("table1", "tiny", PlanOptions(workdir=tmp_path))
    ids = [s.id for s in plan.steps]
    ref = next(s for s in plan.steps if s.id == "eval/reference/mt_bench-gpt4")
    assert ref.outputs == [MT_BENCH_REFERENCE_OUT]
    assert set(ref.inputs) == {str(MT_BENCH / "question.jsonl"),
                               str(MT_BENCH / "reference_answer/gpt-4.jsonl")}  # fmt: skip
    alpaca = [s for s in plan.steps if s.id.endswith("/alpaca_eval")]
    ifeval = [s for s in plan.steps if s.id.endswith("/ifeval")]
    assert len(alpaca) == len(ifeval) == 9
    for step in alpaca:
        assert ids.index(ref.id) < ids.index(step.id)
        assert _cmd_arg(step, "--reference") == MT_BENCH_REFERENCE_OUT
        assert MT_BENCH_REFERENCE_OUT in step.inputs  # a changed reference re-runs the step
        assert "AE*" in step.title
    for step in ifeval:
        assert _cmd_arg(step, "--input") == str(IFEVAL) and str(IFEVAL) in step.inputs
    assert any(n.startswith("AE* (not AE)") and "not comparable" in n for n in plan.notes)
    # nothing from the Hub: every Hub need has a package that ships it, and all are installed
    needs = [n for s in plan.steps for n in s.needs]
    assert all(n.module for n in needs if n.kind == "hub")
    assert plan.preflight() == []  # HF_HUB_OFFLINE=1 (conftest)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_step_command_parses(experiment, scale, no_shared, tmp_path):
    """Each planned command is accepted by the parser of the program it runs."""
    from hf_mig.cli.main import build_parser

    plan = build_plan(experiment, scale, PlanOptions(workdir=tmp_path))
    for step in plan.steps:
        cmd = step.command
        if cmd[0] == "hf-mig":
            parser, args = build_parser(), cmd[1:]
        elif cmd[:2] == ["python", "-m"]:
            module = __import__(cmd[2], fromlist=["build_parser"])
            parser, args = module.build_parser(), cmd[3:]
        else:  # accelerate launch ... -m hf_mig.train: the trainer's own config parser
            continue
        try:
            parser.parse_args(args)
        except SystemExit as err:
            pytest.fail(f"{step.id}: {shlex.join(cmd)} does not parse ({err})")


# ------------------------------------------------------------------ the MT-Bench reference


def test_reference_from_mt_bench_files(tmp_path, run_main):
    out = tmp_path / "ref.json"
    cmd = ["reference", "--mt-bench-questions", MT_BENCH / "question.jsonl", "--mt-bench-answers",
           MT_BENCH / "reference_answer/gpt-4.jsonl", "--out", out]  # fmt: skip
    code, _, err = run_main(cmd, ae.main)  # python -m hf_mig.eval.alpaca_eval reference ...
    assert code == 0, err
    records = json.loads(out.read_text())
    assert len(records) == 30 and [r["question_id"] for r in records] == list(range(101, 131))
    questions = {
        json.loads(line)["question_id"]: json.loads(line)
        for line in (MT_BENCH / "question.jsonl").read_text().splitlines()
    }
    answers = [json.loads(line) for line in (MT_BENCH / "reference_answer/gpt-4.jsonl").open()]
    for rec, answer in zip(records, answers):
        q = questions[rec["question_id"]]
        assert rec["instruction"] == q["turns"][0]
        assert rec["output"] == answer["choices"][0]["turns"][0]
        assert rec["dataset"] == f"mt_bench/{q['category']}"
    assert ae.load_reference(out) == records  # what the AlpacaEval steps read
    # an existing output is kept unless --overwrite
    out.write_text("mine")
    assert run_main(cmd, ae.main)[0] == 2 and out.read_text() == "mine"
    assert run_main([*cmd, "--overwrite"], ae.main)[0] == 0
    assert json.loads(out.read_text()) == records


def test_reference_from_mt_bench_names_bad_lines(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"question_id": 1, "category": "math", "turns": ["1+1?", "and 2+2?"]}\n'
        '{"question_id": 2, "turns": ["no category"]}\n'
    )
    answers = tmp_path / "a.jsonl"
    with pytest.raises(ValueError, match=r"q\.jsonl: line 2: expected question_id, category"):
        ae.reference_from_mt_bench(questions, answers)
    questions.write_text('{"question_id": 1, "category": "math", "turns": ["1+1?"]}\n')
    answers.write_text('{"question_id": 1, "choices": [{"turns": ["2"]}]}\n'
                       '{"question_id": 7, "choices": [{"turns": ["?"]}]}\n')  # fmt: skip
    with pytest.raises(ValueError, match=r"a\.jsonl: line 2: question 7 is not in"):
        ae.reference_from_mt_bench(questions, answers)
    answers.write_text('{"question_id": 1, "choices": [{"turns": ["2"]}]}\n' * 2)
    with pytest.raises(ValueError, match="line 2: question 1 answered twice"):
        ae.reference_from_mt_bench(questions, answers)
    answers.write_text("\n")
    with pytest.raises(ValueError, match="no reference answers"):
        ae.reference_from_mt_bench(questions, answers)


def _annotations(dataset: str, preferences: list[float]) -> list[dict]:
    return [
        {"instruction": f"q{i}", "dataset": dataset, "output_1": "ref", "output_2": "model",
         "generator_1": "ref", "generator_2": "m", "preference": p}
        for i, p in enumerate(preferences)
    ]  # fmt: skip


def test_mt_bench_reference_scores_show_as_ae_star_not_ae(tmp_path):
    mtb = ae.score_annotations(_annotations("mt_bench/math", [2.0, 1.0, 2.0, 2.0]), lc=False)
    real = ae.score_annotations(_annotations("helpful_base", [2.0, 1.0, 1.0, 1.0]), lc=False)
    assert mtb.instruction_set == "mt_bench" and real.instruction_set == "alpaca_eval"
    assert "not the AlpacaEval set" in ae.format_score(mtb)
    files = []
    for name, score in (("A", mtb), ("B", real)):
        result = {**score.to_dict(), "model": name}
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(result))
    mt = tmp_path / "mt.json"
    mt.write_text(json.dumps({"benchmark": "mt_bench", "model": "A", "overall": 5.0}))
    wild = tmp_path / "wild.json"
    wild.write_text(json.dumps({"benchmark": "wildbench_v2", "model": "A",
                                "mixture_of_rewards": 0.0}))  # fmt: skip
    table = compare.collect([*files, mt, wild])
    assert table["A"] == {"AE*": 75.0, "MT": 5.0, "Wild": 0.0}
    assert table["B"] == {"AE": 25.0}
    rows = compare.build_table(table)
    assert "Avg_sub" not in rows[0]  # AE* never stands in for AE in an average
    md = compare.to_markdown(rows)
    header = md.splitlines()[0].split(" | ")
    assert header.index("AE*") == header.index("AE") + 1
    assert "| A |" in md and "75.00" in md
    assert md.splitlines()[-1].startswith("AE*: ") and "not comparable" in md
    assert "AE*" in compare.to_csv(rows).splitlines()[0]


# ------------------------------------------------------------------ preflight


def test_check_needs_one_line_per_missing_need(tmp_path):
    there = tmp_path / "there.txt"
    there.write_text("x")
    gone = Need("file", str(tmp_path / "gone.txt"), "the prompts", "pass --prompts FILE")
    pairs = [
        ("a/1", gone), ("a/2", gone), ("b", Need("file", str(there), "a file")),
        ("c", Need("module", "no_such_module_hf_mig", "a package", "pip install it")),
        ("d", Need("module", "numpy", "numpy")),
    ]  # fmt: skip
    assert check_needs(pairs) == [
        f"the prompts ({tmp_path / 'gone.txt'}) does not exist (needed by a/1 and 1 more): "
        "pass --prompts FILE",
        "a package (Python package no_such_module_hf_mig) is not installed (needed by c): "
        "pip install it",
    ]
    with pytest.raises(ValueError, match="kind"):
        Need("url", "x", "y")


def test_runner_checks_needs_before_the_first_step(tmp_path):
    work = tmp_path / "work"
    code = "import pathlib; pathlib.Path('a.txt').write_text('a')"
    first = Step("make/a", "annotate", "a", ["python", "-c", code], ["a.txt"])
    gone = Need("file", str(tmp_path / "gone"), "the data", "pass --data")
    needy = Step("make/b", "select", "b", ["python", "-c", "pass"], ["b.txt"], ["a.txt"],
                 needs=[gone])  # fmt: skip
    lines: list[str] = []
    summary = run_plan(Plan("toy", "tiny", "toy", work, [first, needy]), echo=lines.append)
    assert not summary.ok and summary.ran == [] and len(summary.missing) == 1
    assert lines == [f"cannot start: {summary.missing[0]}"] and "needed by make/b" in lines[0]
    assert not work.exists()  # nothing written, not even the work folder
    # only the steps that would run are checked: a finished one's needs are not
    summary = run_plan(Plan("toy", "tiny", "toy", work, [first]), echo=lines.append)
    assert summary.ok and (work / "a.txt").read_text() == "a"
    first.needs.append(Need("file", str(tmp_path / "gone"), "the data"))
    assert run_plan(Plan("toy", "tiny", "toy", work, [first]), echo=lines.append).ok
    assert Plan("toy", "tiny", "toy", work, [first]).preflight(force=True) != []


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reproduce_hub(tmp_path: Path, **env: str | None) -> subprocess.CompletedProcess:
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "hf_mig", "reproduce", "table1", "--scale", "tiny",
           "--alpaca-reference", "hub", "--workdir", str(work)]  # fmt: skip
    base = {"HF_HOME": str(tmp_path / "hf-home"), "HF_MIG_SHARED": str(tmp_path / "none")}
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**base, **env))


def test_hub_input_offline_fails_before_running_with_the_way_round(tmp_path):
    done = _reproduce_hub(tmp_path, HF_HUB_OFFLINE="1")
    assert done.returncode == 2
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("hf-mig reproduce: error:")]
    assert len(errors) == 1, done.stderr
    line = errors[0]
    assert "alpaca_eval_gpt4_baseline.json of the Hub dataset tatsu-lab/alpaca_eval" in line
    assert "HF_HUB_OFFLINE is set" in line and "and 8 more" in line
    assert "--alpaca-reference FILE" in line and "--shared DIR" in line and "HF_MIG_SHARED" in line
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "work").exists()


def test_hub_input_with_unreachable_hub_fails_before_running(tmp_path):
    port = _closed_port()
    done = _reproduce_hub(tmp_path, HF_HUB_OFFLINE=None, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"the Hub (http://127.0.0.1:{port}) cannot be reached" in done.stderr
    assert "alpaca_eval_gpt4_baseline.json" in done.stderr and "--shared DIR" in done.stderr
    assert not (tmp_path / "work").exists()


class _Hub(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_hub_need_is_met_when_the_hub_answers(tmp_path):
    closed = f"http://127.0.0.1:{_closed_port()}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    code = (
        "from hf_mig.reproduce.preflight import Need, check_needs; "
        "print(check_needs([('s', Need('hub', 'org/never-cached', 'x', repo_type='dataset', "
        "filename='f.json'))]))"
    )
    try:
        for endpoint, expected in ((url, "[]"), (closed, "cannot be reached")):
            env = _env(HF_HUB_OFFLINE=None, HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "h"))
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=env)  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert expected in done.stdout, (endpoint, done.stdout)
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ the tiny pools run, offline


def test_tiny_pools_runs_offline_without_shared_data(tiny_pools_run):
    work, done = tiny_pools_run.work, tiny_pools_run.succeeded()  # tests/reproduce/conftest.py
    assert "12 step(s) run" in done.stdout and "0 failed, 0 blocked" in done.stdout
    assert "left out" in done.stdout  # the plan's notes say why LIMA and Alpaca-GPT-4 are not there

    pool = load_pool(bundled_path("hf-mig:demo-annotated"))
    graph = LabelGraph.load(work / "graphs/self-instruct-annotated-labels-t0.8.npz")
    chosen = load_pool(work / "selections/self-instruct-annotated/mig-64.jsonl")
    expected = np.asarray(MIGSelector(64, label_graph=graph).select_indices(pool))
    assert chosen["id"] == [pool["id"][i] for i in expected]


def test_tiny_pools_table_shows_mt_bench_results_as_ae_star(tiny_pools_run):
    work, done = tiny_pools_run.work, tiny_pools_run.succeeded()
    reference = json.loads((work / MT_BENCH_REFERENCE_OUT).read_text())
    rows = {r["model"]: r for r in csv.DictReader(open(work / "tables/pools.csv"))}
    for method in ("mig", "random"):
        run = f"tiny-llama/self-instruct-annotated/{method}-64"
        result = json.loads((work / f"eval/{run}/alpaca_eval/alpaca_eval.json").read_text())
        assert result["instruction_set"] == "mt_bench" and result["n_total"] == 2
        outputs = json.loads((work / f"eval/{run}/alpaca_eval/model_outputs.json").read_text())
        assert [o["instruction"] for o in outputs] == [r["instruction"] for r in reference[:2]]
        row = rows[f"{method.upper() if method == 'mig' else 'Random'} / self-instruct tasks, "
                   "bundled annotation"]  # fmt: skip
        assert float(row["AE*"]) == pytest.approx(result["win_rate"]) and row["AE"] == ""
    table = (work / "tables/pools.md").read_text()
    assert "| AE | AE* |" in table and "AE*: " in table and table in done.stdout
