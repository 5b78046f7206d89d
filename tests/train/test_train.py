"""End to end: recipes/tiny_cpu.yaml trains the offline tiny Llama on a MIG selection of real data.

One in-process run (``hf_mig.train.train``), in which a FutureWarning or DeprecationWarning
raised from hf_mig, trl or transformers is an error, is shared by most tests; the module entry
point, the ``hf-mig train`` subcommand, a two-process ``torchrun`` run and an upload to a Hub
stand-in on 127.0.0.1 are exercised separately.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import yaml

import hf_mig
from hf_mig.core.summary import selection_summary
from hf_mig.train import load_recipe, train
from hf_mig.train.config import DataConfig, SelectionSpec
from hf_mig.train.data import load_training_data, selection_key, selection_spec
from hf_mig.train.templates import assistant_spans

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_cpu.yaml"
QUIET = ["--eval_strategy", "no", "--save_strategy", "no", "--generation_preview", "false"]


@contextlib.contextmanager
def strict_warnings():
    """FutureWarning / DeprecationWarning raised from hf_mig, trl or transformers code are
    errors (the settings hf-mig passes them are ours to keep current)."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings(
                "error", category=category, module=r"(hf_mig|trl|transformers)(\.|$)"
            )
        yield


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    """A private hf-mig cache (tiny model + selections) for this module."""
    path = tmp_path_factory.mktemp("hf_mig_cache")
    old = os.environ.get("HF_MIG_CACHE")
    os.environ["HF_MIG_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HF_MIG_CACHE", None)
    else:
        os.environ["HF_MIG_CACHE"] = old


@pytest.fixture(scope="module")
def tiny_run(hf_cache, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    try:
        with strict_warnings():
            result = train(TINY, ["--output_dir", str(out)])
    finally:
        torch.set_num_threads(threads)
    return result


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_MIG_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


# ------------------------------------------------------------------------------ the tiny run


def test_tiny_recipe_loss_goes_down(tiny_run):
    history = tiny_run.trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(losses) >= 8
    assert losses[-1] < losses[0] - 0.5, losses
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert len(evals) >= 2 and evals[-1] < evals[0], evals
    assert (tiny_run.output_dir / "model.safetensors").is_file()
    assert (tiny_run.output_dir / "chat_template.jinja").read_text().count("generation") >= 2


def test_trained_rows_are_the_mig_selection(tiny_run, demo_annotated, demo_graph):
    """The cached indices are exactly what MIGSelector picks, and they are what was trained on."""
    pool = hf_mig.load_pool(demo_annotated)
    fresh = hf_mig.get_selector("mig", 64, label_graph=str(demo_graph)).select_indices(pool)
    cached = np.load(tiny_run.data.cache_path / "indices.npy")
    np.testing.assert_array_equal(cached, fresh)
    rows = tiny_run.data.train_rows
    eval_rows = tiny_run.data.eval_rows
    assert len(rows) == 56 and len(eval_rows) == 8
    assert sorted(list(rows["pool_index"]) + list(eval_rows["pool_index"])) == sorted(
        fresh.tolist()
    )
    first = rows[0]
    messages = pool[first["pool_index"]]["messages"]
    assert first["messages"] == [{"role": m["role"], "content": m["content"]} for m in messages]


def test_assistant_mask_covers_only_assistant_tokens(tiny_run):
    trainer = tiny_run.trainer
    tok = trainer.processing_class
    dataset = trainer.train_dataset
    max_length = tiny_run.recipe.training["max_length"]
    assert {"input_ids", "labels", "messages"} <= set(dataset.column_names)
    checked = truncated = 0
    for row in dataset:
        ids, labels = row["input_ids"], row["labels"]
        spans = assistant_spans(ids, [label != -100 for label in labels])
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        prompts = [m["content"] for m in row["messages"] if m["role"] != "assistant"]
        assert len(spans) == len(answers)
        for (a, b), content in zip(spans, answers):
            assert labels[a:b] == ids[a:b]
            text = tok.decode(ids[a:b]).strip()
            expected = (content + "<|eot_id|>").strip()
            if b == len(ids) == max_length:  # cut by max_length: a prefix of the answer
                truncated += 1
                assert expected.startswith(text.rstrip("\ufffd")), (text[:80], expected[:80])
            else:
                assert text == expected
        # everything before the answer is prompt, never trained on
        prompt_text = tok.decode([t for t, label in zip(ids, labels) if label == -100])
        for content in prompts:
            assert content.strip()[:40] in prompt_text
        assert "<|start_header_id|>assistant<|end_header_id|>" in prompt_text
        checked += 1
    assert checked == len(dataset) >= 50
    assert 0 < truncated < checked  # both kinds of rows were checked


def test_selection_manifest_written_everywhere(tiny_run, demo_annotated, demo_graph):
    out = tiny_run.output_dir
    manifest = json.loads((out / "selection_manifest.json").read_text())
    pool_file = demo_annotated
    graph = hf_mig.LabelGraph.load(demo_graph).stats()
    assert manifest["hf_mig_version"] == hf_mig.__version__
    assert manifest["pool"]["fingerprint"] == "sha256:" + _sha256(pool_file)
    assert manifest["pool"]["rows"] == sum(1 for line in pool_file.open() if line.strip())
    assert manifest["selection"]["method"] == "mig"
    assert manifest["selection"]["k"] == 64
    assert manifest["selection"]["options"]["label_graph"] == str(demo_graph)
    assert manifest["selection"]["params"]["phi_b"] == 0.8
    assert manifest["label_graph"]["num_labels"] == graph["num_labels"]
    assert manifest["label_graph"]["num_edges"] == graph["num_edges"]
    pool = hf_mig.load_pool(pool_file)
    subset = pool.select(np.load(tiny_run.data.cache_path / "indices.npy"))
    coverage = selection_summary(pool, subset)
    assert manifest["coverage"] == pytest.approx(coverage)
    assert manifest["training_rows"] == 56 and manifest["eval_rows"] == 8
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) >= 2
    for folder in [out, *checkpoints]:
        assert json.loads((folder / "selection_manifest.json").read_text()) == manifest
        card = (folder / "README.md").read_text()
        assert card.count("hf-mig:selection-manifest:start") == 1
        assert manifest["pool"]["fingerprint"] in card
        assert "| method | `mig` |" in card and "| k | 64 |" in card
    assert "TRL" in (out / "README.md").read_text()  # TRL's card kept, section added


def test_label_losses_in_log_history(tiny_run):
    out = tiny_run.output_dir
    groups = [g["name"] for g in json.loads((out / "label_groups.json").read_text())["groups"]]
    assert len(groups) == 4
    train_logs = [h for h in tiny_run.trainer.state.log_history if "loss" in h]
    for entry in train_logs:
        values = [entry[f"label_loss/{name}"] for name in groups]
        assert all(np.isfinite(values))
    first = np.mean([train_logs[0][f"label_loss/{g}"] for g in groups])
    last = np.mean([train_logs[-1][f"label_loss/{g}"] for g in groups])
    assert last < first - 0.3
    lines = [json.loads(x) for x in (out / "label_losses.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "train"] == [h["step"] for h in train_logs]


def test_generations_jsonl_in_checkpoints(tiny_run):
    out = tiny_run.output_dir
    prompts = tiny_run.recipe.hf_mig.generation_preview_prompts
    for folder in sorted(out.glob("checkpoint-*")):
        step = int(folder.name.split("-")[1])
        records = [json.loads(x) for x in (folder / "generations.jsonl").read_text().splitlines()]
        assert [r["prompt"] for r in records] == prompts
        assert {r["step"] for r in records} == {step} and {r["event"] for r in records} == {"save"}
        assert all(0 < r["new_tokens"] <= 16 and isinstance(r["completion"], str) for r in records)
    events = {json.loads(x)["event"] for x in (out / "generations.jsonl").read_text().splitlines()}
    assert events == {"save", "evaluate"}


# ------------------------------------------------------------------------------ entry points


def test_module_entry_point_reuses_the_selection_cache(tiny_run, hf_cache, tmp_path):
    cache = tiny_run.data.cache_path
    assert tiny_run.data.cache_hit is False
    stamp = (cache / "indices.npy").stat().st_mtime_ns
    out = tmp_path / "run2"
    proc = subprocess.run(
        [sys.executable, "-m", "hf_mig.train", "--config", str(TINY), "--output_dir", str(out)]
        + ["--max_steps", "2", *QUIET, "--label_loss", "false"],
        cwd=REPO,
        env=_env(hf_cache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "selection cache hit" in proc.stderr
    assert "selection computed" not in proc.stderr
    assert (cache / "indices.npy").stat().st_mtime_ns == stamp
    assert (out / "model.safetensors").is_file()
    again = json.loads((out / "selection_manifest.json").read_text())
    assert again["cache_key"] == cache.name


def test_hf_mig_train_subcommand(tiny_run, tmp_path, capsys):
    import torch

    from hf_mig.cli.main import main

    threads = torch.get_num_threads()
    out = tmp_path / "run3"
    try:
        code = main(
            ["train", "--config", str(TINY), "--output_dir", str(out), "--max_steps", "1"] + QUIET
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert (out / "model.safetensors").is_file()
    assert (out / "selection_manifest.json").is_file()
    assert json.loads((out / "selection_manifest.json").read_text())["selection"]["k"] == 64
    capsys.readouterr()
    # the flat key, and its dotted name of the nested format, both checked before any work
    for flag in ("--selection_k", "--data.selection.k"):
        code = main(
            ["train", "--config", str(TINY), "--output_dir", str(tmp_path / "x"), flag, "0"]
        )
        assert code == 2
        assert "selection_k must be an integer >= 1, got 0" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


_DRIVER = """
import json, os, sys
import torch.distributed as dist
from hf_mig.train import main
code = main(sys.argv[1:])
state = {"rank": int(os.environ["RANK"]), "code": code, "group": dist.is_initialized()}
print("END " + json.dumps(state), flush=True)
"""


def test_torchrun_two_processes_select_on_rank_0_only(tmp_path):
    """Two ranks: rank 0 selects, rank 1 reuses; at the end both have finished the run
    (``trainer.end()``: the process group is destroyed)."""
    cache = tmp_path / "cache"  # empty: the selection must be computed, once
    out = tmp_path / "ddp"
    driver = tmp_path / "driver.py"  # main() of `python -m hf_mig.train`, then the group's state
    driver.write_text(_DRIVER)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + [str(driver), "--config", str(TINY), "--output_dir", str(out)]
        + ["--max_steps", "3", *QUIET],
        cwd=REPO,
        env=_env(cache),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ends = sorted(
        (json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("END ")),
        key=lambda state: state["rank"],
    )
    assert ends == [{"rank": r, "code": 0, "group": False} for r in (0, 1)], proc.stdout[-2000:]
    # progress bars of the other rank may share a line: match the rank prefix anywhere
    log = proc.stderr
    computed = re.findall(r"\[rank (\d)\] INFO hf_mig\.train\.data: selection computed", log)
    reused = re.findall(r"\[rank (\d)\] INFO hf_mig\.train\.data: selection cache hit", log)
    wrote = re.findall(
        r"\[rank (\d)\] INFO hf_mig\.train\.callbacks: wrote \S*selection_manifest", log
    )
    assert computed == ["0"], log[-4000:]
    assert reused == ["1"], log[-4000:]
    assert wrote and set(wrote) == {"0"}, wrote
    assert len(list((cache / "selections").glob("*/indices.npy"))) == 1
    manifest = json.loads((out / "selection_manifest.json").read_text())
    assert manifest["selection"]["k"] == 64
    assert (out / "model.safetensors").is_file()


# ------------------------------------------------------------------------------ recipes, data


def test_recipe_paths_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pool.jsonl").write_text("{}\n")
    recipe = tmp_path / "sub" / "r.yaml"
    recipe.write_text(
        "output_dir: out\nlearning_rate: 1.0e-4\nmodel_name_or_path: org/model\n"
        "pool: ${POOL_DIR:-.}/pool.jsonl\nselection_k: 3\n"
        "selection_options: {label_graph: g.npz}\n"
    )
    (tmp_path / "here.npz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    r = load_recipe(recipe, ["--num_train_epochs", "2", "--selection_k=5"])
    assert r.data.pool == str(tmp_path / "sub" / "pool.jsonl")
    assert r.data.selection.options["label_graph"] == "g.npz"  # not found: kept as given
    assert r.model.model_name_or_path == "org/model"  # a Hub id stays a Hub id
    assert r.training["num_train_epochs"] == 2.0 and r.training["learning_rate"] == 1e-4
    assert r.data.selection.k == 5 and r.training["output_dir"] == "out"
    # a path on the command line is relative to the current folder
    r = load_recipe(recipe, ["--selection_options", "{label_graph: here.npz}"])
    assert r.data.selection.options["label_graph"] == str(tmp_path / "here.npz")
    monkeypatch.setenv("POOL_DIR", str(tmp_path / "elsewhere"))
    assert load_recipe(recipe).data.pool == str(tmp_path / "elsewhere" / "pool.jsonl")


@pytest.mark.parametrize(
    ("recipe", "overrides", "message"),
    [
        ({"lerning_rate": 1}, [], "unknown key(s) ['lerning_rate']"),
        ({"learning_rate": "fast"}, [], "invalid float value"),
        ({}, ["--no_such_flag", "1"], "unknown command-line option"),
        ({"pool": "p", "selection_k": 3}, [], "exactly one of 'dataset_name'"),
        ({"dataset_name": None, "pool": "p"}, [], "selection_k must be an integer >= 1, got None"),
        ({"dataset_name": None}, [], "exactly one of 'dataset_name'"),
        ({"dtype": "int3"}, [], "dtype: auto, bfloat16"),
        ({"model_name_or_path": None}, [], "model_name_or_path is required"),
        ({"pool_format": "csv"}, [], "pool_format: one of auto, labels, mig-authors"),
        ({"selection_options": [1]}, [], "selection_options must be a mapping"),
        ({}, ["--selection_options", "[1, 2]"], "selection_options must be a mapping"),
        ({"dataset_test_split": "validation"}, [], "dataset_test_split is not read"),
        ({"label_loss_every_n_steps": 0}, [], "label_loss_every_n_steps must be an integer"),
        ({"chat_template_name": "llama3", "chat_template_path": "t.jinja"}, [], "not both"),
        (
            {"model": {"name_or_path": "m", "size": 1}, "data": {"selection": {"k": 3}}},
            [],
            "model.name_or_path -> model_name_or_path\n  model.size -> (no flat key)\n"
            "  data.selection.k -> selection_k",
        ),
        ({}, ["--model.lora", "{r: 4}"], "--model.lora: recipes are flat now"),
    ],
)
def test_recipe_errors_name_the_problem(recipe, overrides, message):
    base = {"model_name_or_path": "m", "dataset_name": "d.jsonl"}
    with pytest.raises(ValueError) as err:
        load_recipe({**base, **recipe}, overrides)
    assert message in str(err.value)


def test_dotted_flags_of_the_nested_format_still_override(tmp_path):
    """``--data.dataset X --data.pool null --data.selection null --data.shape messages`` (what
    ``hf-mig reproduce`` plans) set the flat keys: train on a ready subset instead of the pool."""
    r = load_recipe(
        TINY,
        ["--data.dataset", "runs/sub.jsonl", "--data.pool", "null", "--data.selection", "null"]
        + ["--data.shape", "messages", "--callbacks.label_loss.enabled", "false"],
    )
    assert r.data.dataset == "runs/sub.jsonl" and r.data.pool is None
    assert r.data.selection is None and r.data.shape == "messages"
    assert r.hf_mig.label_loss is False


def test_selection_cache_key_follows_content_not_paths(parity_dir, tmp_path):
    graph = tmp_path / "a" / "graph.npz"
    graph.parent.mkdir()
    graph.write_bytes((parity_dir / "label_graph_t0.9.npz").read_bytes())
    moved = tmp_path / "b.npz"
    moved.write_bytes(graph.read_bytes())

    def key(k: int, path: Path) -> str:
        config = DataConfig(pool="p", selection=SelectionSpec("mig", k, {"label_graph": str(path)}))
        return selection_key("sha256:pool", selection_spec(config))

    assert key(64, graph) == key(64, moved)
    assert key(64, graph) != key(65, graph)
    other = tmp_path / "c.npz"
    other.write_bytes((parity_dir / "label_graph_t0.7.npz").read_bytes())
    assert key(64, graph) != key(64, other)
    assert selection_key("sha256:pool", {}) != selection_key("sha256:other", {})


def test_ready_subset_in_alpaca_shape(data_dir, tmp_path):
    config = DataConfig(dataset=str(data_dir / "lima" / "lima.json"), eval_size=10)
    data = load_training_data(config)
    assert len(data.train) + len(data.eval) == 1029
    assert data.train.column_names == ["messages"]
    multi = [m for m in data.train["messages"] if len(m) > 2]
    assert multi and all(turn["role"] in ("user", "assistant") for m in multi for turn in m)
    assert data.manifest["selection"] is None
    assert data.manifest["dataset"]["rows"] == 1029
    assert data.cache_hit is None


def test_rows_without_an_assistant_turn_are_dropped_and_counted(tmp_path):
    pool = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"messages": []},
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_training_data(DataConfig(dataset=str(pool)))
    assert len(data.train) == 1
    assert data.manifest["dropped_without_assistant_turn"] == 2


def test_lora_from_trl_model_config_and_loss_per_source(tiny_run, tmp_path):
    """LoRA from TRL's ModelConfig keys (``use_peft``, ``lora_*``); ``label_loss_group_by:
    source`` logs one loss per value of the rows' ``source``."""
    pytest.importorskip("peft")
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "lora"
    lora = ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0"]
    lora += ["--lora_target_modules", "all-linear"]
    try:
        with strict_warnings():
            # peft's PeftModel reads the model's deprecated `is_gradient_checkpointing` (a call
            # of peft's, not of hf-mig's, TRL's or transformers')
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
            result = train(
                TINY,
                ["--output_dir", str(out), "--max_steps", "2", "--logging_steps", "1", *QUIET]
                + [*lora, "--label_loss_group_by", "source"],
            )
    finally:
        torch.set_num_threads(threads)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert {name.rsplit(".", 1)[-1] for name in config["target_modules"]} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    trainable = [n for n, p in result.trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # per-source loss: the training rows' sources, each a group, logged at every step
    sources = list(result.data.train_rows["source"])
    groups = json.loads((out / "label_groups.json").read_text())
    assert groups["group_by"] == "source"
    assert {g["name"]: g["rows"] for g in groups["groups"]} == {
        f"source={value}": sources.count(value) for value in set(sources)
    }
    logs = [h for h in result.trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for entry in logs:
        values = [entry[f"label_loss/{g['name']}"] for g in groups["groups"]]
        assert len(values) == 2 and all(np.isfinite(values))


def test_group_by_a_column_the_pool_lacks_is_refused_before_selecting(hf_cache, tmp_path):
    with pytest.raises(ValueError, match=r"no column\(s\) \['domain'\]"):
        train(TINY, ["--output_dir", str(tmp_path / "x"), "--label_loss_group_by", "domain"])
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------ the Hub


class ModelHub:
    """A Hub stand-in on 127.0.0.1 for model repositories, as much as ``Trainer.push_to_hub``
    uses: repository creation, card metadata validation, preupload (every file inline), NDJSON
    commits and repo info.
    ``repos[repo_id]`` is the repository's files; ``commits`` the README of each commit;
    ``unhandled`` the requests it had no answer for."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: list[tuple[str, str, bytes | None]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> ModelHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @staticmethod
    def _send(h: Any, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if status == 404:
            h.send_header("X-Error-Code", "RepoNotFound")
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: Any, method: str) -> None:
        path = unquote(urlparse(h.path).path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self._route(h, method, path, body)

    def _route(self, h: Any, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/api/agent-harnesses":  # huggingface_hub's user agent
            return self._send(h, 200, {"standardEnvVars": [], "harnesses": {}})
        if method == "GET" and path == "/api/whoami-v2":
            return self._send(h, 200, {"name": "tester", "type": "user", "orgs": []})
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body)
            name = req["name"] if "/" in req["name"] else f"tester/{req['name']}"
            self.repos.setdefault(name, {})
            return self._send(h, 200, {"url": f"{self.endpoint}/{name}", "name": name})
        if method == "POST" and path == "/api/validate-yaml":
            head = re.match(r"\A---\n(.*?)\n---\n", json.loads(body)["content"], re.S)
            if head is None or not isinstance(yaml.safe_load(head.group(1)), dict):
                return self._send(h, 400, {"error": "the card has no YAML metadata mapping"})
            return self._send(h, 200, {})
        m = re.fullmatch(
            r"/api/models/([^/]+/[^/]+)(?:/(preupload|commit|revision)/([^/]+))?", path
        )
        if m and m.group(1) in self.repos:
            repo, kind = m.group(1), m.group(2)
            if kind is None or (kind == "revision" and method == "GET"):
                files = [{"rfilename": name} for name in sorted(self.repos[repo])]
                return self._send(h, 200, {"id": repo, "sha": "0" * 40, "siblings": files})
            if kind == "preupload" and method == "POST":
                files = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in json.loads(body)["files"]
                ]
                return self._send(h, 200, {"files": files, "commitOid": "0" * 40})
            if kind == "commit" and method == "POST":
                lines = [json.loads(line) for line in body.decode().splitlines() if line]
                files = self.repos[repo]
                for line in lines:
                    if line["key"] == "file":
                        files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                    elif line["key"] != "header":
                        self.unhandled.append(("commit", line["key"]))
                header = next(x["value"] for x in lines if x["key"] == "header")
                self.commits.append((repo, header.get("summary", ""), files.get("README.md")))
                oid = hashlib.sha1(str(len(self.commits)).encode()).hexdigest()
                url = f"{self.endpoint}/{repo}/commit/{oid}"
                return self._send(h, 200, {"commitUrl": url, "commitOid": oid})
        self.unhandled.append((method, path))
        self._send(h, 404, {"error": f"not implemented by the test hub: {method} {path}"})


def test_push_to_hub_uploads_the_card_with_the_selection_section(hf_cache, tmp_path):
    """``push_to_hub: true``: the README that reaches the Hub is TRL's card with the selection
    section, and the manifest is uploaded beside the model."""
    out = tmp_path / "pushed"
    home = tmp_path / "hf_home"  # no token file of the user's is read
    with ModelHub() as hub:
        env = {
            **_env(hf_cache),
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(home),
            "HF_TOKEN": "hf_test_token_for_the_local_hub",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "hf_mig.train", "--config", str(TINY)]
            + ["--output_dir", str(out), "--max_steps", "1", *QUIET, "--label_loss", "false"]
            + ["--push_to_hub", "--hub_model_id", "tester/tiny-mig"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert hub.unhandled == []
    files = hub.repos["tester/tiny-mig"]
    assert {"README.md", "selection_manifest.json", "model.safetensors"} <= set(files)
    card = files["README.md"].decode()
    manifest = json.loads((out / "selection_manifest.json").read_text())
    assert json.loads(files["selection_manifest.json"]) == manifest
    assert card.count("## Training data selection (hf-mig)") == 1
    assert "| method | `mig` |" in card and "| k | 64 |" in card
    assert manifest["pool"]["fingerprint"] in card
    assert "TRL" in card and "- hf-mig" in card  # TRL's card, tagged, with the section
    assert card == (out / "README.md").read_text()
    assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()
    # every commit that carried a card carried the section
    readmes = [readme for _, _, readme in hub.commits if readme is not None]
    assert readmes and all(b"Training data selection (hf-mig)" in r for r in readmes)
