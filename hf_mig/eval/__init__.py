"""Evaluation of instruction-tuned models as in the MIG paper, and by the benchmarks' own rules.

Modules (each also a thin script in ``eval/`` with the subcommands ``generate``, ``judge``,
``score`` and ``all``):

- :mod:`hf_mig.eval.alpaca_eval` — AlpacaEval 2: win rate with standard error, length-controlled
  win rate (the benchmark's GLM; which variant was computed is always labelled).
- :mod:`hf_mig.eval.wildbench` — WildBench v2: WB-Score (task macro with the official weights)
  and WB-Reward (pairwise, optional length penalty; paper mode: three references averaged).
- :mod:`hf_mig.eval.mt_bench` — MT-Bench single-answer grading (FastChat's prompts), x10 in
  paper mode.
- :mod:`hf_mig.eval.objective` — ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval through lm-eval (an
  optional extra) with the paper's shot counts; offline IFEval checkers.
- :mod:`hf_mig.eval.compare` — the paper's table (Avg_obj, Avg_sub, Avg) as Markdown, CSV and a
  bar chart.
- :mod:`hf_mig.eval.judge` — the judge client (any OpenAI-compatible endpoint, cached on disk).
- :mod:`hf_mig.eval.generate` — resumable benchmark generation through
  :mod:`hf_mig.models.generation`'s backends.

Two scoring modes everywhere: ``official`` (the benchmark's protocol) and ``paper`` (what the MIG
paper ran through OpenCompass: plain AlpacaEval win rate with a discrete judgment, WildBench
pairwise reward against three references, MT-Bench x10, greedy decoding).
"""

from __future__ import annotations

__all__ = ["alpaca_eval", "compare", "generate", "judge", "mt_bench", "objective", "wildbench"]
