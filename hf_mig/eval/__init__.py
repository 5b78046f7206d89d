"""Evaluation of instruction-tuned models as in the MIG paper, and by the benchmarks' own rules.

Every benchmark is a :class:`~hf_mig.eval.base.Benchmark` registered in
:data:`~hf_mig.eval.base.BENCHMARKS`, with the steps ``generate``, ``judge``, ``score`` and
``all`` on its command line (``python -m hf_mig.eval.<module>``, ``hf-mig eval NAME``, or the thin
script in ``eval/``):

- :mod:`hf_mig.eval.alpaca_eval` — AlpacaEval 2: win rate with standard error, length-controlled
  win rate (the benchmark's GLM, :mod:`hf_mig.eval.length_control`; which variant was computed
  is always labelled).
- :mod:`hf_mig.eval.wildbench` — WildBench v2: WB-Score (task macro with the official weights)
  and WB-Reward (pairwise, optional length penalty; paper mode: three references averaged).
- :mod:`hf_mig.eval.mt_bench` — MT-Bench single-answer grading (FastChat's prompts), x10 in
  paper mode.
- :mod:`hf_mig.eval.tasks` — ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval through lm-eval (an
  optional extra) with the paper's shot counts.
- :mod:`hf_mig.eval.ifeval` — IFEval's checkers offline, and responses generated through the
  shared backends.

Shared pieces:

- :mod:`hf_mig.eval.compare` — the paper's table (Avg_obj, Avg_sub, Avg) as Markdown, CSV and a
  bar chart, from every benchmark's table cells.
- :mod:`hf_mig.eval.judge` — the judge client (any OpenAI-compatible endpoint, cached on disk)
  and FastChat's single-answer grading.
- :mod:`hf_mig.eval.generate` — resumable benchmark generation through
  :mod:`hf_mig.models.generation`'s backends.

Two scoring modes everywhere: ``official`` (the benchmark's protocol) and ``paper`` (what the MIG
paper ran through OpenCompass: plain AlpacaEval win rate with a discrete judgment, WildBench
pairwise reward against three references, MT-Bench x10, greedy decoding).
"""

from __future__ import annotations

__all__ = [
    "alpaca_eval",
    "base",
    "compare",
    "generate",
    "ifeval",
    "judge",
    "length_control",
    "mt_bench",
    "tasks",
    "wildbench",
]
