"""WildBench v2: WB-Score, WB-Reward, judging and generation.

- **WB-Score** (``official``): the judge grades each response 1-10 with a checklist
  (``eval_template.score.v2.md``). Per task category ``(mean - 5) * 2``; the headline
  ``WB_score.task_macro`` is the weighted mean of the five categories with the official weights
  (:data:`TASK_WEIGHTS`, divided by their sum) x 10; ``WB_score`` is ``(mean - 5) * 2 * 10`` over
  all sessions. Lengths (``avg_len``) and categories skip empty and ``... (truncated)`` outputs,
  as the leaderboard's scripts do.
- **WB-Reward**: the judge compares the model (A or B, randomised) with a reference model's
  response (``eval_template.pairwise.v2.md``) and answers ``A++``/``A+``/``A=B``/``B+``/``B++``,
  mapped to +100 / +50 / 0 / -50 / -100 from the model's side. With a length penalty ``K >= 0``
  a *slight* win (or loss) whose winner is more than ``K`` characters longer counts as a tie.
  Judgments that could not be parsed count 0 and stay in the denominator (the leaderboard's
  rule) and are reported in ``n_invalid``.
- ``paper`` mode (what the MIG paper reports, via OpenCompass): WB-Reward against the three
  WildBench references (GPT-4-Turbo-2024-04-09, Claude-3-Haiku, Llama-2-70B-chat), averaged
  (the leaderboard's ``mixture_of_rewards``), in [-100, 100]; the paper's averages use
  ``(x + 100) / 2``.

Each session's task categories come from the WildBench tasks (``primary_tag`` + ``secondary_tags``
mapped by :data:`TASK_GROUPS`); without the tasks (offline, no local copy) per-category numbers
and the task macro cannot be computed and are reported as missing.

The judge prompts, the parsing of the judge's replies and the judge calls are in
:mod:`hf_mig.eval.wildbench_judging`; their names are importable from here too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_mig.eval.base import (
    Benchmark,
    add_all_step,
    add_generate_step,
    add_mode_arg,
    is_number,
    register_benchmark,
    write_result,
)
from hf_mig.eval.wildbench_judging import (  # noqa: F401 - the judging API, also read from here
    EMPTY_RESPONSE,
    JUDGE_MAX_TOKENS,
    MAX_WORDS_TO_EVAL,
    REWARD_OF_CHOICE,
    TRUNCATION_MARK,
    _shorten,
    _sid,
    build_pairwise_prompt,
    build_score_prompt,
    empty_response_verdict,
    history_and_query,
    judge_pairwise,
    judge_scores,
    model_is_a,
    parse_pairwise_choice,
    parse_score,
)

__all__ = [
    "REFERENCE_MODELS",
    "REWARD_OF_CHOICE",
    "TASK_GROUPS",
    "TASK_WEIGHTS",
    "WBReward",
    "WBScore",
    "WildBench",
    "load_records",
    "load_tasks",
    "main",
    "mixture_of_rewards",
    "parse_pairwise_choice",
    "parse_score",
    "task_categories",
    "task_macro",
    "wb_reward",
    "wb_score",
]

#: WildBench v2 tag -> task category (the leaderboard's ``task_group_new``).
TASK_GROUPS = {
    "Information seeking": "Information/Advice seeking",
    "Creative Writing": "Creative Tasks",
    "Coding & Debugging": "Coding & Debugging",
    "Reasoning": "Planning & Reasoning",
    "Editing": "Creative Tasks",
    "Math": "Math & Data Analysis",
    "Planning": "Planning & Reasoning",
    "Brainstorming": "Creative Tasks",
    "Role playing": "Creative Tasks",
    "Advice seeking": "Information/Advice seeking",
    "Data Analysis": "Math & Data Analysis",
    "Others": "Creative Tasks",
}
#: Official task-macro weights (WildBench v2 leaderboard).
TASK_WEIGHTS = {
    "Creative Tasks": 0.5,
    "Planning & Reasoning": 1.25,
    "Math & Data Analysis": 1.0,
    "Information/Advice seeking": 0.75,
    "Coding & Debugging": 1.25,
}
#: The three reference models of WB-Reward (leaderboard keys gpt4t / haiku / llama).
REFERENCE_MODELS = {
    "gpt4t": "gpt-4-turbo-2024-04-09",
    "haiku": "claude-3-haiku-20240307",
    "llama": "Llama-2-70b-chat-hf",
}
#: Judge-record kinds: single-answer WB-Score, pairwise WB-Reward.
KINDS = ("score", "pairwise")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read judge records (a JSON list or JSON lines)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_tasks(source: str | Path | None = None) -> list[dict[str, Any]]:
    """WildBench v2 tasks: a local JSON / JSON-lines / parquet file in the Hub's schema
    (``session_id``, ``primary_tag``, ``secondary_tags``, ``conversation_input``, ``checklist``),
    or ``None`` for the Hub's ``allenai/WildBench`` ``v2`` test split (needs network)."""
    if source is None:
        from datasets import load_dataset

        return list(load_dataset("allenai/WildBench", "v2", split="test"))
    path = Path(source)
    if path.suffix == ".parquet":
        from datasets import load_dataset

        return list(load_dataset("parquet", data_files=str(path), split="train"))
    return load_records(path)


def task_categories(tasks: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """``{session_id: [category, ...]}`` from tasks' primary and secondary tags (duplicates kept,
    as the leaderboard does: a session tagged Reasoning and Planning counts twice in its
    category). Raises ``KeyError`` naming an unknown tag."""
    out: dict[str, list[str]] = {}
    for t in tasks:
        sid = t.get("session_id") or t.get("id")
        tags = [t["primary_tag"], *(t.get("secondary_tags") or [])]
        try:
            out[str(sid)] = [TASK_GROUPS[tag] for tag in tags]
        except KeyError as err:
            raise KeyError(f"session {sid}: unknown WildBench tag {err.args[0]!r}") from None
    return out


def task_macro(
    category_values: dict[str, float], weights: dict[str, float] = TASK_WEIGHTS
) -> float:
    """Weighted task macro: ``sum_c w_c v_c / sum(all weights)``.

    As in the leaderboard, the denominator is the sum of *all* weights, so a category with no
    session lowers the macro. Raises ``KeyError`` for a category without a weight.
    """
    return sum(v * weights[c] for c, v in category_values.items()) / sum(weights.values())


# --------------------------------------------------------------------------------------------
# WB-Score


@dataclass
class WBScore:
    """WB-Score of one model (``*_x10`` fields are the leaderboard's scale)."""

    model: str
    score: float  # raw mean 1-10
    adjusted_score: float  # (mean - 5) * 2
    WB_score: float  # adjusted_score * 10
    task_categorized_scores: dict[str, float]  # (mean_c - 5) * 2, x10 in WB_score.<cat>
    task_macro_score: float | None  # weighted macro of the categories, (x10 = WB_score.task_macro)
    total: int
    n_invalid: int
    avg_len: float
    categories_available: bool
    mode: str = "official"
    judging: str = "discrete"

    def to_dict(self) -> dict[str, Any]:
        """Flat dict with the leaderboard's key names added (``WB_score.task_macro`` etc.)."""
        out = dict(self.__dict__)
        out["benchmark"] = "wildbench_v2"
        out["primary_metric"] = "WB_score.task_macro" if self.categories_available else "WB_score"
        if self.task_macro_score is not None:
            out["WB_score.task_macro"] = self.task_macro_score * 10
        for cat, v in self.task_categorized_scores.items():
            out[f"WB_score.{cat}"] = v * 10
        out["primary"] = out.get("WB_score.task_macro", self.WB_score)
        return out


def _score_of(rec: dict[str, Any]) -> float | None:
    value = rec.get("score")
    if value is None and "judgment" in rec:
        return parse_score(rec["judgment"])
    try:
        s = float(value)
    except (TypeError, ValueError):
        return None
    return s if 1 <= s <= 10 else None


def _is_counted_output(text: str) -> bool:
    return bool(text) and not text.endswith(TRUNCATION_MARK)


def _add_by_category(
    per_cat: dict[str, list[float]],
    categories: dict[str, list[str]],
    rec: dict[str, Any],
    value: float,
) -> None:
    """Append ``value`` to the list of each category of ``rec``'s session (``KeyError`` for a
    session without categories)."""
    sid = str(rec["session_id"])
    if sid not in categories:
        raise KeyError(f"session {sid} has no task categories")
    for cat in categories[sid]:
        per_cat.setdefault(cat, []).append(value)


def wb_score(
    records: Sequence[dict[str, Any]],
    categories: dict[str, list[str]] | None = None,
    *,
    model: str | None = None,
) -> WBScore:
    """WB-Score from per-session judge records (``session_id``, ``score``, ``model_output``).

    Contract (the v2 leaderboard's aggregation): ``score`` = mean over sessions with a valid
    score (1-10; others are counted in ``n_invalid``); ``adjusted_score = (score - 5) * 2``;
    ``avg_len`` = mean character length over non-empty, non-truncated outputs; categories (when
    ``categories`` maps session ids to their categories) use the same non-empty, non-truncated
    sessions, ``(mean_c - 5) * 2`` each, and their weighted macro. A session missing from
    ``categories`` raises ``KeyError``.
    """
    scores: list[float] = []
    lengths: list[int] = []
    per_cat: dict[str, list[float]] = {}
    n_invalid = 0
    for rec in records:
        s = _score_of(rec)
        if s is None:
            n_invalid += 1
            continue
        scores.append(s)
        out = rec.get("model_output") or ""
        if isinstance(out, list):
            out = out[0] if out else ""
        if not _is_counted_output(out):
            continue
        lengths.append(len(out))
        if categories is not None:
            _add_by_category(per_cat, categories, rec, s)
    if not scores:
        raise ValueError("no valid scores")
    mean = sum(scores) / len(scores)
    cat_scores = {c: (sum(v) / len(v) - 5) * 2 for c, v in per_cat.items()}
    name = model or str(records[0].get("model_test") or records[0].get("generator") or "model")
    return WBScore(
        model=name.split("/")[-1],
        score=mean,
        adjusted_score=(mean - 5) * 2,
        WB_score=(mean - 5) * 2 * 10,
        task_categorized_scores=cat_scores,
        task_macro_score=task_macro(cat_scores) if categories is not None else None,
        total=len(records),
        n_invalid=n_invalid,
        avg_len=sum(lengths) / len(lengths) if lengths else math.nan,
        categories_available=categories is not None,
    )


# --------------------------------------------------------------------------------------------
# WB-Reward


@dataclass
class WBReward:
    """WB-Reward of one model against one reference (rewards in [-100, 100])."""

    model: str
    reference: str
    reward: float
    win_much: int
    win: int
    tie: int
    lose: int
    lose_much: int
    total: int
    n_invalid: int
    K: int
    task_categorized_rewards: dict[str, float] = field(default_factory=dict)
    task_macro_reward: float | None = None
    avg_len: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dict(self.__dict__)


def outcome(record: dict[str, Any], K: int = -1) -> str | None:
    """Outcome for the model of one pairwise record: ``win_much``/``win``/``tie``/``lose``/
    ``lose_much``, or None if the choice is missing.

    A record has ``choice`` (or ``judgment`` to parse), ``model_is_A`` (bool) and, for ``K >= 0``,
    ``model_output`` and ``ref_output`` (lengths in characters).
    """
    choice = record.get("choice") or parse_pairwise_choice(record.get("judgment") or "")
    if choice not in REWARD_OF_CHOICE:
        return None
    r = REWARD_OF_CHOICE[choice] * (1 if record.get("model_is_A", True) else -1)
    if r == 0:
        return "tie"
    if abs(r) == 1:
        return "win_much" if r > 0 else "lose_much"
    if K >= 0:
        len_m = len(record.get("model_output") or "")
        len_r = len(record.get("ref_output") or "")
        if r > 0 and len_m > len_r + K:
            return "tie"
        if r < 0 and len_r > len_m + K:
            return "tie"
    return "win" if r > 0 else "lose"


_OUTCOME_VALUE = {"win_much": 1.0, "win": 0.5, "tie": 0.0, "lose": -0.5, "lose_much": -1.0}


def wb_reward(
    records: Sequence[dict[str, Any]],
    *,
    K: int = -1,
    categories: dict[str, list[str]] | None = None,
    model: str | None = None,
    reference: str | None = None,
) -> WBReward:
    """WB-Reward of the model against one reference from pairwise records.

    Contract: ``reward = 100 * (win_much + win/2 - lose/2 - lose_much) / total`` where ``total``
    counts every record (unparseable judgments contribute 0 and are in ``n_invalid``); per
    category the same over the sessions of that category; ``task_macro_reward`` is the weighted
    macro (:func:`task_macro`).
    """
    counts = dict.fromkeys(_OUTCOME_VALUE, 0)
    n_invalid = 0
    per_cat: dict[str, list[float]] = {}
    lengths = []
    for rec in records:
        o = outcome(rec, K)
        value = 0.0
        if o is None:
            n_invalid += 1
        else:
            counts[o] += 1
            value = _OUTCOME_VALUE[o]
        lengths.append(len(rec.get("model_output") or ""))
        if categories is not None:
            _add_by_category(per_cat, categories, rec, value)
    total = len(records)
    if total == 0:
        raise ValueError("no pairwise records")
    reward = sum(counts[k] * v for k, v in _OUTCOME_VALUE.items()) / total * 100
    cat_rewards = {c: sum(v) / len(v) * 100 for c, v in per_cat.items()}
    first = records[0]
    return WBReward(
        model=model or str(first.get("generator") or "model"),
        reference=reference or str(first.get("ref_generator") or "reference"),
        reward=reward,
        total=total,
        n_invalid=n_invalid,
        K=K,
        task_categorized_rewards=cat_rewards,
        task_macro_reward=task_macro(cat_rewards) if categories is not None else None,
        avg_len=sum(lengths) / len(lengths),
        **counts,
    )


def mixture_of_rewards(rewards: Sequence[float]) -> float:
    """Mean of the per-reference rewards (the leaderboard's ``mixture_of_rewards`` and the MIG
    paper's WildBench number)."""
    if not rewards:
        raise ValueError("no rewards")
    return sum(rewards) / len(rewards)


def paper_scale(reward: float) -> float:
    """The MIG paper's averaging scale for WildBench: ``(reward + 100) / 2``."""
    return (reward + 100) / 2


# --------------------------------------------------------------------------------------------
# generation

#: Generation budget of WildBench v2's inference scripts and of the MIG paper's runs.
MAX_NEW_TOKENS = 4096


def load_outputs(spec: str | Path) -> dict[str, dict[str, Any]]:
    """Model outputs by session id: a local JSON/JSONL file (records with ``session_id``,
    ``output`` (a string or a one-element list) and ``generator``) or, when ``spec`` is not a
    file, the config of that name in the Hub dataset ``allenai/WildBench-V2-Model-Outputs``
    (needs network; e.g. ``gpt-4-turbo-2024-04-09``)."""
    path = Path(spec)
    if path.exists():
        records = load_records(path)
    else:
        from datasets import load_dataset

        records = list(load_dataset("allenai/WildBench-V2-Model-Outputs", str(spec), split="train"))
    return {str(r["session_id"]): r for r in records}


def generate_outputs(
    backend: Any,
    tasks: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    generator: str,
    max_new_tokens: int = MAX_NEW_TOKENS,
    chunk_size: int = 32,
) -> Any:
    """Complete each task's ``conversation_input`` (greedy, the model's chat template); progress
    in ``<out>.progress.jsonl`` (resumable); ``out`` (records ``session_id``, ``output``,
    ``generator``) is written once every task has an output. Returns the generation report."""
    from hf_mig.eval.generate import GenerationItem, generate_incremental

    out = Path(out)
    items = [
        GenerationItem(
            _sid(t),
            [{"role": m["role"], "content": m["content"]} for m in t["conversation_input"]],
            max_new_tokens,
        )
        for t in tasks
    ]
    done, report = generate_incremental(
        backend, items, str(out) + ".progress.jsonl", chunk_size=chunk_size
    )
    if all(it.key in done for it in items):
        rows = [
            {"session_id": it.key, "output": [done[it.key]["output"]], "generator": generator}
            for it in items
        ]
        out.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return report


# --------------------------------------------------------------------------------------------
# leaderboard


def load_leaderboard(data_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(score.json, all_stat_wildbench.-1.json)`` of the leaderboard's ``data_dir``."""
    d = Path(data_dir)
    scores = json.loads((d / "score.json").read_text())
    stats = json.loads((d / "all_stat_wildbench.-1.json").read_text())
    return scores, stats


def format_score(res: WBScore) -> str:
    """Human-readable WB-Score summary."""
    lines = [
        f"WildBench v2 WB-Score [{res.mode}] {res.model} (judging: {res.judging})",
        f"  WB_score            {res.WB_score:7.2f}   (raw mean {res.score:.4f}, n {res.total}, "
        f"invalid {res.n_invalid}, avg_len {res.avg_len:.1f})",
    ]
    if res.task_macro_score is not None:
        lines.append(f"  WB_score.task_macro {res.task_macro_score * 10:7.2f}")
        for c, v in sorted(res.task_categorized_scores.items()):
            lines.append(f"    {c:28s} {v * 10:7.2f}")
    else:
        lines.append(
            "  WB_score.task_macro    n/a   (needs the WildBench tasks' tags: --tasks FILE, or "
            "the Hub when online)"
        )
    return "\n".join(lines)


def format_rewards(rewards: Sequence[WBReward], mode: str) -> str:
    """Human-readable WB-Reward summary (and the mixture in paper mode)."""
    lines = []
    for r in rewards:
        macro = "" if r.task_macro_reward is None else f", task macro {r.task_macro_reward:.2f}"
        lines.append(
            f"WB-Reward {r.model} vs {r.reference} (K={r.K}): {r.reward:7.2f}{macro} "
            f"[++{r.win_much} +{r.win} ={r.tie} -{r.lose} --{r.lose_much}; invalid {r.n_invalid}]"
        )
    if len(rewards) > 1 or mode == "paper":
        mix = mixture_of_rewards([r.reward for r in rewards])
        lines.append(
            f"  mixture_of_rewards {mix:.2f}  (paper scale (x+100)/2 = {paper_scale(mix):.2f})"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line


def _parse_refs(specs: Sequence[str], mode: str) -> list[tuple[str, str]]:
    refs = []
    for spec in specs:
        name, sep, source = spec.partition("=")
        refs.append((name, source if sep else name))
    if not refs and mode == "paper":
        refs = [(m, m) for m in REFERENCE_MODELS.values()]
    return refs


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", help="WildBench v2 tasks file (default: the Hub, online)")
    p.add_argument("--limit", type=int, help="only the first N tasks")


@register_benchmark("wildbench")
class WildBench(Benchmark):
    """WildBench v2: outputs for the tasks, WB-Score (single-answer) or WB-Reward (pairwise
    against reference models) judging, and their scores."""

    description = "WildBench v2"
    prog = "wildbench.py"
    result_benchmark = "wildbench_v2"
    all_files = ("outputs.json", "judgments.json", "wildbench.json")
    items = "tasks"

    def add_steps(self, sub: argparse._SubParsersAction) -> None:
        from hf_mig.eval.judge import add_judge_args

        p_gen = add_generate_step(sub, "model outputs for the WildBench tasks", _add_data_args)
        p_gen.add_argument("--out", required=True)
        p_judge = sub.add_parser("judge", help="judge records (score or pairwise)")
        _add_data_args(p_judge)
        p_judge.add_argument("--outputs", required=True, help="model outputs (from generate)")
        add_mode_arg(p_judge)
        p_judge.add_argument("--kind", choices=KINDS, help="default: per mode")
        p_judge.add_argument(
            "--reference-outputs",
            nargs="*",
            default=[],
            help="NAME=FILE reference outputs for pairwise judging (paper mode: the three "
            "references)",
        )
        p_judge.add_argument(
            "--out", required=True, help="judge records file (or dir for pairwise)"
        )
        add_judge_args(p_judge)
        p_score = sub.add_parser("score", help="WB-Score / WB-Reward from judge records")
        p_score.add_argument("--records", nargs="+", required=True, help="judge record files")
        p_score.add_argument("--kind", choices=KINDS, default="score")
        add_mode_arg(p_score)
        p_score.add_argument("--tasks", help="WildBench v2 tasks (for categories / task macro)")
        p_score.add_argument("--K", type=int, default=-1, help="length penalty for WB-Reward")
        p_score.add_argument(
            "--leaderboard-dir", help="leaderboard data_dir: show published numbers"
        )
        p_score.add_argument("--out", help="write the result JSON here")
        p_all = add_all_step(
            sub, "generate, judge and score (paper: pairwise vs 3 refs)", _add_data_args
        )
        p_all.add_argument("--reference-outputs", nargs="*", default=[])

    def generate_outputs(self, backend: Any, args: argparse.Namespace, model_id: str) -> Any:
        return generate_outputs(
            backend,
            load_tasks(args.tasks)[: args.limit],
            args.out,
            generator=model_id,
            max_new_tokens=args.max_new_tokens or MAX_NEW_TOKENS,
            chunk_size=args.chunk_size,
        )

    def judge_inputs(self, args: argparse.Namespace) -> tuple[Any, ...]:
        return load_tasks(args.tasks)[: args.limit], load_outputs(args.outputs)

    def judge_outputs(self, client: Any, data: Any, args: argparse.Namespace) -> list[Path]:
        tasks, outputs = data
        kind = args.kind or ("pairwise" if args.mode == "paper" else "score")
        out = Path(args.out)
        written = []
        if kind == "score":
            recs = judge_scores(client, tasks, outputs)
            out.write_text(json.dumps(recs, indent=2, ensure_ascii=False))
            written.append(out)
        else:
            refs = _parse_refs(args.reference_outputs, args.mode)
            if not refs:
                raise SystemExit("pairwise judging needs --reference-outputs NAME=FILE")
            for name, source in refs:
                recs = judge_pairwise(client, tasks, outputs, load_outputs(source), name)
                path = out.with_name(f"{out.stem}.ref={name}{out.suffix or '.json'}")
                path.write_text(json.dumps(recs, indent=2, ensure_ascii=False))
                written.append(path)
        return written

    def judge(self, args: argparse.Namespace) -> list[Path]:
        written = super().judge(args)
        for path in written:
            print(f"  wrote {path}")
        return written

    def chain_judge(self, args: argparse.Namespace) -> None:
        args.outputs = args.out
        args.kind = "pairwise" if args.mode == "paper" else "score"

    def chain_score(self, args: argparse.Namespace, judged: Any) -> None:
        args.records = [str(p) for p in judged]
        args.K = -1
        args.leaderboard_dir = None

    def score(self, args: argparse.Namespace) -> dict[str, Any]:
        cats = task_categories(load_tasks(args.tasks)) if args.tasks else None
        board = load_leaderboard(args.leaderboard_dir) if args.leaderboard_dir else None
        if args.kind == "score":
            results = [_score_result(path, cats, args.mode, board) for path in args.records]
            out: dict[str, Any] = results[0] if len(results) == 1 else {"results": results}
        else:
            out = _reward_result(args.records, cats, args.mode, args.K)
        if args.out:
            write_result(args.out, out)
        return out

    def table_cells(self, result: Mapping[str, Any]) -> dict[str, float]:
        """``Wild``: the mixture of pairwise rewards (the paper's column); a WB-Score result
        (the official single-answer mode) is ``WB-Score``, its task macro when known."""
        if result.get("benchmark") != "wildbench_v2":
            return {}
        if is_number(result.get("mixture_of_rewards")):
            return {"Wild": float(result["mixture_of_rewards"])}
        if is_number(result.get("WB_score")):
            macro = result.get("WB_score.task_macro")
            return {"WB-Score": float(macro if is_number(macro) else result["WB_score"])}
        return {}


def _score_result(
    path: str, cats: dict[str, list[str]] | None, mode: str, board: Any
) -> dict[str, Any]:
    """The WB-Score result of one record file (printed), with the published numbers of the
    leaderboard ``board`` when it has the model."""
    res = wb_score(load_records(path), cats)
    res.mode = mode
    print(format_score(res))
    d = res.to_dict()
    if board is not None and res.model in board[1]:
        stat = board[1][res.model]
        pub = {k: v for k, v in stat.items() if k.startswith("WB_score") or k == "Length"}
        d["published"] = pub
        print(
            f"  published: WB_score {pub.get('WB_score'):.2f}, WB_score.task_macro "
            f"{pub.get('WB_score.task_macro'):.2f}, Length {pub.get('Length'):.1f}"
        )
    return d


def _reward_result(
    paths: Sequence[str], cats: dict[str, list[str]] | None, mode: str, K: int
) -> dict[str, Any]:
    """The WB-Reward result over one record file per reference (printed)."""
    rewards = [wb_reward(load_records(path), K=K, categories=cats) for path in paths]
    print(format_rewards(rewards, mode))
    mix = mixture_of_rewards([r.reward for r in rewards])
    out = {
        "benchmark": "wildbench_v2",
        "mode": mode,
        "model": rewards[0].model,
        "primary_metric": "mixture_of_rewards" if len(rewards) > 1 else "reward",
        "primary": mix,
        "mixture_of_rewards": mix,
        "paper_scale": paper_scale(mix),
        "rewards": [r.to_dict() for r in rewards],
        "judging": "discrete",
    }
    macros = [r.task_macro_reward for r in rewards]
    if all(m is not None for m in macros):
        out["task_macro_reward"] = mixture_of_rewards(macros)  # type: ignore[arg-type]
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/wildbench.py`` argument parser (subcommands generate / judge / score / all)."""
    return WildBench().build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/wildbench.py``; returns the exit status.

    ``generate`` -> outputs; ``judge`` -> judge records (``score`` kind in official mode,
    ``pairwise`` against the references in paper mode); ``score`` -> WB-Score / WB-Reward;
    ``all`` runs the three into ``--out-dir``.
    """
    return WildBench().main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
