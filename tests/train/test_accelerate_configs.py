"""Multi-node training: the 2 x 8 GPU accelerate configs, read by accelerate itself; the Slurm
script that launches them (run with stand-in ``srun``/``accelerate``); ``--prepare_only``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "recipes" / "accelerate"
SBATCH = REPO / "recipes" / "slurm" / "train_2x8.sbatch"
RECIPE = "recipes/llama-3.1-8b/tulu3-mig-50k.yaml"

accelerate_launch = pytest.importorskip("accelerate.commands.launch")


def launch_args(argv: list[str]):
    """``accelerate launch ARGV`` as accelerate reads it: its parser, then the config file
    merged in (``_validate_launch_command``)."""
    args = accelerate_launch.launch_command_parser().parse_args(argv)
    args, defaults, _ = accelerate_launch._validate_launch_command(args)
    return args, defaults


def nested_keys_known(config) -> None:
    """Every key of the config's nested sections is an option of ``accelerate launch`` (a typo
    would be ignored silently by accelerate)."""
    dests = {a.dest for a in accelerate_launch.launch_command_parser()._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        unknown = sorted(set(getattr(config, section) or {}) - dests)
        assert not unknown, f"{section}: unknown keys {unknown}"


@pytest.mark.parametrize("name", ["zero3-2x8.yaml", "fsdp2-2x8.yaml"])
def test_two_node_configs_load_with_accelerates_loader(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(CONFIGS / name))
    assert (config.num_machines, config.num_processes, config.machine_rank) == (2, 16, 0)
    assert config.main_process_port == 29500 and config.main_process_ip is None
    assert config.mixed_precision == "bf16" and config.rdzv_backend == "static"
    nested_keys_known(config)
    if name.startswith("zero3"):
        assert config.distributed_type == DistributedType.DEEPSPEED
        ds = config.deepspeed_config
        assert ds["zero_stage"] == 3 and ds["deepspeed_multinode_launcher"] == "standard"
    else:
        assert config.distributed_type == DistributedType.FSDP
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_reshard_after_forward"] is True


def test_fsdp2_config_makes_a_fully_sharded_plugin(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _ = launch_args(
        ["--config_file", str(CONFIGS / "fsdp2-2x8.yaml"), "--machine_rank", "1",
         "--main_process_ip", "10.0.0.1", "-m", "hf_mig.train", "--config", RECIPE]
    )  # fmt: skip
    assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 16, 1)
    env = prepare_multi_gpu_env(args)
    assert env["FSDP_VERSION"] == "2" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True


def test_zero3_config_makes_a_zero3_plugin(monkeypatch):
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults = launch_args(
        ["--config_file", str(CONFIGS / "zero3-2x8.yaml"), "--machine_rank", "1",
         "--main_process_ip", "10.0.0.1", "-m", "hf_mig.train", "--config", RECIPE]
    )  # fmt: skip
    assert args.use_deepspeed and (args.num_machines, args.num_processes) == (2, 16)
    args.deepspeed_fields_from_accelerate_config = list(defaults.deepspeed_config)
    command, env = prepare_deepspeed_cmd_env(args)
    assert command is None  # the standard launcher: torchrun on each node, no pdsh
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 3 and plugin.zero3_save_16bit_model
    assert plugin.offload_param_device == "none"


RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD"], "a") as fh:
    fh.write(json.dumps({{"program": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                         "cache": os.environ.get("HF_MIG_CACHE")}}) + "\\n")
"""
# two nodes: the task runs once per node id, as srun would start it on each node
SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
for node in 0 1; do SLURM_NODEID=$node "$@" || exit $?; done
"""


def _run_sbatch(tmp_path: Path, srun: str = SRUN, **env: str) -> subprocess.CompletedProcess:
    """The sbatch script run by bash as Slurm would on the first node, with stand-ins for
    ``hf-mig``, ``accelerate`` (recording their calls in ``calls.jsonl``), ``srun`` and
    ``scontrol``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {
        "hf-mig": RECORDER.format(python=sys.executable),
        "accelerate": RECORDER.format(python=sys.executable),
        "srun": srun,
        # a long host list: a reader that stops after the first line would end it with SIGPIPE
        "scontrol": "#!/bin/bash\nprintf 'gpu-a\\ngpu-b\\n'\nseq -f gpu-%g 100000\n",
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "calls.jsonl"
    full = {
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record),
        "SLURM_JOB_NODELIST": "gpu-[a-b]", "SLURM_NNODES": "2", "SLURM_SUBMIT_DIR": str(tmp_path),
    }  # fmt: skip
    full.pop("HF_MIG_CACHE", None)
    full.pop("SLURM_CPUS_PER_TASK", None)
    return subprocess.run(
        ["bash", str(SBATCH), RECIPE, "--output_dir", "runs/x"],
        cwd=REPO, env={**full, **env}, capture_output=True, text=True,
    )  # fmt: skip


def test_sbatch_script_computes_the_selection_then_launches_each_node(tmp_path):
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    record = tmp_path / "calls.jsonl"
    done = _run_sbatch(tmp_path, SLURM_CPUS_PER_TASK="64")
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["program"] for c in calls] == ["hf-mig", "accelerate", "accelerate"]
    assert calls[0]["argv"] == ["train", "--config", RECIPE, "--prepare_only", "--output_dir",
                                "runs/x"]  # fmt: skip
    assert {c["cache"] for c in calls} == {str(tmp_path / ".hf_mig_cache")}  # one shared cache
    for rank, call in enumerate(calls[1:]):
        assert call["argv"][0] == "launch"
        args, _ = launch_args(call["argv"][1:])
        assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 16, rank)
        assert args.main_process_ip == "gpu-a" and args.main_process_port == 29500
        assert args.use_deepspeed and args.module and args.training_script == "hf_mig.train"
        assert args.training_script_args == [
            "--config", RECIPE, "--gradient_accumulation_steps", "4", "--output_dir", "runs/x"
        ]  # fmt: skip


def test_srun_is_given_the_jobs_cpus_per_task(tmp_path):
    """Since Slurm 22.05 srun does not inherit --cpus-per-task from the job."""
    srun = '#!/bin/bash\nprintf "%s\\n" "$@" > "$RECORD.srun"\n'
    for cpus, want in [("64", ["--cpus-per-task=64"]), (None, [])]:  # None: outside Slurm
        folder = tmp_path / str(cpus)
        folder.mkdir()
        env = {"SLURM_CPUS_PER_TASK": cpus} if cpus else {}
        assert _run_sbatch(folder, srun, **env).returncode == 0
        options = (folder / "calls.jsonl.srun").read_text().splitlines()
        assert options[: options.index("bash")] == ["--kill-on-bad-exit=1", *want]


def test_prepare_only_computes_the_selection_once(tmp_path, run_main, hf_mig_cache):
    recipe = REPO / "recipes" / "tiny_cpu.yaml"
    argv = ["train", "--config", recipe, "--prepare_only", "--selection_cache_dir", tmp_path / "s",
            "--output_dir", tmp_path / "run"]  # fmt: skip
    code, out, err = run_main(argv)
    assert code == 0, err
    assert "selection computed: " in out and str(tmp_path / "s") in out
    assert len([p for p in (tmp_path / "s").iterdir() if p.is_dir()]) == 1
    assert not (tmp_path / "run").exists()  # no training
    code, out, _ = run_main(argv)
    assert code == 0 and "selection reused from the cache: " in out
    code, _, err = run_main([*argv, "--export_trl_config", tmp_path / "trl"])
    assert code == 2 and "exclude each other" in err
