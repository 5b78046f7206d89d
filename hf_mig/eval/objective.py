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

**IFEval without lm-eval.** ``objective.py ifeval --model M --out-dir D`` generates the responses
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
    "generate_ifeval",
    "ifeval_metric_text",
    "ifeval_score",
    "ifeval_split_sentences",
    "ifeval_word_tokenize",
    "lm_eval_commands",
    "load_ifeval_inputs",
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


# ---- words and sentences as IFEval counts them, without NLTK data

# NLTK's ``word_tokenize`` (the Treebank conventions IFEval's capital-word check relies on)
# always puts these in tokens of their own: straight, curly and angle quotes, runs of
# backticks, brackets, ``; @ # $ % &``, ``? !``, ``*``, the figure / en / em dashes and the
# horizontal bar (U+2012-2015), runs of two or more periods, ``--`` and a pair of single
# quotes. A comma or colon is separated unless a digit follows (``3,000``, ``10:30`` stay).
_WORD_SPLIT = re.compile(
    r"""(''|`+|\.{2,}|--|[:,](?!\d)|["“”‘’«»„()\[\]{}<>;@#$%&?!*\u2012-\u2015])"""
)
# Clitics split off the end of a word (Treebank): 's 'm 'd and a bare ' in any case, then
# 'll 're 've n't in lower or upper case only (DON'T -> DO N'T, Don't -> Do n't, but N't stays).
_CLITIC_ANY_CASE = re.compile(r"(?<=[^' ])('[sSmMdD]|')$")
_CLITIC_PAIRED_CASE = re.compile(r"(?<=[^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T)$")
# An opening single quote before a word that is not itself a clitic ('em, 'Hello).
_OPENING_QUOTE = re.compile(r"^'(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", re.IGNORECASE)
# Fused words the Treebank conventions split in two (cannot -> can not, gonna -> gon na, ...).
# ('tis and 'twas are on NLTK's list too, but its opening-quote rule separates the quote first.)
_FUSED = re.compile(
    r"\b(can)(not)\b|\b(d)('ye)\b|\b(gim)(me)\b|\b(gon)(na)\b|\b(got)(ta)\b|\b(lem)(me)\b"
    r"|\b(more)('n)\b|\b(wan)(na)$",
    re.IGNORECASE,
)
_CLOSERS = set(")]}>\"'»”’")
_NOT_FINAL = {"mr", "mrs", "ms", "dr", "st", "prof", "inc", "ltd", "jr", "sr", "co", "vs"}


def _ends_sentence(word: str, next_chunk: str) -> bool:
    """Whether the period ending ``word`` ends a sentence (as Punkt would mostly judge): not
    after a title or company suffix, a single letter or an abbreviation with inner periods
    (``U.S.``; but ``e.g. i.e. P.S. P.P.S.`` do end one), nor after a number when a lower-case
    word follows (a list ordinal)."""
    if len(word) < 2 or not word.endswith(".") or word.endswith(".."):
        return False
    if not next_chunk:  # the end of the text ends a sentence
        return True
    stem = word[:-1].lower()
    if stem in ("e.g", "i.e", "p.s", "p.p.s"):  # not abbreviations for Punkt
        return True
    if "." in stem or stem in _NOT_FINAL or (len(stem) == 1 and stem.isalpha()):
        return False
    return not (stem.isdigit() and next_chunk[:1].islower())


def _split_word(piece: str) -> list[str]:
    """One run of word characters and inner punctuation -> its Treebank tokens."""
    out: list[str] = []
    m = _OPENING_QUOTE.match(piece)
    if m:
        out.append("'")
        piece = piece[1:]
    tail: list[str] = []
    for clitic in (_CLITIC_ANY_CASE, _CLITIC_PAIRED_CASE):
        m = clitic.search(piece)
        if m:
            tail.insert(0, m.group(1))
            piece = piece[: m.start()]
    if piece:
        out.extend(
            part
            for part in _FUSED.sub(lambda f: " ".join(g for g in f.groups() if g), piece).split()
        )
    return out + tail


def ifeval_word_tokenize(text: str) -> list[str]:
    """Words as IFEval's ``change_case:capital_word_frequency`` sees them.

    Upstream tokenises with ``nltk.word_tokenize`` (Punkt sentences, then NLTK's improved
    Treebank word tokeniser), which needs NLTK and its Punkt data. This is a regular-expression
    tokeniser with the same word boundaries:

    - whitespace separates tokens; within a whitespace-delimited chunk, quotes, brackets,
      ``; @ # $ % & ? ! *``, dashes U+2012-2015, ``--``, ``..`` runs and a comma or colon not
      followed by a digit are tokens of their own (``AT&T`` -> ``AT & T``, ``WAIT...WHAT`` ->
      ``WAIT ... WHAT``); hyphens, slashes, apostrophes and inner periods are not
      (``COVID-19``, ``AI/ML``, ``U.S.A.`` stay one token);
    - a period that ends a sentence is a token of its own, as Treebank splits the final period
      of each Punkt sentence (not after a title, a single letter, an abbreviation with inner
      periods, or a list number before a lower-case word);
    - clitics at the end of a word are split: ``'s 'm 'd '`` in any case, ``'ll 're 've n't`` in
      lower or upper case (``DON'T`` -> ``DO N'T``, ``I'M`` -> ``I 'M``, ``JOHN'S`` -> ``JOHN
      'S``); a curly apostrophe is always its own token (``DON’T`` -> ``DON ’ T``);
    - the fused words ``cannot gimme gonna gotta lemme wanna more'n d'ye`` are split in two
      (``CANNOT`` -> ``CAN NOT``).

    Tokens differ from NLTK's in spelling where it rewrites quotes (``"`` -> ``''`` /
    ``````) or splits a run of three backticks, and where a mid-text period is judged to end a
    sentence (Punkt's abbreviation and orthography tables): neither changes the capital-word
    count, except for a clitic right before such a period. On IFEval's 541 GPT-4 responses the
    count equals NLTK's on every one.
    """
    chunks = text.split()
    tokens: list[str] = []
    for i, chunk in enumerate(chunks):
        pieces = [p for p in _WORD_SPLIT.split(chunk) if p]
        # the last non-closing piece of a chunk loses a final period that ends a sentence:
        # "DON'T.)" -> DO N'T . )
        j = len(pieces) - 1
        while j >= 0 and all(c in _CLOSERS for c in pieces[j]):
            j -= 1
        p = pieces[j] if j >= 0 else ""
        nxt = chunks[i + 1] if i + 1 < len(chunks) else ""
        if _ends_sentence(p, nxt):
            pieces[j : j + 1] = [p[:-1], "."]
        for p in pieces:
            if _WORD_SPLIT.fullmatch(p) or p == ".":
                tokens.append(p)
            else:
                tokens.extend(_split_word(p))
    return tokens


# IFEval's ``split_into_sentences`` (instructions_util.py): periods that do not end a sentence
# are protected (\x00), forced breaks are marked (\x01); then every remaining . ? ! ends one.
_PRD, _STOP, _QM, _EXCL = "\x00", "\x01", "\x02", "\x03"
_LETTER = "([A-Za-z])"
_STARTER = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s"
    r"|That\s|This\s|Wherever)"
)


def _rules(*pairs: tuple[str, Any]) -> tuple[tuple[re.Pattern[str], Any], ...]:
    return tuple((re.compile(pattern), repl) for pattern, repl in pairs)


_IFEVAL_RULES = _rules(
    (r"(Mr|St|Mrs|Ms|Dr)[.]", rf"\1{_PRD}"),  # titles: Mr. Dr. St.
    (r"[.](com|net|org|io|gov|edu|me)", rf"{_PRD}\1"),  # web domains: example.com
    (r"([0-9])[.]([0-9])", rf"\1{_PRD}\2"),  # decimals: 3.14
    (r"\.{2,}", lambda m: _PRD * len(m.group(0)) + _STOP),  # an ellipsis ends a sentence
    (r"Ph\.D\.", f"Ph{_PRD}D{_PRD}"),
    (r"\s" + _LETTER + r"[.] ", rf" \1{_PRD} "),  # a lone initial: J. Smith
    # an acronym before a typical sentence starter ends the sentence: ... the U.S. He ...
    (r"([A-Z][.][A-Z][.](?:[A-Z][.])?) " + _STARTER, rf"\1{_STOP} \2"),
    (_LETTER + "[.]" + _LETTER + "[.]" + _LETTER + "[.]", rf"\1{_PRD}\2{_PRD}\3{_PRD}"),
    (_LETTER + "[.]" + _LETTER + "[.]", rf"\1{_PRD}\2{_PRD}"),  # e.g. i.e. U.S.
    # company / name suffixes: a break only before a sentence starter
    (r" (Inc|Ltd|Jr|Sr|Co)[.] " + _STARTER, rf" \1{_STOP} \2"),
    (r" (Inc|Ltd|Jr|Sr|Co)[.]", rf" \1{_PRD}"),
    (" " + _LETTER + "[.]", rf" \1{_PRD}"),  # a single letter after a space: a. b.
)
# Where Punkt (what upstream's sentence count runs) predictably decides otherwise.
_PUNKT_MARK = {".": _PRD, "?": _QM, "!": _EXCL}
# characters after a mark that let it end a sentence (besides white space and the end)
_PUNKT_FOLLOW = set(")\";}]*:@'({[!?") | {_STOP}
_PUNKT_BEFORE = _rules(
    # an ellipsis is a break only before a capitalised word
    (r"\.{2,}(?!\s+[A-Z]|\s*$)", lambda m: _PRD * len(m.group(0))),
    # e.g. i.e. P.S. P.P.S. are not abbreviations for Punkt's English model: they end one
    (r"(?i)\b(p\.(?:p\.)?s|e\.g|i\.e)\.(?=\s)", lambda m: m.group(1).replace(".", _PRD) + "."),
)


def _last_break_in_chunk(m: re.Match[str]) -> str:
    """Punkt tries one break per white-space-delimited chunk: at its last mark followed by the
    end of the chunk or by one of :data:`_PUNKT_FOLLOW` (``etc.).``, ``!!!``); the other marks
    in the chunk (``notes.txt``, ``done.</p>``) are protected."""
    chunk = m.group(0)
    last = -1
    for i, c in enumerate(chunk):
        if c in _PUNKT_MARK and (i + 1 == len(chunk) or chunk[i + 1] in _PUNKT_FOLLOW):
            last = i
    return "".join(
        _PUNKT_MARK[c] if c in _PUNKT_MARK and i != last else c for i, c in enumerate(chunk)
    )


_PUNKT_AFTER = _rules(  # applied to the marks IFEval's rules left as sentence ends
    (r"\S+", _last_break_in_chunk),
    # Punkt's abbreviations ignore case: MR. and st. do not end a sentence either
    (r"(?i)\b(mr|mrs|ms|dr|st|prof|inc|ltd|jr|sr|co)[.]", rf"\1{_PRD}"),
    # a number, a period and a lower-case word: a list ordinal ("1. apples")
    (r"(?<!\S)([0-9]+)[.](?=\s+[a-z])", rf"\1{_PRD}"),
)
# IFEval: a closing double quote after the final mark moves before it, into its sentence
_QUOTE_SWAPS = ((".”", "”."), ('."', '".'), ('!"', '"!'), ('?"', '"?'))
# Punkt instead moves the closing quotes and brackets that start the next sentence (up to white
# space) back into the previous one: "'Done.'" is one sentence, not "'Done." and "'"
_REALIGN = re.compile(rf"{_STOP}(\s*)([\"')\]}}]+)(?=\s|--|$)")
_RESTORE = str.maketrans({_PRD: ".", _QM: "?", _EXCL: "!"})


def ifeval_split_sentences(text: str, *, punkt_boundaries: bool = True) -> list[str]:
    """Sentences of ``text`` for ``length_constraints:number_sentences``.

    With ``punkt_boundaries=False`` this follows the rules of IFEval's own splitter
    (``split_into_sentences`` in its ``instructions_util.py``) exactly: newlines are spaces;
    every ``.``, ``?`` and ``!`` ends a sentence except a period after the titles ``Mr Mrs Ms Dr
    St``, before a web domain (``.com .net .org .io .gov .edu .me``), between two digits, in
    ``Ph.D.``, after a lone letter (initials: ``J. Smith``, list letters ``a.``), in acronyms and
    abbreviations of single letters (``U.S.A.``, ``e.g.``, ``i.e.``) and after ``Inc Ltd Jr Sr
    Co``; the last two end a sentence after all when IFEval's sentence starters follow (Mr, Mrs,
    Ms, Dr, Prof, Capt, Cpt, Lt, He, She, It, They, Their, Our, We, But, However, That, This,
    Wherever), and then the suffix loses its period (as upstream). An ellipsis ends a sentence;
    a closing double quote after the final mark stays in its sentence; empty pieces between
    consecutive marks count, a trailing empty one does not.

    The instruction's upstream check, however, counts sentences with NLTK's Punkt model
    (``count_sentences``), which needs NLTK's data. ``punkt_boundaries=True`` (the default, and
    what the checker uses) keeps those rules and adds where Punkt's English model decides
    otherwise in ways that need no trained tables:

    - one break at most per white-space-delimited chunk, at its last mark that ends the chunk or
      is followed by ``) " ; } ] * : @ ' ( { [ ! ?`` (``notes.txt``, ``Hi!there`` and
      ``done.</p>`` are not broken; ``etc.).`` and ``Wow!!!`` break once);
    - ``e.g.``, ``i.e.``, ``P.S.`` and ``P.P.S.`` before white space end a sentence (they are
      not in Punkt's abbreviation list), the titles and suffixes above do not in any case
      (``MR.``, ``st.``), and a number before a period and a lower-case word is a list ordinal
      (``1. apples``);
    - an ellipsis ends a sentence only before a capitalised word;
    - closing quotes and brackets that start the next sentence up to white space move back into
      the one they close (``'Done.'`` is one sentence) instead of IFEval's quote swap.

    The remaining differences come from Punkt's trained tables (its other abbreviations, the
    words it has seen capitalised, collocations such as a number before "review"): on the 541
    GPT-4 responses of IFEval's demo data the counts differ on a few outline-style answers
    (``I. Introduction``, ``A. ...``) and no pass / fail decision changes.
    """
    text = (" " + text + "  ").replace("\n", " ")
    rules = (_PUNKT_BEFORE + _IFEVAL_RULES + _PUNKT_AFTER) if punkt_boundaries else _IFEVAL_RULES
    for pattern, repl in rules:
        text = pattern.sub(repl, text)
    if not punkt_boundaries:
        for old, new in _QUOTE_SWAPS:
            text = text.replace(old, new)
    for mark in ".?!":
        text = text.replace(mark, mark + _STOP)
    if punkt_boundaries:
        text = _REALIGN.sub(rf"\2{_STOP}\1", text)
    sentences = [s.translate(_RESTORE).strip() for s in text.split(_STOP)]
    if sentences and not sentences[-1]:
        sentences.pop()
    return sentences


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


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def ifeval_metric_text(res: IFEvalResult) -> str:
    """What ``scores["IFEval"]`` (``res.prompt_strict_covered``) is, in one sentence: prompt-level
    strict accuracy over the ``n_prompts`` prompts by the offline checkers, and how many prompts
    were fully covered (with the excluded ones and the all-prompt bounds when not all were)."""
    n, n_cov = res.n_prompts, res.n_prompts_covered
    text = (
        f"prompt-level strict accuracy over the {n} IFEval prompts, scored by the offline "
        f"checkers of hf_mig.eval.objective.ifeval_score"
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


def _add_ifeval_result(out: dict[str, Any], res: IFEvalResult) -> None:
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
        rows = _read_jsonl(path)
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


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/objective.py`` argument parser."""
    from hf_mig.eval.generate import add_generation_args

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
    p_if = sub.add_parser(
        "ifeval",
        help="IFEval without lm-eval: generate responses with a backend, score them offline",
    )
    add_generation_args(p_if)
    p_if.add_argument(
        "--input",
        help="IFEval input_data.jsonl (prompt, instruction_id_list, kwargs, key); default: the "
        f"Hub dataset {IFEVAL_HUB_DATASET}, train split",
    )
    p_if.add_argument("--limit", type=int, help="only the first N prompts")
    p_if.add_argument(
        "--out-dir",
        required=True,
        help="gets ifeval_responses.jsonl, its progress file and objective.json",
    )
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
        _print_ifeval(res)
        _add_ifeval_result(out, res)
    for col in LM_EVAL_TASKS:
        if col in scores:
            print(f"  {col:10s} {scores[col]:6.2f}")
    if getattr(args, "out", None):
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


def _print_ifeval(res: IFEvalResult) -> None:
    print(
        f"IFEval strict prompt-level: {res.prompt_strict_covered:.2f}% over "
        f"{res.n_prompts_covered}/{res.n_prompts} fully covered prompts "
        f"(all prompts: between {res.prompt_strict_lower:.2f}% and "
        f"{res.prompt_strict_upper:.2f}%); not covered: {sorted(res.not_covered)}"
    )


def _cmd_ifeval(args: argparse.Namespace) -> int:
    """``ifeval``: generate (resumable), score offline, write ``objective.json``; 1 when some
    prompts still lack a response (nothing scored; re-run to retry them)."""
    from hf_mig.eval.generate import backend_from_args, generator_name

    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    inputs = load_ifeval_inputs(args.input)[: args.limit]
    max_new_tokens = args.max_new_tokens or IFEVAL_MAX_NEW_TOKENS
    backend = backend_from_args(args)
    out_dir = Path(args.out_dir)
    responses, report = generate_ifeval(
        backend, inputs, out_dir, max_new_tokens=max_new_tokens, chunk_size=args.chunk_size
    )
    print(f"generation: {report.summary()}")
    if responses is None:
        print("generation incomplete; re-run to retry the failed prompts (nothing scored)")
        return 1
    res = ifeval_score(inputs, responses)
    _print_ifeval(res)
    out: dict[str, Any] = {"benchmark": "objective", "model": generator_name(args), "scores": {}}
    _add_ifeval_result(out, res)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/objective.py``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "ifeval":
        return _cmd_ifeval(args)
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
