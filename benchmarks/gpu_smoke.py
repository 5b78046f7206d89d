"""GPU smoke test: generation, DEITA and IFD scoring, and a few training steps, in bf16 on CUDA.

Builds a small random Llama with a trained BPE tokenizer on the machine
(:func:`hf_mig.models.tiny.build_tiny_llama`; nothing is downloaded), then for each batch size
of ``--batch-sizes`` times the ``transformers`` generation backend and the DEITA and IFD scorers
on prompts of the bundled demo pool, printing rows/s and tokens/s, and finally runs
``hf-mig train`` on the tiny CPU recipe (``recipes/tiny_cpu.yaml``) with bf16 on the GPU for a
few steps. Without a CUDA device it exits with status 2 and says so.

``--dry-run``: the same code paths on CPU in float32, on the default tiny Llama, one batch each
and one training step (for the test suite).

    python benchmarks/gpu_smoke.py                 # on a GPU machine
    python benchmarks/gpu_smoke.py --dry-run       # anywhere, a few seconds
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: the small Llama built for a GPU run (about 40M parameters)
SMALL = {
    "vocab_size": 8192,
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, float32, tiny model, 1 batch")
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="comma-separated sweep")
    parser.add_argument("--rows", type=int, default=256, help="prompts per measurement")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps")
    parser.add_argument("--workdir", help="where the model and training run go (default: temp)")
    parser.add_argument("--skip-train", action="store_true", help="no training steps")
    return parser


def _conversations(rows: int) -> list[list[dict[str, str]]]:
    """``rows`` conversations of the bundled demo pool (repeated when it has fewer)."""
    from hf_mig import load_pool
    from hf_mig.data.resources import demo_pool_path

    pool = load_pool(demo_pool_path())
    messages = [list(m) for m in pool["messages"]]
    return [messages[i % len(messages)] for i in range(rows)]


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def _row(name: str, batch: int, rows: int, tokens: int, seconds: float) -> None:
    print(
        f"{name:<10} batch {batch:>4}  {rows:>5} rows  {seconds:8.2f} s  "
        f"{rows / seconds:9.1f} rows/s  {tokens / seconds:11.1f} tokens/s",
        flush=True,
    )


def bench_generation(model: str, convs: list, batch: int, dtype: str, device: str, new: int) -> int:
    """Time the transformers backend on the user turns of ``convs``; return the rows that failed."""
    from hf_mig.models.generation.transformers_backend import TransformersBackend

    backend = TransformersBackend(
        model, device=device, dtype=dtype, batch_size=batch, progress=False
    )
    prompts = [[m for m in c if m["role"] != "assistant"][:1] for c in convs]
    backend.generate(prompts[:batch], max_new_tokens=4)  # load and warm up
    results, seconds = _timed(lambda: backend.generate(prompts, max_new_tokens=new))
    tokens = sum(r.completion_tokens or 0 for r in results)
    _row("generate", batch, len(prompts), tokens, seconds)
    return sum(1 for r in results if r.error)


def bench_scorer(
    name: str, model: str, convs: list, batch: int, dtype: str, device: str, tokens: int
) -> int:
    """Time scorer ``name`` (deita or ifd) on ``convs``; return the rows without a score."""
    from hf_mig.annotate.base import get_scorer

    options = {"model": model, "batch_size": batch, "dtype": dtype, "device": device}
    scorer = get_scorer(name, **options)
    scorer({"messages": convs[:batch]})  # load and warm up
    out, seconds = _timed(lambda: scorer({"messages": convs}))
    column = "score" if name == "deita" else "ifd"
    _row(name, batch, len(convs), tokens, seconds)
    return sum(1 for v in out[column] if v is None)


def _token_count(model: str, convs: list) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return sum(len(tokenizer("\n".join(m["content"] for m in c))["input_ids"]) for c in convs)


def train(model: str, out: Path, steps: int, cpu: bool) -> float:
    """``hf-mig train`` on the tiny recipe for ``steps`` steps; return its seconds."""
    precision = ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32"]
    if not cpu:
        precision = ["--use_cpu", "false", "--bf16", "true", "--dtype", "bfloat16"]
    command = [
        sys.executable, "-m", "hf_mig", "train",
        "--config", str(REPO / "recipes" / "tiny_cpu.yaml"),
        "--output_dir", str(out),
        "--model_name_or_path", model,
        "--max_steps", str(steps),
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--generation_preview", "false",
        *precision,
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from hf_mig.models.tiny import TINY_MODEL_ID, build_tiny_llama, resolve_model_path

    if not args.dry_run and not torch.cuda.is_available():
        print(
            "gpu_smoke: error: no CUDA device is visible (torch.cuda.is_available() is False); "
            "run on a GPU machine, or pass --dry-run for the CPU check",
            file=sys.stderr,
        )
        return 2
    device, dtype = ("cpu", "float32") if args.dry_run else ("cuda:0", "bfloat16")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rows = args.rows
    with tempfile.TemporaryDirectory(prefix="hf-mig-gpu-smoke-") as tmp:
        work = Path(args.workdir or tmp)
        if args.dry_run:
            model = resolve_model_path(TINY_MODEL_ID)
            batches, rows = batches[:1], batches[0]
            args.max_new_tokens = min(args.max_new_tokens, 8)
        else:
            print(f"device: {torch.cuda.get_device_name(0)}; building a small Llama", flush=True)
            model = str(build_tiny_llama(work / "small-llama", flavour="llama3", **SMALL))
        convs = _conversations(rows)
        tokens = _token_count(model, convs)
        failed = 0
        for batch in batches:
            failed += bench_generation(model, convs, batch, dtype, device, args.max_new_tokens)
            for name in ("deita", "ifd"):
                failed += bench_scorer(name, model, convs, batch, dtype, device, tokens)
        if not args.skip_train:
            steps = 1 if args.dry_run else args.train_steps
            seconds = train(model, work / "train", steps, cpu=args.dry_run)
            print(f"train      {steps} steps in {seconds:.1f} s (including start-up)")
    if failed:
        print(f"gpu_smoke: error: {failed} row(s) failed or got no score", file=sys.stderr)
        return 1
    print("gpu_smoke: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
