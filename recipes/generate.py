"""Write the paper's training recipes (YAML) from one table of settings.

    python recipes/generate.py            # rewrite recipes/<model>/*.yaml
    python recipes/generate.py --check    # exit 1 if a committed recipe differs from the table

The recipes are committed; this script only keeps 27 files consistent. Settings come from the
MIG paper as summarised in the project's SPEC (section 4): full fine-tuning, bf16, DeepSpeed
ZeRO-3, global batch 128 (per-device batch x gradient accumulation x 8 GPUs), linear schedule,
3 epochs, loss on assistant tokens only, no packing; Tulu 3 and its baselines: lr 5e-6, warmup
0.03, max length 4096; OpenHermes 2.5: lr 7e-6, warmup 0.01; DEITA pool: lr 2e-5, warmup 0.1,
max length 2048.

Time estimates (written into each recipe) are estimates, not measurements:
``hours = tokens x FLOP/token x padding / (GPUs x peak x MFU)`` with tokens = epochs x rows x the
assumed mean conversation length below, FLOP/token = 8 N for full fine-tuning (6 N for forward and
backward plus 2 N for recomputing activations under gradient checkpointing) and 6 N for LoRA
(forward, activation gradients, recomputation; no weight gradients for the frozen weights),
padding overhead 1.3 (no packing), H100 SXM dense bf16 peak 989 TFLOP/s, MFU 0.35 with ZeRO-3
on 8 GPUs and 0.40 on one GPU. A100 80GB (312 TFLOP/s) takes about 3.2x as long.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

H100_PEAK = 989e12
A100_FACTOR = 989 / 312
PADDING = 1.3


@dataclass(frozen=True)
class Model:
    slug: str
    hub_id: str
    params: float
    template: str
    eos_token: str | None
    why_template: str


MODELS = {
    "llama": Model(
        "llama-3.1-8b",
        "meta-llama/Llama-3.1-8B",
        8.03e9,
        "llama3",
        "<|eot_id|>",
        "llama3, as in the paper",
    ),
    "qwen": Model(
        "qwen2.5-7b",
        "Qwen/Qwen2.5-7B",
        7.62e9,
        "qwen2.5",
        "<|im_end|>",
        "ChatML (Qwen2.5-Instruct's format; its tokens are already in the base vocabulary)",
    ),
    "mistral": Model(
        "mistral-7b-v0.3",
        "mistralai/Mistral-7B-v0.3",
        7.25e9,
        "mistral-v0.3",
        None,
        "Mistral v3 [INST] format (Mistral-7B-Instruct-v0.3's; [INST] is a v3 control token)",
    ),
}


@dataclass(frozen=True)
class Pool:
    slug: str
    title: str
    path: str
    rows: str
    vocabulary: str
    graph: str
    k: int
    lr: float
    warmup: float
    max_length: int
    per_device: int
    accumulation: int
    mean_tokens: int
    tags: int


POOLS = {
    "tulu3": Pool(
        "tulu3",
        "Tulu 3 SFT mixture",
        "pools/tulu3-939k-annotated.jsonl",
        "939K",
        "hf-mig:instag",
        "graphs/tulu3-instag4531-e5mistral-t0.9.npz",
        50_000,
        5.0e-6,
        0.03,
        4096,
        2,
        8,
        1000,
        4531,
    ),
    "openhermes": Pool(
        "openhermes2.5",
        "OpenHermes 2.5",
        "pools/openhermes2.5-1m-annotated.jsonl",
        "1M",
        "pools/openhermes2.5-tags.json",
        "graphs/openhermes2.5-tags5166-e5mistral-t0.9.npz",
        50_000,
        7.0e-6,
        0.01,
        4096,
        2,
        8,
        450,
        5166,
    ),
    "deita": Pool(
        "deita-pool",
        "DEITA 'sota' pool",
        "pools/deita-sota-306k-annotated.jsonl",
        "306K",
        "pools/deita-sota-tags.json",
        "graphs/deita-sota-tags3059-e5mistral-t0.9.npz",
        6_000,
        2.0e-5,
        0.1,
        2048,
        4,
        4,
        1100,
        3059,
    ),
}

#: Baselines at 50K on Tulu 3 (SPEC section 4) and the selector options that encode them.
METHODS: dict[str, tuple[dict, str]] = {
    "mig": (
        {"phi": "pow", "phi_a": 1.0e-6, "phi_b": 0.8, "prop_weight": 1.0, "norm": False},
        "MIG: label graph of E5-Mistral-7B tag embeddings at T = 0.9, phi = (x + 1e-6)^0.8",
    ),
    "random": ({"seed": 42}, "Random (seed 42, Python's random.Random(42).sample)"),
    "ifd": ({"column": "ifd_score.content"}, "IFD: top IFD within [0, 1]"),
    "instag": ({}, "#InsTag: complexity-first tag coverage"),
    "deita": ({"threshold": 0.9}, "DEITA: score-first with a cosine repr filter at 0.9"),
    "car": ({"seed": 42}, "CaR: top overall + top per k-means cluster"),
    "qdit": ({"alpha": 0.7}, "QDIT: facility-location diversity + quality, alpha = 0.7"),
    "zip": ({}, "ZIP: compression-ratio greedy"),
}

RELEASED = {
    ("tulu3", m): f"xsample/tulu-3-{m}-50k"
    for m in ("mig", "random", "ifd", "instag", "deita", "car", "qdit", "zip")
}
RELEASED[("openhermes", "mig")] = "xsample/openhermes-2.5-mig-50k"
RELEASED[("deita", "mig")] = "xsample/deita-sota-mig-6k"


def hours(model: Model, pool: Pool, gpus: int, lora: bool, epochs: int = 3) -> float:
    """Estimated wall-clock hours on H100 SXM (see the module docstring)."""
    tokens = epochs * pool.k * pool.mean_tokens
    per_token = (6 if lora else 8) * model.params
    mfu = 0.40 if gpus == 1 else 0.35
    return tokens * per_token * PADDING / (gpus * H100_PEAK * mfu) / 3600


def _fmt_hours(h: float) -> str:
    return f"{h:.1f} h" if h < 10 else f"{h:.0f} h"


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        text = f"{value:.1e}" if value < 1e-3 else repr(value)
        return text.replace("e-0", "e-")
    if isinstance(value, str):
        special = any(c in value for c in ":#{}[]<>|,'\"") or value.lower() in ("yes", "no", "on")
        return f'"{value}"' if special else value
    return str(value)


def render(model_key: str, pool_key: str, method: str, *, lora: bool = False) -> tuple[str, str]:
    """(relative path, YAML text) of one recipe."""
    model, pool = MODELS[model_key], POOLS[pool_key]
    options, description = METHODS[method]
    gpus = 1 if lora else 8
    per_device, accumulation = (2, 64) if lora else (pool.per_device, pool.accumulation)
    assert per_device * accumulation * gpus == 128
    size = f"{pool.k // 1000}k"
    name = f"{pool.slug}-{method}-{size}" + ("-lora-1gpu" if lora else "")
    rel = f"{model.slug}/{name}.yaml"
    est = hours(model, pool, gpus, lora)
    tokens = 3 * pool.k * pool.mean_tokens
    lr = 1.0e-4 if lora else pool.lr
    if lora:
        launch = f"python -m hf_mig.train --config recipes/{rel}"
        hardware = "1 GPU with 80 GB (H100 / A100 80GB)"
    else:
        launch = (
            "accelerate launch --config_file recipes/accelerate/zero3.yaml \\\n"
            f"#       -m hf_mig.train --config recipes/{rel}"
        )
        hardware = "8 GPUs with 80 GB each (H100 / A100 80GB), one node"
    released = RELEASED.get((pool_key, method))
    vocab_file = pool.vocabulary
    if vocab_file == "hf-mig:instag":
        vocab_file = "hf_mig/data/instag_vocabulary.json"
    lines = [
        f"# {model.hub_id} on {pool.title} ({pool.rows}) -> {pool.k:,} rows selected by "
        f"{method.upper() if method != 'instag' else '#InsTag'}",
        "# Generated by recipes/generate.py from the MIG paper's settings (SPEC section 4);",
        "# edit the table there, not this file.",
        "#",
        f"# gpus: {gpus}",
        f"# expects: {hardware};",
        f"#   about {_fmt_hours(est)} on H100"
        f" (about {_fmt_hours(est * A100_FACTOR)} on A100 80GB).",
        f"#   ESTIMATE, not measured: 3 epochs x {pool.k:,} rows x ~{pool.mean_tokens:,} tokens "
        f"(assumed mean) = {tokens / 1e6:,.0f}M tokens;",
        f"#   {6 if lora else 8} x {model.params / 1e9:.2f}B FLOP/token, x1.3 padding, "
        f"MFU {'0.40' if lora else '0.35'} of 989 TFLOP/s (see recipes/generate.py).",
        "#",
        "# Launch from the repository root:",
        f"#   {launch}",
        "#   (overrides: append e.g. --output_dir DIR --data.selection.k 1000)",
        "#",
        f"# Selection: {description}.",
        f"# Pool: {pool.path}",
        f"#   = the {pool.title} pool annotated as in the paper, in the MIG authors' record",
        "#   format (dialogs, annotation.instag.content, annotation.deita.*, ifd_score.content).",
        "#   Paths are relative to this file's folder, then the current folder.",
    ]
    if pool.vocabulary != "hf-mig:instag":
        lines += [
            f"# Vocabulary: {pool.vocabulary}",
            f"#   = the pool's tag list ({pool.tags:,} tags in the paper; not shipped).",
        ]
    if method == "mig":
        lines += [
            f"# Label graph: {pool.graph}, built once with",
            f"#   hf-mig graph --vocabulary {vocab_file} \\",
            "#       --embedder intfloat/e5-mistral-7b-instruct --threshold 0.9 \\",
            f"#       --out {pool.graph}",
        ]
    if released:
        lines += [
            "# The authors' released subset of this run can replace the pool + selection:",
            f"#   data: {{dataset: {released}}}",
        ]
    if lora:
        lines += [
            "# Variant: LoRA on a single GPU.",
            "# LoRA (r 64, alpha 128, all linear layers) instead of full fine-tuning, so lr 1e-4:",
            "#   LoRA needs a larger step than the paper's full-fine-tuning 5e-6 (deviation).",
        ]
    lines += [
        "# Chat template (see hf_mig/train/templates.py):",
        f"#   {model.why_template}.",
        "",
        "# --- trl.SFTConfig ---",
        f"output_dir: runs/{model.slug}/{name}",
        "bf16: true",
        "num_train_epochs: 3",
        f"learning_rate: {_yaml_value(lr)}",
        "lr_scheduler_type: linear",
        f"warmup_steps: {pool.warmup}  # a value < 1 is a ratio of the total steps",
        "weight_decay: 0.0",
        f"per_device_train_batch_size: {per_device}",
        f"gradient_accumulation_steps: {accumulation}  # x {per_device} x {gpus} GPU"
        + ("s" if gpus > 1 else "")
        + " = 128",
        f"max_length: {pool.max_length}",
        "packing: false",
        "assistant_only_loss: true",
        "gradient_checkpointing: true",
        "logging_steps: 10",
        "save_strategy: epoch",
        "save_only_model: true",
        "report_to: none",
        "seed: 42",
        "dataset_num_proc: 16",
    ]
    if model.eos_token:
        lines.append(f"eos_token: {_yaml_value(model.eos_token)}")
    lines += [
        "",
        "model:",
        f"  name_or_path: {model.hub_id}",
        f"  chat_template: {model.template}",
        "  dtype: bfloat16",
        "  attn_implementation: sdpa",
    ]
    if lora:
        lines += [
            "  lora:",
            "    r: 64",
            "    alpha: 128",
            "    dropout: 0.05",
            "    target_modules: all-linear",
        ]
    lines += [
        "",
        "data:",
        f"  pool: {pool.path}",
        "  pool_format: mig-authors",
        f"  vocabulary: {pool.vocabulary}",
        "  score_reduce: mean",
        "  selection:",
        f"    method: {method}",
        f"    k: {pool.k}",
    ]
    opts = dict(options)
    if method == "mig":
        opts = {"label_graph": pool.graph, **opts}
    if opts:
        lines.append("    options:")
        lines += [f"      {key}: {_yaml_value(value)}" for key, value in opts.items()]
    else:
        lines.append("    options: {}")
    lines += [
        "",
        "callbacks:",
        "  selection_manifest: true",
        "  label_loss:",
        "    group_by: top_labels",
        "    num_groups: 8",
        "    rows_per_group: 8",
        "    every_n_steps: 50",
        "    max_length: 2048",
        "  generation_preview:",
        "    max_new_tokens: 256",
        "    at: save",
        "",
    ]
    return rel, "\n".join(lines)


def all_recipes() -> dict[str, str]:
    """Every paper recipe: {path relative to recipes/: YAML text}."""
    out: dict[str, str] = {}
    for model_key in MODELS:
        for method in METHODS:
            rel, text = render(model_key, "tulu3", method)
            out[rel] = text
    for pool_key in ("openhermes", "deita"):
        rel, text = render("llama", pool_key, "mig")
        out[rel] = text
    rel, text = render("llama", "tulu3", "mig", lora=True)
    out[rel] = text
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default here)")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in all_recipes().items():
        path = args.out / rel
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    print(f"{len(all_recipes())} recipes {'checked' if args.check else 'written'} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
