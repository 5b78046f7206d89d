"""hf-mig recipes and TRL's launchers.

* every recipe is read by TRL's own ``TrlParser`` with TRL's ``SFTConfig``, ``ModelConfig``,
  ``ScriptArguments`` and hf-mig's ``HfMigArguments``, without a FutureWarning or
  DeprecationWarning from hf_mig, trl or transformers;
* ``trl sft --config RECIPE`` refuses the hf-mig keys (it hands them to ``accelerate launch``);
* the export of a recipe (``python -m hf_mig.train --export_trl_config DIR``) holds the MIG
  selection and a config with TRL's keys only, and ``trl sft --config DIR/sft.yaml`` trains on
  it: a real two-step run through TRL's launcher.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

import hf_mig
from hf_mig.train import load_recipe, main, make_parser
from hf_mig.train.config import HfMigArguments, hf_mig_fields, recipe_fields
from hf_mig.train.templates import TEMPLATES

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
TINY = RECIPES / "tiny_cpu.yaml"
ALL = sorted(p for p in RECIPES.rglob("*.yaml") if p.parent.name != "accelerate")


@contextlib.contextmanager
def strict_warnings():
    """FutureWarning / DeprecationWarning raised from hf_mig, trl or transformers are errors."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings(
                "error", category=category, module=r"(hf_mig|trl|transformers)(\.|$)"
            )
        yield


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf_mig_cache")
    old = os.environ.get("HF_MIG_CACHE")
    os.environ["HF_MIG_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HF_MIG_CACHE", None)
    else:
        os.environ["HF_MIG_CACHE"] = old


def test_the_recipe_set():
    assert len(ALL) == 28 and TINY in ALL


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_trl_parser_takes_every_key_of_every_recipe(path):
    """TRL's ``set_defaults_with_config`` (what ``parse_args_and_config`` does with a config
    file) consumes every key: nothing is left over for TRL to refuse or forward."""
    raw = yaml.safe_load(path.read_text())
    raw.pop("env", None)
    parser = make_parser()
    assert parser.set_defaults_with_config(**raw) == []
    fields = recipe_fields()
    trl = {name for key in ("SFTConfig", "ModelConfig", "ScriptArguments") for name in fields[key]}
    assert set(raw) <= trl | set(hf_mig_fields())
    assert not set(hf_mig_fields()) & trl  # no name is both TRL's and hf-mig's


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_recipes_load_without_deprecation_warnings(path):
    with strict_warnings():
        recipe = load_recipe(path)
        # bf16 is lifted for the GPU recipes only because this machine may have no GPU
        changes = {} if path == TINY else {"bf16": False, "use_cpu": True}
        config = recipe.sft_config(**changes)
    assert config.activation_checkpointing is (path != TINY)
    assert config.gradient_checkpointing is config.activation_checkpointing


def test_a_deprecated_key_of_the_users_own_still_warns():
    """Only the default is given under its current name; a recipe's own deprecated key keeps
    TRL's warning (it is the user's to update)."""
    recipe = load_recipe(
        {"model_name_or_path": "m", "dataset_name": "d.jsonl", "gradient_checkpointing": False}
    )
    with pytest.warns(FutureWarning, match="gradient_checkpointing"):
        config = recipe.sft_config(use_cpu=True, bf16=False)
    assert config.activation_checkpointing is False


def test_trl_parse_args_and_config_reads_the_tiny_recipe(monkeypatch):
    """TRL's own entry (``parse_args_and_config``, unknown keys refused) on the tiny recipe."""
    from trl import ModelConfig, ScriptArguments, SFTConfig

    for name in ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM"):  # restored after the test
        monkeypatch.delenv(name, raising=False)

    with strict_warnings():
        parsed = make_parser().parse_args_and_config(["--config", str(TINY), "--max_steps", "2"])
    sft, model, script, hf = parsed
    assert isinstance(sft, SFTConfig) and isinstance(model, ModelConfig)
    assert isinstance(script, ScriptArguments) and isinstance(hf, HfMigArguments)
    assert sft.max_steps == 2 and sft.assistant_only_loss and sft.activation_checkpointing is False
    assert model.model_name_or_path == "hf-mig:tiny-llama" and model.dtype == "float32"
    assert (hf.pool, hf.selection_method, hf.selection_k) == ("hf-mig:demo-annotated", "mig", 64)
    assert hf.selection_options == {"label_graph": "hf-mig:demo-graph"}
    assert hf.chat_template_name == "llama3" and hf.eval_size == 8
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # env: exported by TRL's parser


def _trl_command() -> list[str]:
    script = Path(sys.executable).parent / "trl"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "trl.cli.main"]


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_MIG_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def test_trl_sft_refuses_the_hf_mig_keys(hf_cache, tmp_path):
    """Why the export exists: ``trl sft`` hands keys its dataclasses lack to ``accelerate
    launch``, which refuses them before any training."""
    proc = subprocess.run(
        [*_trl_command(), "sft", "--config", str(TINY), "--output_dir", str(tmp_path / "out")]
        + ["--max_steps", "1"],
        cwd=tmp_path,
        env=_env(hf_cache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "unrecognized arguments: --chat_template_name" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_export_then_trl_sft_trains_on_the_mig_selection(
    hf_cache, tmp_path, demo_annotated, demo_graph
):
    export = tmp_path / "export"
    with strict_warnings():
        assert main(["--config", str(TINY), "--export_trl_config", str(export)]) == 0
    # the rows: exactly the MIG selection of the pool, split 56 / 8 as the recipe says
    pool = hf_mig.load_pool(demo_annotated)
    picked = hf_mig.get_selector("mig", 64, label_graph=str(demo_graph)).select_indices(pool)
    expected = sorted(json.dumps(pool[int(i)]["messages"], sort_keys=True) for i in picked)
    rows = {
        split: [
            json.loads(line)["messages"] for line in (export / "data" / f"{split}.jsonl").open()
        ]
        for split in ("train", "test")
    }
    assert (len(rows["train"]), len(rows["test"])) == (56, 8)
    exported = sorted(json.dumps(m, sort_keys=True) for m in rows["train"] + rows["test"])
    assert exported == expected
    manifest = json.loads((export / "selection_manifest.json").read_text())
    assert manifest["selection"]["k"] == 64 and manifest["training_rows"] == 56
    assert (export / "chat_template.jinja").read_text() == TEMPLATES["llama3"].template

    # the config: TRL's keys only; TRL's sft command leaves nothing for accelerate
    from trl.scripts.sft import make_parser as trl_sft_parser

    config = yaml.safe_load((export / "sft.yaml").read_text())
    fields = recipe_fields()
    trl_keys = {n for k in ("SFTConfig", "ModelConfig", "ScriptArguments") for n in fields[k]}
    assert set(config) - {"env"} <= trl_keys
    assert config["dataset_name"] == str(export / "data")
    assert config["chat_template_path"] == str(export / "chat_template.jinja")
    assert config["eos_token"] == "<|eot_id|>" and config["assistant_only_loss"] is True
    assert Path(config["model_name_or_path"]).is_dir()  # hf-mig:tiny-llama, built
    *_, left_in_config, left_on_line = trl_sft_parser().parse_args_and_config(
        ["--config", str(export / "sft.yaml")],
        return_remaining_strings=True,
        separate_remaining_strings=True,
    )
    assert left_in_config == [] and left_on_line == []

    # TRL's launcher trains on it
    out = tmp_path / "trl_run"
    proc = subprocess.run(
        [*_trl_command(), "sft", "--config", str(export / "sft.yaml")]
        + ["--output_dir", str(out), "--max_steps", "2", "--logging_steps", "1"],
        cwd=tmp_path,
        env=_env(hf_cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)
    assert (out / "model.safetensors").is_file()
    assert (out / "chat_template.jinja").read_text() == TEMPLATES["llama3"].template


def test_export_refuses_an_existing_folder_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_MIG_CACHE", str(tmp_path / "cache"))
    export = tmp_path / "export"
    export.mkdir()
    (export / "notes.txt").write_text("mine")
    assert main(["--config", str(TINY), "--export_trl_config", str(export)]) == 2
    assert "never replaced" in capsys.readouterr().err
    assert [p.name for p in export.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "cache" / "selections").exists()  # refused before selecting
