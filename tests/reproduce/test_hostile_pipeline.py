"""The pipeline against a hostile file system: partial and foreign outputs, inputs rewritten in
place with the same size and modification time, selection files written for another pool, and
writes interrupted half way.

Each test runs real commands (``hf-mig select``, ``hf-mig report``, ``python -c``; the report's
checks of a positions file in this process) on real files in ``tmp_path``; none of them holds on
code that only treats existing files as finished or keys anything by path, size or mtime.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_mig import load_pool
from hf_mig.data.io import OutputExistsError
from hf_mig.reproduce import Plan, Step, run_plan

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """Replace ``path``'s bytes with ``data`` (same length) and put its mtime back."""
    before = path.stat()
    assert len(data) == before.st_size and data != path.read_bytes()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _pool_rows(n: int, tag: str = "") -> list[dict]:
    return [
        {
            "id": f"r{i:03d}",
            "labels": [f"topic-{i % 7}", f"style-{i % 3}"],
            "score": float(1 + i % 5),
            "messages": [
                {"role": "user", "content": f"question {i}{tag}"},
                {"role": "assistant", "content": f"answer {i}{tag}"},
            ],
        }
        for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _py(code: str, *args: str) -> list[str]:
    return ["python", "-c", code, *args]


# a step that writes three records to out.jsonl, or (when crash.flag exists) half of one, then
# fails, as a process killed mid-write would
_WRITER = (
    "import json, pathlib, sys\n"
    "out = pathlib.Path(sys.argv[1])\n"
    "records = ''.join(json.dumps({'n': i}) + '\\n' for i in range(3))\n"
    "if pathlib.Path('crash.flag').exists():\n"
    "    out.write_text(records[:20])\n"
    "    sys.exit(1)\n"
    "out.write_text(records)\n"
)


# ------------------------------------------------------------------ hf-mig reproduce: outputs


def test_interrupted_step_is_run_again_not_taken_as_finished(tmp_path):
    """A step that died after writing part of its output is 'partial' and runs again; its half
    file never counts as an output made elsewhere ('exists')."""
    step = Step("make/out", "select", "write out", _py(_WRITER, "out.jsonl"), ["out.jsonl"])
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    (tmp_path / "crash.flag").write_text("")
    lines: list[str] = []
    first = run_plan(plan, echo=lines.append)
    assert first.failed == ["make/out"]
    assert (tmp_path / "out.jsonl").stat().st_size == 20  # the half-written file is there
    assert plan.step_state(step) == "partial"
    assert "stopped before finishing" in plan.check(step).detail
    (tmp_path / "crash.flag").unlink()
    second = run_plan(plan, echo=lines.append)
    assert second.ran == ["make/out"] and second.ok
    assert [r["n"] for r in load_pool(tmp_path / "out.jsonl")] == [0, 1, 2]
    assert plan.step_state(step) == "done"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b'{"n": 0}\n{"n": 1', "last record is not a complete JSON object"),
        (b"\n\n", "no records"),
    ],
)
def test_unusable_output_made_elsewhere_is_a_conflict_and_kept(tmp_path, content, reason):
    """An output without the plan's marker is judged by its content: an empty or cut-off file is
    a conflict (named, with the reason), the step does not run and the file is left as it is."""
    step = Step("make/out", "select", "write out", _py(_WRITER, "out.jsonl"), ["out.jsonl"])
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    (tmp_path / "out.jsonl").write_bytes(content)
    assert plan.status() == {"make/out": "conflict"}
    check = plan.check(step)
    assert reason in check.detail and "out.jsonl" in check.detail
    assert "conflict: out.jsonl" in plan.render()
    lines: list[str] = []
    summary = run_plan(plan, echo=lines.append)
    assert summary.failed == ["make/out"] and summary.ran == []
    assert "CONFLICT" in lines[-1] and reason in lines[-1]
    assert (tmp_path / "out.jsonl").read_bytes() == content
    assert not (tmp_path / ".reproduce" / "make__out.json").exists()


def test_usable_output_made_elsewhere_is_kept_after_a_check(tmp_path):
    step = Step("make/out", "select", "write out", _py(_WRITER, "out.jsonl"), ["out.jsonl"])
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    _write_jsonl(tmp_path / "out.jsonl", [{"n": 7}, {"n": 8}])
    check = plan.check(step)
    assert check.state == "exists" and "out.jsonl: 2 rows" in check.detail
    assert run_plan(plan, echo=lambda _: None).skipped == ["make/out"]
    assert [r["n"] for r in load_pool(tmp_path / "out.jsonl")] == [7, 8]


def test_step_that_must_run_never_replaces_an_output_it_did_not_make(tmp_path):
    """One output made elsewhere, its sibling missing: the step would have to replace the
    former to write the latter, so it is a conflict."""
    code = (
        "import pathlib; pathlib.Path('a.json').write_text('[1]'); "
        "pathlib.Path('b.json').write_text('[2]')"
    )
    step = Step("make/ab", "select", "write a and b", _py(code), ["a.json", "b.json"])
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    (tmp_path / "a.json").write_text('["theirs"]')
    assert run_plan(plan, echo=lambda _: None).failed == ["make/ab"]
    assert (tmp_path / "a.json").read_text() == '["theirs"]'
    assert not (tmp_path / "b.json").exists()
    check = plan.check(step)
    assert check.state == "conflict" and "a.json" in check.detail and check.foreign == ("a.json",)


def test_command_that_exits_0_with_an_empty_output_fails(tmp_path):
    code = "import pathlib; pathlib.Path('out.jsonl').write_text('')"
    step = Step("make/out", "select", "write nothing", _py(code), ["out.jsonl"])
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    lines: list[str] = []
    summary = run_plan(plan, echo=lines.append)
    assert summary.failed == ["make/out"]
    assert any("unusable output: out.jsonl (empty file (0 bytes))" in ln for ln in lines)
    assert plan.step_state(step) == "partial"  # the plan's own: replaced at the next run


def test_input_rewritten_with_same_size_and_mtime_runs_the_step_again(tmp_path):
    copy = (
        "import pathlib, sys; "
        "pathlib.Path(sys.argv[2]).write_text(pathlib.Path(sys.argv[1]).read_text())"
    )
    step = Step("make/b", "select", "copy a to b.json", _py(copy, "a.json", "b.json"),
                ["b.json"], ["a.json"])  # fmt: skip
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    (tmp_path / "a.json").write_text('{"v": "old"}')
    assert run_plan(plan, echo=lambda _: None).ran == ["make/b"]
    _rewrite_keeping_stat(tmp_path / "a.json", b'{"v": "new"}')
    assert plan.step_state(step) == "changed"
    assert "input(s) changed: a.json" in plan.check(step).detail
    assert run_plan(plan, echo=lambda _: None).ran == ["make/b"]
    assert json.loads((tmp_path / "b.json").read_text()) == {"v": "new"}
    marker = json.loads((tmp_path / ".reproduce" / "make__b.json").read_text())
    assert marker["inputs"]["a.json"].startswith("xxh3_128:") and marker["complete"] is True


def test_input_folder_is_keyed_by_the_content_of_its_files(tmp_path):
    count = (
        "import pathlib, sys; n = sum(len(p.read_bytes()) for p in pathlib.Path('in').rglob('*')"
        " if p.is_file()); pathlib.Path('n.json').write_text(str(n))"
    )
    step = Step("make/n", "select", "count", _py(count), ["n.json"], ["in"])
    plan = Plan("hostile", "tiny", "hostile", tmp_path, [step])
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "part.txt").write_text("abc")
    assert run_plan(plan, echo=lambda _: None).ran == ["make/n"]
    assert plan.step_state(step) == "done"
    _rewrite_keeping_stat(tmp_path / "in" / "sub" / "part.txt", b"xyz")
    assert plan.step_state(step) == "changed"


# ------------------------------------------------------------------ re-runs replace own outputs


def test_changed_steps_replace_their_own_outputs_with_overwrite(tmp_path):
    """``hf-mig select`` and ``hf-mig report`` refuse an existing output without --overwrite;
    when their input changes, the plan runs them again with it, over what it wrote itself."""
    pool = tmp_path / "pool.jsonl"
    _write_jsonl(pool, _pool_rows(40))
    select = ["hf-mig", "select", "pool.jsonl", "--method", "random", "--num", "6", "--seed",
              "1", "--out", "sel/r.jsonl", "--indices-out", "sel/r.indices.json"]  # fmt: skip
    report = ["hf-mig", "report", "pool.jsonl", "--selection", "random=sel/r.indices.json",
              "--out", "rep"]  # fmt: skip
    steps = [
        Step("select/r", "select", "select", select, ["sel/r.jsonl", "sel/r.indices.json"],
             ["pool.jsonl"]),
        Step("report/r", "report", "report", report, ["rep/report.html"],
             ["pool.jsonl", "sel/r.indices.json"]),
    ]  # fmt: skip
    plan = Plan("hostile", "tiny", "hostile", tmp_path, steps)
    lines: list[str] = []
    assert run_plan(plan, echo=lines.append).ran == ["select/r", "report/r"]
    first = json.loads((tmp_path / "rep" / "report.json").read_text())

    # the commands themselves refuse to replace an output
    again = subprocess.run(
        [sys.executable, "-m", "hf_mig", *report[1:]], cwd=tmp_path, env=ENV,
        capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 2 and "report.json" in again.stderr and "--overwrite" in again.stderr

    _write_jsonl(pool, _pool_rows(40, tag=" (v2)"))
    assert plan.status() == {"select/r": "changed", "report/r": "changed"}
    summary = run_plan(plan, echo=lines.append)
    assert summary.ran == ["select/r", "report/r"], "\n".join(lines)
    for name in ("select__r.log", "report__r.log"):
        assert (tmp_path / "logs" / name).read_text().splitlines()[0].endswith("--overwrite")
    chosen = load_pool(tmp_path / "sel" / "r.jsonl")
    assert all(m[0]["content"].endswith("(v2)") for m in chosen["messages"])
    second = json.loads((tmp_path / "rep" / "report.json").read_text())
    # same positions, read from the new pool
    for key in ("rows", "first_ids"):
        assert second["selections"]["random"][key] == first["selections"]["random"][key]
    picks = second["selections"]["random"]["first_picks"]
    assert picks and all(pick["text"].endswith("(v2)") for pick in picks)
    assert set(plan.status().values()) == {"done"}
    # the marker keeps the plan's command, not the one with --overwrite
    marker = json.loads((tmp_path / ".reproduce" / "select__r.json").read_text())
    assert marker["command"] == select


# ------------------------------------------------------------------ hf-mig train: selection cache


def _train_pool(path: Path, rows: list[dict]) -> None:
    _write_jsonl(path, rows)


def _data_config(pool: Path, cache: Path):
    from hf_mig.train.config import DataConfig, SelectionSpec

    return DataConfig(
        pool=str(pool), selection=SelectionSpec("random", 6, {"seed": 3}), cache_dir=str(cache)
    )


def test_pool_rewritten_in_place_is_selected_again(tmp_path, caplog):
    from hf_mig.train.data import load_training_data

    pool, cache = tmp_path / "pool.jsonl", tmp_path / "cache"
    rows = _pool_rows(30)
    _train_pool(pool, rows)
    first = load_training_data(_data_config(pool, cache))
    assert first.cache_hit is False
    # same size, same mtime, other rows at every position
    _rewrite_keeping_stat(pool, "".join(json.dumps(r) + "\n" for r in rows[::-1]).encode())
    with caplog.at_level(logging.INFO, logger="hf_mig.train.data"):
        second = load_training_data(_data_config(pool, cache))
    assert second.cache_hit is False and "selection computed" in caplog.text
    assert second.manifest["pool"]["fingerprint"] != first.manifest["pool"]["fingerprint"]
    reversed_pool = load_pool(pool)
    expected = [reversed_pool[int(i)]["messages"] for i in second.train_rows["pool_index"]]
    assert second.train["messages"] == expected
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hf_mig.train.data"):
        third = load_training_data(_data_config(pool, cache))
    assert third.cache_hit is True and "selection cache hit" in caplog.text
    assert str(pool) in caplog.text


def test_cache_hit_names_the_pool_of_this_run(tmp_path):
    """The cache is keyed by content: a copy of the pool under another name reuses the selection,
    and the manifest and model card name the copy, not the file that filled the cache."""
    from hf_mig.train.callbacks import SelectionManifestCallback
    from hf_mig.train.data import load_training_data

    cache = tmp_path / "cache"
    original, copy = tmp_path / "a" / "pool.jsonl", tmp_path / "b" / "renamed.jsonl"
    _train_pool(original, _pool_rows(30))
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    first = load_training_data(_data_config(original, cache))
    second = load_training_data(_data_config(copy, cache))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.manifest["pool"]["source"] == str(copy)
    assert second.manifest["pool"]["fingerprint"] == first.manifest["pool"]["fingerprint"]
    assert second.manifest["selection_cache"] == {"key": first.cache_path.name, "hit": True}
    assert first.manifest["selection_cache"]["hit"] is False
    out = tmp_path / "run"
    SelectionManifestCallback(second.manifest).write(out)
    written = json.loads((out / "selection_manifest.json").read_text())
    card = (out / "README.md").read_text()
    assert written["pool"]["source"] == str(copy)
    assert str(copy) in card and str(original) not in card


# ------------------------------------------------------------------ hf-mig report: positions files


def _positions(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"positions": [0, 1, 2], "pool_rows": 50}, "50 rows ('pool_rows'), but this pool has 40"),
        ({"positions": [0, 40], "pool_rows": 40}, "position 40 (entry 1) is out of range 0..39"),
        ({"positions": [0, -1], "pool_rows": 40}, "position -1 (entry 1) is out of range"),
        ({"positions": [3, 5, 3], "pool_rows": 40}, "position 3 is listed twice (entries 0 and 2)"),
        ({"positions": [1, 2.0], "pool_rows": 40}, "must be a list of integers"),
        ({"positions": [1, True], "pool_rows": 40}, "must be a list of integers"),
        ({"positions": [1, 2]}, "'pool_rows' must be the number of rows"),
        ({"positions": [], "pool_rows": 40}, "'positions' is empty"),
    ],
)  # fmt: skip
def test_positions_file_must_belong_to_the_pool(tmp_path, record, message, run_main):
    from hf_mig.report import read_selection_file

    pool = tmp_path / "pool.jsonl"
    _write_jsonl(pool, _pool_rows(40))
    bad = _positions(tmp_path / "picked.indices.json", record)
    code, _, stderr = run_main(
        ["-q", "report", pool, "--selection", f"picked={bad}", "--out", tmp_path / "rep"]
    )
    assert code == 2, stderr
    assert str(bad) in stderr and message in stderr
    assert not (tmp_path / "rep").exists()
    with pytest.raises(ValueError) as err:
        read_selection_file(bad, pool_rows=40)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_positions_file_of_this_pool_is_reported(tmp_path, run_main):
    pool = tmp_path / "pool.jsonl"
    _write_jsonl(pool, _pool_rows(40))
    good = _positions(tmp_path / "p.indices.json", {"positions": [4, 0, 9], "pool_rows": 40})
    code, _, stderr = run_main(
        ["-q", "report", pool, "--selection", f"picked={good}", "--out", tmp_path / "rep"]
    )
    assert code == 0, stderr
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["selections"]["picked"]["rows"] == 3
    assert data["selections"]["picked"]["first_ids"] == ["r004", "r000", "r009"]


# ------------------------------------------------------------------ interrupted writes


def _tmp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".hf-mig-tmp-" in p.name]


def test_report_refuses_to_replace_and_a_failed_render_leaves_the_old_one(tmp_path, monkeypatch):
    import hf_mig.report as report

    pool = load_pool(_write_and_return(tmp_path / "pool.jsonl", _pool_rows(40)))
    out = tmp_path / "rep"
    report.build_report(pool, {"a": [0, 1, 2]}, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OutputExistsError, match="report.json"):
        report.build_report(pool, {"a": [5, 6]}, out)

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(report, "render_html", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        report.build_report(pool, {"b": [7, 8, 9, 10]}, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    report.build_report(pool, {"b": [7, 8, 9, 10]}, out, overwrite=True)
    assert set(json.loads((out / "report.json").read_text())["selections"]) == {"b"}
    assert not _tmp_leftovers(out)


def _write_and_return(path: Path, rows: list[dict]) -> Path:
    _write_jsonl(path, rows)
    return path


def test_callback_logs_never_hold_half_a_record(tmp_path, monkeypatch):
    """``label_losses.jsonl`` grows by whole records: a write that fails before its rename
    leaves the file as it was (no partial line) and no temporary file behind."""
    from types import SimpleNamespace

    import hf_mig.data.io
    from hf_mig.train.callbacks import LabelLossCallback

    rows = load_pool(_write_and_return(tmp_path / "rows.jsonl", _pool_rows(12)))
    callback = LabelLossCallback(rows, num_groups=2, rows_per_group=2)
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), should_save=True)
    state = SimpleNamespace(global_step=1, log_history=[])
    callback._record(args, state, {}, "train", {"topic-0": 1.5})
    log = tmp_path / "run" / "label_losses.jsonl"
    kept = log.read_bytes()

    def no_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(hf_mig.data.io.os, "replace", no_rename)
    state.global_step = 2
    with pytest.raises(OSError, match="disk full"):
        callback._record(args, state, {}, "train", {"topic-0": 1.2})
    assert log.read_bytes() == kept
    assert not _tmp_leftovers(tmp_path / "run")
    monkeypatch.undo()
    callback._record(args, state, {}, "train", {"topic-0": 1.1})
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2]
