"""Time estimates for the steps of a reproduction plan (estimates, not measurements).

Every number here is derived from token counts and FLOPs, with the assumptions named below, so a
plan can say before anything runs roughly how many GPU-hours each step needs:

- Training: ``hours = tokens x FLOP/token x padding / (GPUs x peak x MFU)``, tokens = epochs x
  rows x mean conversation length; FLOP/token = 8 N for full fine-tuning (6 N forward and backward
  plus 2 N recomputation under gradient checkpointing), 6 N for LoRA; padding overhead 1.3 (no
  packing); H100 SXM dense bf16 peak 989 TFLOP/s; MFU 0.35 with ZeRO-3 on 8 GPUs, 0.40 on one.
- Scoring with a forward pass only (DEITA scorers, IFD, embeddings): 2 N FLOP/token at MFU 0.40.
- Generation (tagging, benchmark answers, judges): the prompt as a forward pass, plus decoding at
  :data:`DECODE_TOKENS_PER_S` output tokens per second for an 8B model on one H100 under vLLM's
  continuous batching, scaled by 8B / N for other sizes.
- A fixed :data:`STARTUP_HOURS` per GPU job (loading weights, compiling kernels).

An A100 80GB (312 TFLOP/s) takes about :data:`A100_FACTOR` times as long.
"""

from __future__ import annotations

__all__ = [
    "A100_FACTOR",
    "DECODE_TOKENS_PER_S",
    "H100_PEAK",
    "PADDING",
    "STARTUP_HOURS",
    "forward_hours",
    "generation_hours",
    "train_hours",
]

H100_PEAK = 989e12
A100_FACTOR = 989 / 312
PADDING = 1.3
FORWARD_MFU = 0.40
DECODE_TOKENS_PER_S = 2500.0
STARTUP_HOURS = 0.05


def train_hours(
    params: float, rows: int, mean_tokens: int, gpus: int, *, lora: bool = False, epochs: int = 3
) -> float:
    """Estimated wall-clock hours of SFT on H100 SXM (see the module docstring)."""
    tokens = epochs * rows * mean_tokens
    per_token = (6 if lora else 8) * params
    mfu = 0.40 if gpus == 1 else 0.35
    return tokens * per_token * PADDING / (gpus * H100_PEAK * mfu) / 3600


def forward_hours(params: float, tokens: float, gpus: int = 1) -> float:
    """Estimated wall-clock hours of forward passes over ``tokens`` tokens (no generation)."""
    return STARTUP_HOURS + 2 * params * tokens * PADDING / (gpus * H100_PEAK * FORWARD_MFU) / 3600


def generation_hours(
    params: float, prompts: int, prompt_tokens: float, output_tokens: float, gpus: int = 1
) -> float:
    """Estimated wall-clock hours to answer ``prompts`` prompts (prefill + decoding)."""
    prefill = 2 * params * prompts * prompt_tokens / (gpus * H100_PEAK * FORWARD_MFU)
    rate = DECODE_TOKENS_PER_S * (8e9 / params) * gpus
    return STARTUP_HOURS + (prefill + prompts * output_tokens / rate) / 3600
