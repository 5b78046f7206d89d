"""Objective benchmarks of the MIG paper: ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval.

**What the paper ran.** The authors' evaluation config (``eval/eval_objective.py`` in their
repository) uses OpenCompass with greedy decoding (TurboMind, ``top_k=1``, at most 4096 new
tokens) and these datasets, all through the model's chat template:

=========  ==========================================  ========  ================================
column     OpenCompass config                          shots     metric
=========  ==========================================  ========  ================================
ARC-c      ``ARC_c_cot_gen_926652``                    0 (CoT)   accuracy
BBH        ``bbh_gen_5b92b0``                          3 (CoT)   mean accuracy over the 27 tasks
GSM8K      ``gsm8k_0shot_v2_gen_a58960``               0         accuracy
HumanEval  ``humaneval_gen_8e312c``                    0         pass@1
MMLU       ``mmlu_gen_4d595a``                         5         mean accuracy over the 57 subjects
IFEval     ``IFEval_gen_3321a3``                       0         prompt-level strict accuracy
=========  ==========================================  ========  ================================

**What this module runs.** lm-evaluation-harness (``lm-eval``), an OPTIONAL extra (never
imported at module level): :data:`LM_EVAL_TASKS` maps each column to the closest lm-eval task
with the paper's shot count. They are equivalents, not the same prompts: OpenCompass and lm-eval
phrase the prompts and extract answers differently (MMLU in particular is scored by
log-likelihood in lm-eval's ``mmlu`` task, by generation in OpenCompass), so absolute numbers
can differ by a few points; compare models under one harness.

**IFEval** is also scored offline, without lm-eval, by :mod:`hf_mig.eval.ifeval`: ``score
--ifeval-input --ifeval-responses`` fills ``scores["IFEval"]`` from given responses when no
lm-eval result gives it, and ``ifeval`` generates the responses first.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_mig.eval.base import (
    Benchmark,
    add_no_judge_step,
    is_number,
    read_jsonl,
    register_benchmark,
    write_result,
)
from hf_mig.eval.ifeval import (
    IFEval,
    add_ifeval_result,
    add_run_args,
    add_score_args,
    format_ifeval,
    ifeval_score,
)

__all__ = [
    "LM_EVAL_TASKS",
    "PAPER_SETUP",
    "PaperSetup",
    "Tasks",
    "lm_eval_commands",
    "main",
    "run_lm_eval",
    "score_objective",
    "scores_from_lm_eval",
]


@dataclass(frozen=True)
class PaperSetup:
    """One objective benchmark as the paper evaluated it, and its lm-eval equivalent."""

    column: str
    opencompass_config: str
    shots: int
    paper_metric: str
    lm_eval_task: str
    lm_eval_metric: str
    note: str = ""


PAPER_SETUP: tuple[PaperSetup, ...] = (
    PaperSetup("ARC-c", "ARC_c_cot_gen_926652", 0, "accuracy (0-shot CoT, generation)",
               "arc_challenge_chat", "exact_match,remove_whitespace",
               "lm-eval's Llama-3-style generative ARC-Challenge"),
    PaperSetup("BBH", "bbh_gen_5b92b0", 3, "mean accuracy, 3-shot CoT",
               "bbh_cot_fewshot", "exact_match,get-answer"),
    PaperSetup("GSM8K", "gsm8k_0shot_v2_gen_a58960", 0, "accuracy, 0-shot",
               "gsm8k_cot_zeroshot", "exact_match,flexible-extract"),
    PaperSetup("HumanEval", "humaneval_gen_8e312c", 0, "pass@1, 0-shot",
               "humaneval_instruct", "pass@1,create_test",
               "runs generated code: needs HF_ALLOW_CODE_EVAL=1 and --confirm_run_unsafe_code"),
    PaperSetup("MMLU", "mmlu_gen_4d595a", 5, "mean accuracy, 5-shot (generation)",
               "mmlu", "acc,none", "lm-eval scores MMLU by log-likelihood"),
    PaperSetup("IFEval", "IFEval_gen_3321a3", 0, "prompt-level strict accuracy",
               "ifeval", "prompt_level_strict_acc,none"),
)  # fmt: skip
LM_EVAL_TASKS = {s.column: s for s in PAPER_SETUP}
LM_EVAL_HINT = 'lm-eval is an optional extra: pip install "lm-eval[ifeval]" (then re-run)'


def lm_eval_commands(
    model: str,
    out_dir: str | Path,
    *,
    backend: str = "hf",
    batch_size: str = "auto",
    columns: Sequence[str] = tuple(LM_EVAL_TASKS),
    max_gen_toks: int = 4096,
) -> list[list[str]]:
    """The ``lm_eval`` command lines (one per benchmark: the shot counts differ) that evaluate
    ``model`` with the paper's settings: chat template, few-shot examples as turns, greedy."""
    cmds = []
    for col in columns:
        s = LM_EVAL_TASKS[col]
        cmd = [
            "lm_eval", "--model", backend,
            "--model_args", f"pretrained={model}",
            "--tasks", s.lm_eval_task,
            "--num_fewshot", str(s.shots),
            "--apply_chat_template", "--fewshot_as_multiturn",
            "--gen_kwargs", f"do_sample=False,temperature=0,max_gen_toks={max_gen_toks}",
            "--batch_size", batch_size,
            "--output_path", str(Path(out_dir) / col),
        ]  # fmt: skip
        if col == "HumanEval":
            cmd.append("--confirm_run_unsafe_code")
        cmds.append(cmd)
    return cmds


def scores_from_lm_eval(results: dict[str, Any]) -> dict[str, float]:
    """Table columns (percent) from an lm-eval results JSON (``results`` and ``groups``)."""
    merged: dict[str, dict[str, Any]] = {}
    for section in ("results", "groups"):
        for task, metrics in (results.get(section) or {}).items():
            merged.setdefault(task, {}).update(metrics)
    out = {}
    for col, s in LM_EVAL_TASKS.items():
        value = merged.get(s.lm_eval_task, {}).get(s.lm_eval_metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[col] = 100.0 * float(value)
    return out


# --------------------------------------------------------------------------------------------
# command line


def run_lm_eval(args: argparse.Namespace) -> list[Path]:
    """Run (or with ``--dry-run`` print) :func:`lm_eval_commands`; the results files written.
    ``SystemExit`` with the install hint when ``lm_eval`` is not installed."""
    cmds = lm_eval_commands(args.model, args.out_dir, backend=args.backend, columns=args.columns)
    if getattr(args, "dry_run", False):
        for c in cmds:
            print(" ".join(c))
        return []
    if shutil.which("lm_eval") is None:
        raise SystemExit(LM_EVAL_HINT)
    for c in cmds:
        print("+", " ".join(c))
        subprocess.run(c, check=True)
    return sorted(Path(args.out_dir).rglob("results*.json"))


def score_objective(paths: Sequence[str | Path], args: argparse.Namespace) -> dict[str, Any]:
    """The objective result (``benchmark: "objective"``): the table columns of the lm-eval
    results ``paths``, and IFEval scored offline when ``args`` names ``ifeval_input`` and
    ``ifeval_responses``; printed, and written to ``args.out`` when given."""
    scores: dict[str, float] = {}
    for path in paths:
        scores.update(scores_from_lm_eval(json.loads(Path(path).read_text())))
    out: dict[str, Any] = {"benchmark": "objective", "model": args.model_name, "scores": scores}
    if getattr(args, "ifeval_input", None) and getattr(args, "ifeval_responses", None):
        res = ifeval_score(read_jsonl(args.ifeval_input), read_jsonl(args.ifeval_responses))
        print(format_ifeval(res))
        add_ifeval_result(out, res)
    for col in LM_EVAL_TASKS:
        if col in scores:
            print(f"  {col:10s} {scores[col]:6.2f}")
    if getattr(args, "out", None):
        write_result(args.out, out)
    return out


def _add_lm_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--backend", default="hf", help="lm-eval model type: hf or vllm")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--columns", nargs="*", default=list(LM_EVAL_TASKS))


@register_benchmark("tasks")
class Tasks(Benchmark):
    """The objective columns through lm-eval (an optional extra), and IFEval offline."""

    description = "objective benchmarks"
    prog = "tasks.py"
    result_benchmark = "objective"
    judged = False

    def add_steps(self, sub: argparse._SubParsersAction) -> None:
        p_gen = sub.add_parser(
            "generate", help="run lm-eval for the six benchmarks (optional extra 'lm-eval')"
        )
        _add_lm_eval_args(p_gen)
        p_gen.add_argument("--dry-run", action="store_true", help="print the commands only")
        add_no_judge_step(sub, "(no judge: objective benchmarks are rule-scored)")
        p_score = sub.add_parser("score", help="table columns from lm-eval results / IFEval files")
        add_score_args(p_score)
        p_if = sub.add_parser(
            "ifeval",
            help="IFEval without lm-eval: generate responses with a backend, score them offline",
        )
        add_run_args(p_if)
        p_all = sub.add_parser("all", help="generate (lm-eval) then score")
        _add_lm_eval_args(p_all)
        p_all.add_argument("--model-name")

    def extra_steps(self) -> dict[str, Callable[[argparse.Namespace], int]]:
        return {"ifeval": IFEval().run_all}

    def generate(self, args: argparse.Namespace) -> list[Path]:
        return run_lm_eval(args)

    def judge(self, args: argparse.Namespace) -> None:
        print("objective benchmarks are scored by rules; there is no judge step")

    def score(self, args: argparse.Namespace) -> dict[str, Any]:
        return score_objective(args.lm_eval_results, args)

    def run_all(self, args: argparse.Namespace) -> int:
        paths = run_lm_eval(args)
        args.model_name = args.model_name or Path(args.model.rstrip("/")).name
        args.out = str(Path(args.out_dir) / "objective.json")
        score_objective(paths, args)
        return 0

    def table_cells(self, result: Mapping[str, Any]) -> dict[str, float]:
        """The columns of an objective result, or of lm-eval's own results JSON."""
        if result.get("benchmark") == "objective":
            return {k: float(v) for k, v in result.get("scores", {}).items() if is_number(v)}
        if "results" in result and "configs" in result:
            return scores_from_lm_eval(dict(result))
        return {}


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/tasks.py`` argument parser (one subcommand per step)."""
    return Tasks().build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/tasks.py`` and ``python -m hf_mig.eval.tasks``; returns the exit
    status."""
    return Tasks().main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
