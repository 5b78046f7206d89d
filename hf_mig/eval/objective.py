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

**IFEval offline.** :func:`ifeval_score` implements the IFEval instruction checkers that can be
written faithfully with the standard library (:data:`IFEVAL_COVERED`); the others need
``langdetect`` (language and English-case checks) or NLTK's ``word_tokenize`` and IFEval's own
sentence splitter, and are reported as not covered unless ``langdetect`` is installed (then the
three language checks are covered too). Prompt-level strict accuracy is given over the prompts
whose instructions are all covered, plus the bounds it implies for all prompts.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "IFEVAL_COVERED",
    "IFEVAL_NOT_COVERED",
    "LM_EVAL_TASKS",
    "PAPER_SETUP",
    "IFEvalResult",
    "check_instruction",
    "ifeval_score",
    "lm_eval_commands",
    "main",
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
# IFEval instruction checkers (strict: the response as given)


def _relation(count: int, relation: str, n: int) -> bool:
    if relation == "less than":
        return count < n
    if relation == "at least":
        return count >= n
    raise ValueError(f"unknown relation {relation!r}")


def _no_comma(r: str, kw: dict) -> bool:
    return "," not in r


def _number_words(r: str, kw: dict) -> bool:
    return _relation(len(re.findall(r"\w+", r)), kw["relation"], kw["num_words"])


def _number_paragraphs(r: str, kw: dict) -> bool:
    # paragraphs are separated by the markdown divider ***; empty leading / trailing pieces
    # are not paragraphs, an empty piece inside fails
    parts = re.split(r"\s?\*\*\*\s?", r)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == kw["num_paragraphs"]


def _nth_paragraph_first_word(r: str, kw: dict) -> bool:
    parts = re.split(r"\n\n", r)
    count = sum(1 for p in parts if p.strip())
    nth = kw["nth_paragraph"]
    if nth > count:
        return False
    para = parts[nth - 1].strip()
    if not para:
        return False
    word = para.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in ".,?!'\"":
            break
        first += ch.lower()
    return count == kw["num_paragraphs"] and first == kw["first_word"].lower()


def _number_placeholders(r: str, kw: dict) -> bool:
    return len(re.findall(r"\[.*?\]", r)) >= kw["num_placeholders"]


def _postscript(r: str, kw: dict) -> bool:
    marker = kw["postscript_marker"].strip().lower()
    if marker == "p.s.":
        pattern = r"\s*p\.\s?s\..*$"
    elif marker == "p.p.s":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    else:
        pattern = r"\s*" + marker + r".*$"
    return bool(re.findall(pattern, r.lower(), flags=re.MULTILINE))


def _number_bullet_lists(r: str, kw: dict) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", r, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", r, flags=re.MULTILINE)
    return len(stars) + len(dashes) == kw["num_bullets"]


def _constrained_response(r: str, kw: dict) -> bool:
    r = r.strip()
    return any(o in r for o in ("My answer is yes.", "My answer is no.", "My answer is maybe."))


def _number_highlighted_sections(r: str, kw: dict) -> bool:
    n = sum(1 for h in re.findall(r"\*[^\n\*]*\*", r) if h.strip("*").strip())
    n += sum(
        1
        for h in re.findall(r"\*\*[^\n\*]*\*\*", r)
        if h.removeprefix("**").removesuffix("**").strip()
    )
    return n >= kw["num_highlights"]


def _multiple_sections(r: str, kw: dict) -> bool:
    pattern = r"\s?" + kw["section_spliter"] + r"\s?\d+\s?"
    return len(re.split(pattern, r)) - 1 >= kw["num_sections"]


def _json_format(r: str, kw: dict) -> bool:
    v = r.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        v = v.removeprefix(prefix)
    v = v.removesuffix("```").strip()
    try:
        json.loads(v)
    except ValueError:
        return False
    return True


def _title(r: str, kw: dict) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", r))


def _two_responses(r: str, kw: dict) -> bool:
    parts = r.split("******")
    kept = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            kept.append(part)
    return len(kept) == 2 and kept[0].strip() != kept[1].strip()


def _repeat_prompt(r: str, kw: dict) -> bool:
    return r.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def _end_checker(r: str, kw: dict) -> bool:
    return r.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())


def _quotation(r: str, kw: dict) -> bool:
    v = r.strip()
    return len(v) > 1 and v[0] == '"' and v[-1] == '"'


def _existence(r: str, kw: dict) -> bool:
    return all(re.search(k, r, flags=re.IGNORECASE) for k in kw["keywords"])


def _forbidden_words(r: str, kw: dict) -> bool:
    return not any(
        re.search(r"\b" + w + r"\b", r, flags=re.IGNORECASE) for w in kw["forbidden_words"]
    )


def _frequency(r: str, kw: dict) -> bool:
    count = len(re.findall(kw["keyword"], r, flags=re.IGNORECASE))
    return _relation(count, kw["relation"], kw["frequency"])


def _letter_frequency(r: str, kw: dict) -> bool:
    count = collections.Counter(r.lower())[kw["letter"].lower()]
    return _relation(count, kw["let_relation"], kw["let_frequency"])


def _detect_language(text: str) -> str | None:
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return "unknown"


def _english_lowercase(r: str, kw: dict) -> bool:
    return r.islower() and _detect_language(r) == "en"


def _english_capital(r: str, kw: dict) -> bool:
    return r.isupper() and _detect_language(r) == "en"


def _response_language(r: str, kw: dict) -> bool:
    return _detect_language(r) == kw["language"]


Checker = Callable[[str, dict], bool]

_CHECKERS: dict[str, Checker] = {
    "punctuation:no_comma": _no_comma,
    "length_constraints:number_words": _number_words,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": _number_placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _number_bullet_lists,
    "detectable_format:constrained_response": _constrained_response,
    "detectable_format:number_highlighted_sections": _number_highlighted_sections,
    "detectable_format:multiple_sections": _multiple_sections,
    "detectable_format:json_format": _json_format,
    "detectable_format:title": _title,
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": _repeat_prompt,
    "startend:end_checker": _end_checker,
    "startend:quotation": _quotation,
    "keywords:existence": _existence,
    "keywords:forbidden_words": _forbidden_words,
    "keywords:frequency": _frequency,
    "keywords:letter_frequency": _letter_frequency,
}
_LANGDETECT_CHECKERS: dict[str, Checker] = {
    "change_case:english_lowercase": _english_lowercase,
    "change_case:english_capital": _english_capital,
    "language:response_language": _response_language,
}
#: Instruction ids checked with the standard library only.
IFEVAL_COVERED = tuple(sorted(_CHECKERS))
#: Instruction ids not checked here (with the reason).
IFEVAL_NOT_COVERED = {
    "change_case:english_lowercase": "needs langdetect",
    "change_case:english_capital": "needs langdetect",
    "language:response_language": "needs langdetect",
    "change_case:capital_word_frequency": "needs NLTK's word_tokenize (punkt data)",
    "length_constraints:number_sentences": "needs IFEval's own sentence splitter",
}


def _langdetect_available() -> bool:
    try:
        import langdetect  # noqa: F401
    except ImportError:
        return False
    return True


def covered_ids() -> tuple[str, ...]:
    """Instruction ids :func:`check_instruction` can check in this environment."""
    ids = set(_CHECKERS)
    if _langdetect_available():
        ids |= set(_LANGDETECT_CHECKERS)
    return tuple(sorted(ids))


def check_instruction(instruction_id: str, response: str, kwargs: dict | None) -> bool | None:
    """Strict check of one instruction (an empty response never follows); None when the
    instruction id is not covered here."""
    checker = _CHECKERS.get(instruction_id)
    if checker is None and _langdetect_available():
        checker = _LANGDETECT_CHECKERS.get(instruction_id)
    if checker is None:
        return None
    kw = {k: v for k, v in (kwargs or {}).items() if v is not None}
    return bool(response.strip()) and checker(response, kw)


@dataclass
class IFEvalResult:
    """IFEval strict scores over the covered prompts, with bounds over all prompts."""

    n_prompts: int
    n_prompts_covered: int
    prompt_strict_covered: float  # percent, over fully covered prompts
    instruction_strict_covered: float  # percent, over covered instructions
    prompt_strict_lower: float  # all prompts, uncovered instructions counted as failed
    prompt_strict_upper: float  # all prompts, uncovered instructions counted as followed
    covered_ids: list[str]
    not_covered: dict[str, str]
    per_instruction: dict[str, tuple[int, int]] = field(default_factory=dict)
    unmatched: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        out = dict(self.__dict__)
        out["per_instruction"] = {k: list(v) for k, v in self.per_instruction.items()}
        return out


def ifeval_score(
    inputs: Sequence[dict[str, Any]], responses: Sequence[dict[str, Any]]
) -> IFEvalResult:
    """Strict IFEval accuracy of ``responses`` (``prompt``, ``response``) on ``inputs``
    (``prompt``, ``instruction_id_list``, ``kwargs``), matched by prompt text.

    A prompt counts as followed when every one of its instructions is. Prompts with an
    instruction that is not covered, and prompts without a response of exactly that text
    (listed in ``unmatched``), are excluded from the ``*_covered`` accuracies and enter the
    bounds as failed (lower) or followed (upper)."""
    by_prompt = {r["prompt"]: r["response"] for r in responses}
    cov = set(covered_ids())
    n_cov = followed_cov = lower = upper = 0
    inst_total = inst_ok = 0
    per: dict[str, list[int]] = {}
    unmatched: list[Any] = []
    for item in inputs:
        if item["prompt"] not in by_prompt:
            unmatched.append(item.get("key"))
            upper += 1  # unknown: followed in the upper bound, failed in the lower one
            continue
        response = by_prompt[item["prompt"]]
        results = []
        for iid, kw in zip(item["instruction_id_list"], item["kwargs"]):
            ok = check_instruction(iid, response, kw) if iid in cov else None
            results.append(ok)
            if ok is not None:
                inst_total += 1
                inst_ok += ok
                stat = per.setdefault(iid, [0, 0])
                stat[0] += ok
                stat[1] += 1
        known = [r for r in results if r is not None]
        all_known_ok = all(known)
        if len(known) == len(results):
            n_cov += 1
            followed_cov += all_known_ok
            lower += all_known_ok
            upper += all_known_ok
        else:
            upper += all_known_ok
    n = len(inputs)
    return IFEvalResult(
        n_prompts=n,
        n_prompts_covered=n_cov,
        prompt_strict_covered=100.0 * followed_cov / n_cov if n_cov else math.nan,
        instruction_strict_covered=100.0 * inst_ok / inst_total if inst_total else math.nan,
        prompt_strict_lower=100.0 * lower / n,
        prompt_strict_upper=100.0 * upper / n,
        covered_ids=sorted(cov),
        not_covered={k: v for k, v in IFEVAL_NOT_COVERED.items() if k not in cov},
        per_instruction={k: (v[0], v[1]) for k, v in sorted(per.items())},
        unmatched=unmatched,
    )


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/objective.py`` argument parser."""
    p = argparse.ArgumentParser(prog="objective.py", description="objective benchmarks")
    sub = p.add_subparsers(dest="command", required=True)
    p_gen = sub.add_parser(
        "generate", help="run lm-eval for the six benchmarks (optional extra 'lm-eval')"
    )
    p_gen.add_argument("--model", required=True)
    p_gen.add_argument("--backend", default="hf", help="lm-eval model type: hf or vllm")
    p_gen.add_argument("--out-dir", required=True)
    p_gen.add_argument("--columns", nargs="*", default=list(LM_EVAL_TASKS))
    p_gen.add_argument("--dry-run", action="store_true", help="print the commands only")
    p_judge = sub.add_parser("judge", help="(no judge: objective benchmarks are rule-scored)")
    p_judge.add_argument("rest", nargs="*")
    p_score = sub.add_parser("score", help="table columns from lm-eval results / IFEval files")
    p_score.add_argument("--lm-eval-results", nargs="*", default=[], help="lm-eval results JSON")
    p_score.add_argument("--ifeval-input", help="IFEval input_data.jsonl")
    p_score.add_argument("--ifeval-responses", help="IFEval responses jsonl (prompt, response)")
    p_score.add_argument("--model-name", default="model")
    p_score.add_argument("--out")
    p_all = sub.add_parser("all", help="generate (lm-eval) then score")
    p_all.add_argument("--model", required=True)
    p_all.add_argument("--backend", default="hf")
    p_all.add_argument("--out-dir", required=True)
    p_all.add_argument("--columns", nargs="*", default=list(LM_EVAL_TASKS))
    p_all.add_argument("--model-name")
    return p


def _run_lm_eval(args: argparse.Namespace) -> list[Path]:
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


def _score(paths: Sequence[str | Path], args: argparse.Namespace) -> dict[str, Any]:
    scores: dict[str, float] = {}
    for path in paths:
        scores.update(scores_from_lm_eval(json.loads(Path(path).read_text())))
    out: dict[str, Any] = {"benchmark": "objective", "model": args.model_name, "scores": scores}
    if getattr(args, "ifeval_input", None) and getattr(args, "ifeval_responses", None):
        res = ifeval_score(_read_jsonl(args.ifeval_input), _read_jsonl(args.ifeval_responses))
        out["ifeval_offline"] = res.to_dict()
        print(
            f"IFEval strict prompt-level: {res.prompt_strict_covered:.2f}% over "
            f"{res.n_prompts_covered}/{res.n_prompts} fully covered prompts "
            f"(all prompts: between {res.prompt_strict_lower:.2f}% and "
            f"{res.prompt_strict_upper:.2f}%); not covered: {sorted(res.not_covered)}"
        )
    for col in LM_EVAL_TASKS:
        if col in scores:
            print(f"  {col:10s} {scores[col]:6.2f}")
    if getattr(args, "out", None):
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/objective.py``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        _run_lm_eval(args)
    elif args.command == "judge":
        print("objective benchmarks are scored by rules; there is no judge step")
    elif args.command == "score":
        _score(args.lm_eval_results, args)
    else:
        paths = _run_lm_eval(args)
        args.model_name = args.model_name or Path(args.model.rstrip("/")).name
        args.out = str(Path(args.out_dir) / "objective.json")
        _score(paths, args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
