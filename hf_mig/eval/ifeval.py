"""IFEval: instruction-following accuracy by IFEval's own checkers, offline.

**IFEval offline.** :func:`ifeval_score` implements IFEval's instruction checkers with the
standard library (:data:`IFEVAL_COVERED`), and the three language checks (English lower / upper
case, response language) when ``langdetect`` is installed (the ``eval`` extra); without it
those are reported as not covered. Upstream counts all-capital words with NLTK's
``word_tokenize`` and sentences with NLTK's Punkt model, which need NLTK's data; here
:func:`ifeval_word_tokenize` reproduces the word boundaries with regular expressions and
:func:`ifeval_split_sentences` applies the rules of IFEval's ``split_into_sentences`` plus
Punkt's boundary conditions. On the 540 GPT-4 responses of IFEval's demo data both agree with
NLTK on every pass / fail decision (the capital-word count on every response). Prompt-level
strict accuracy is given over the prompts whose instructions are all covered, plus the bounds
it implies for all prompts.

**IFEval without lm-eval.** ``python -m hf_mig.eval.ifeval ifeval --model M --out-dir
D`` generates the responses
itself through the shared generation backends (:mod:`hf_mig.eval.generate`: the model's chat
template, greedy, 1024 new tokens unless ``--max-new-tokens``, resumable through a progress file
in ``D``), scores them with :func:`ifeval_score` and writes ``D/objective.json`` with
``scores["IFEval"]`` (prompt-level strict accuracy over the fully covered prompts, percent), so
:mod:`hf_mig.eval.compare` shows an IFEval column. ``score --ifeval-input --ifeval-responses``
fills ``scores["IFEval"]`` the same way when no lm-eval result gives it.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.eval.base import (
    Benchmark,
    add_no_judge_step,
    is_number,
    read_jsonl,
    register_benchmark,
)
from hf_mig.eval.ifeval_text import ifeval_split_sentences, ifeval_word_tokenize

__all__ = [
    "IFEVAL_COVERED",
    "IFEVAL_HUB_DATASET",
    "IFEVAL_NOT_COVERED",
    "IFEval",
    "IFEvalResult",
    "add_ifeval_result",
    "check_instruction",
    "format_ifeval",
    "generate_ifeval",
    "ifeval_metric_text",
    "ifeval_score",
    "ifeval_split_sentences",
    "ifeval_word_tokenize",
    "load_ifeval_inputs",
    "main",
]

_read_jsonl = read_jsonl


# --------------------------------------------------------------------------------------------
# instruction checkers (strict: the response as given)


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


def _capital_word_frequency(r: str, kw: dict) -> bool:
    # upstream: nltk.word_tokenize, then count the tokens with str.isupper() (at least one cased
    # character and no lower-case one: "NASA", "U.S.", "COVID-19", "I", "N'T")
    count = sum(1 for w in ifeval_word_tokenize(r) if w.isupper())
    return _relation(count, kw["capital_relation"], kw["capital_frequency"])


def _number_sentences(r: str, kw: dict) -> bool:
    return _relation(len(ifeval_split_sentences(r)), kw["relation"], kw["num_sentences"])


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
    "change_case:capital_word_frequency": _capital_word_frequency,
    "length_constraints:number_sentences": _number_sentences,
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


def ifeval_metric_text(res: IFEvalResult) -> str:
    """What ``scores["IFEval"]`` (``res.prompt_strict_covered``) is, in one sentence: prompt-level
    strict accuracy over the ``n_prompts`` prompts by the offline checkers, and how many prompts
    were fully covered (with the excluded ones and the all-prompt bounds when not all were)."""
    n, n_cov = res.n_prompts, res.n_prompts_covered
    text = (
        f"prompt-level strict accuracy over the {n} IFEval prompts, scored by the offline "
        f"checkers of hf_mig.eval.ifeval.ifeval_score"
    )
    if n_cov == n:
        return text + f"; all {n} prompts fully covered"
    reasons = []
    if res.unmatched:
        reasons.append(f"{len(res.unmatched)} without a response")
    uncovered = n - n_cov - len(res.unmatched)
    if uncovered:
        ids = ", ".join(sorted(res.not_covered))
        reasons.append(f"{uncovered} with an instruction not checked here ({ids})")
    return text + (
        f"; only {n_cov} of {n} prompts fully covered ({'; '.join(reasons)}): the score is over "
        f"those {n_cov}; over all {n} it lies between {res.prompt_strict_lower:.2f} and "
        f"{res.prompt_strict_upper:.2f}"
    )


def add_ifeval_result(out: dict[str, Any], res: IFEvalResult) -> None:
    """Put ``res`` into a result dict: ``ifeval_offline`` and ``ifeval_metric`` (what the IFEval
    value is) always; ``scores["IFEval"]`` unless ``scores`` already has one (from lm-eval) or no
    prompt was fully covered (no number to give)."""
    out["ifeval_offline"] = res.to_dict()
    scores = out.setdefault("scores", {})
    if "IFEval" in scores:
        out["ifeval_metric"] = (
            "lm-eval's ifeval task (prompt_level_strict_acc); the offline scoring of the "
            "given responses is under ifeval_offline"
        )
    elif res.n_prompts_covered and math.isfinite(res.prompt_strict_covered):
        scores["IFEval"] = res.prompt_strict_covered
        out["ifeval_metric"] = ifeval_metric_text(res)
    else:
        out["ifeval_metric"] = "no IFEval score: " + ifeval_metric_text(res)


#: The Hub dataset with IFEval's 541 prompts (``key``, ``prompt``, ``instruction_id_list``,
#: ``kwargs``), used when no ``--input`` file is given.
IFEVAL_HUB_DATASET = "google/IFEval"
#: Default generation budget of the ``ifeval`` command.
IFEVAL_MAX_NEW_TOKENS = 1024


def load_ifeval_inputs(path: str | Path | None = None) -> list[dict[str, Any]]:
    """IFEval's prompts as dicts with ``key``, ``prompt``, ``instruction_id_list`` and ``kwargs``.

    ``path``: a local JSON-lines file in IFEval's ``input_data.jsonl`` format; ``None``: the Hub
    dataset ``google/IFEval`` (train split) through ``datasets.load_dataset`` (needs the network
    or the datasets cache; ``SystemExit`` with a hint otherwise). ``ValueError`` when a record
    lacks a field or two records share a prompt (responses are matched by prompt text)."""
    if path is not None:
        rows = read_jsonl(path)
        source = str(path)
    else:
        try:
            from datasets import load_dataset

            rows = [dict(r) for r in load_dataset(IFEVAL_HUB_DATASET, split="train")]
        except Exception as err:
            raise SystemExit(
                f"could not load the Hub dataset {IFEVAL_HUB_DATASET} ({type(err).__name__}: "
                f"{err}); pass --input input_data.jsonl"
            ) from err
        source = IFEVAL_HUB_DATASET
    seen: set[str] = set()
    for i, row in enumerate(rows):
        missing = [k for k in ("prompt", "instruction_id_list", "kwargs") if k not in row]
        if missing:
            raise ValueError(f"{source}: record {i} lacks {missing}")
        if row["prompt"] in seen:
            raise ValueError(f"{source}: record {i} repeats an earlier prompt")
        seen.add(row["prompt"])
        row.setdefault("key", i)
    return rows


def generate_ifeval(
    backend: Any,
    inputs: Sequence[dict[str, Any]],
    out_dir: str | Path,
    *,
    max_new_tokens: int = IFEVAL_MAX_NEW_TOKENS,
    chunk_size: int = 32,
) -> tuple[list[dict[str, str]] | None, Any]:
    """Generate a response to every IFEval prompt: one user turn, the model's chat template,
    greedy, ``max_new_tokens`` at most.

    Progress goes to ``<out_dir>/ifeval_responses.progress.jsonl`` (keyed by the input's
    ``key``; a re-run generates only what is missing). When every prompt has a response,
    ``<out_dir>/ifeval_responses.jsonl`` is written (``prompt``, ``response``; input order) and
    the responses are returned; otherwise ``None``. The second value is the
    :class:`~hf_mig.eval.generate.GenerationReport`."""
    from hf_mig.eval.generate import GenerationItem, generate_incremental

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = [
        GenerationItem(str(r["key"]), [{"role": "user", "content": r["prompt"]}], max_new_tokens)
        for r in inputs
    ]
    done, report = generate_incremental(
        backend, items, out / "ifeval_responses.progress.jsonl", chunk_size=chunk_size
    )
    if not all(it.key in done for it in items):
        return None, report
    responses = [
        {"prompt": r["prompt"], "response": done[it.key]["output"]} for r, it in zip(inputs, items)
    ]
    with open(out / "ifeval_responses.jsonl", "w", encoding="utf-8") as fh:
        for rec in responses:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return responses, report


# --------------------------------------------------------------------------------------------
# command line


def format_ifeval(res: IFEvalResult) -> str:
    """One line: strict prompt-level accuracy over the covered prompts, bounds, not covered."""
    return (
        f"IFEval strict prompt-level: {res.prompt_strict_covered:.2f}% over "
        f"{res.n_prompts_covered}/{res.n_prompts} fully covered prompts "
        f"(all prompts: between {res.prompt_strict_lower:.2f}% and "
        f"{res.prompt_strict_upper:.2f}%); not covered: {sorted(res.not_covered)}"
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Options of a run that generates the responses: the generation options, ``--input``,
    ``--limit`` and ``--out-dir``."""
    from hf_mig.eval.generate import add_generation_args

    add_generation_args(p)
    p.add_argument(
        "--input",
        help="IFEval input_data.jsonl (prompt, instruction_id_list, kwargs, key); default: the "
        f"Hub dataset {IFEVAL_HUB_DATASET}, train split",
    )
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument(
        "--out-dir",
        required=True,
        help="gets ifeval_responses.jsonl, its progress file and objective.json",
    )


def add_score_args(p: argparse.ArgumentParser) -> None:
    """Options of the objective result's ``score``: lm-eval results and IFEval files."""
    p.add_argument("--lm-eval-results", nargs="*", default=[], help="lm-eval results JSON")
    p.add_argument("--ifeval-input", help="IFEval input_data.jsonl")
    p.add_argument("--ifeval-responses", help="IFEval responses jsonl (prompt, response)")
    p.add_argument("--model-name", default="model")
    p.add_argument("--out")


def _inputs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    return load_ifeval_inputs(args.input)[: args.limit]


@register_benchmark("ifeval")
class IFEval(Benchmark):
    """IFEval: responses through the shared backends, scored by the offline checkers into
    ``objective.json`` (``scores["IFEval"]``)."""

    description = "IFEval: generate responses, score them with the offline checkers"
    prog = "ifeval.py"
    result_benchmark = "objective"
    judged = False
    items = "prompts"

    def add_steps(self, sub: argparse._SubParsersAction) -> None:
        p_gen = sub.add_parser(
            "generate", help="responses to the IFEval prompts (ifeval_responses.jsonl)"
        )
        add_run_args(p_gen)
        add_no_judge_step(sub, "(no judge: IFEval is rule-scored)")
        p_score = sub.add_parser("score", help="table columns from IFEval files / lm-eval results")
        add_score_args(p_score)
        p_all = sub.add_parser(
            "all",
            aliases=["ifeval"],
            help="generate responses with a backend, score them offline, write objective.json",
        )
        add_run_args(p_all)

    def extra_steps(self) -> dict[str, Callable[[argparse.Namespace], int]]:
        return {"ifeval": self.run_all}

    def generate_outputs(self, backend: Any, args: argparse.Namespace, model_id: str) -> Any:
        max_new_tokens = args.max_new_tokens or IFEVAL_MAX_NEW_TOKENS
        _, report = generate_ifeval(
            backend,
            _inputs(args),
            args.out_dir,
            max_new_tokens=max_new_tokens,
            chunk_size=args.chunk_size,
        )
        return report

    def judge(self, args: argparse.Namespace) -> None:
        print("IFEval is scored by rules; there is no judge step")

    def score(self, args: argparse.Namespace) -> dict[str, Any]:
        from hf_mig.eval.tasks import score_objective

        return score_objective(args.lm_eval_results, args)

    def run_all(self, args: argparse.Namespace) -> int:
        """Generate (resumable), score offline, write ``objective.json``; 1 when some prompts
        still lack a response (nothing scored; re-run to retry them)."""
        from hf_mig.eval.generate import backend_from_args, generator_name

        inputs = _inputs(args)
        max_new_tokens = args.max_new_tokens or IFEVAL_MAX_NEW_TOKENS
        backend = backend_from_args(args)
        out_dir = Path(args.out_dir)
        responses, report = generate_ifeval(
            backend, inputs, out_dir, max_new_tokens=max_new_tokens, chunk_size=args.chunk_size
        )
        print(f"generation: {report.summary()}")
        if responses is None:
            print(
                f"generation incomplete; re-run to retry the failed {self.items} (nothing scored)"
            )
            return 1
        res = ifeval_score(inputs, responses)
        print(format_ifeval(res))
        out: dict[str, Any] = {
            "benchmark": "objective",
            "model": generator_name(args),
            "scores": {},
        }
        add_ifeval_result(out, res)
        out["ifeval_generation"] = {
            "backend": backend.describe(),
            "input": args.input or IFEVAL_HUB_DATASET,
            "n_prompts": len(inputs),
            "max_new_tokens": max_new_tokens,
            "decoding": "greedy, the model's chat template",
        }
        (out_dir / "objective.json").write_text(json.dumps(out, indent=2))
        value = out["scores"].get("IFEval", math.nan)
        print(f"  IFEval     {value:6.2f}  -> {out_dir / 'objective.json'}")
        return 0

    def table_cells(self, result: Mapping[str, Any]) -> dict[str, float]:
        """``IFEval`` of an objective result, when it has one."""
        value = result.get("scores", {}).get("IFEval")
        if result.get("benchmark") == "objective" and is_number(value):
            return {"IFEval": float(value)}
        return {}


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/ifeval.py`` argument parser (one subcommand per step)."""
    return IFEval().build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/ifeval.py`` and ``python -m hf_mig.eval.ifeval``; returns the exit
    status. ``ifeval`` (or ``all``) generates and scores; ``score`` scores given responses."""
    return IFEval().main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
