"""AlpacaEval 2: win rate, length-controlled win rate, judging and generation.

Two scoring modes:

- ``official``: the benchmark's own protocol. The judge is asked for the identifier of the better
  output (``m`` = the first output, ``M`` = the second) and its first-token probabilities are
  turned into a continuous preference in [1, 2] (``weighted_alpaca_eval_gpt4_turbo``); the output
  order is randomised per instruction. The headline metric is the length-controlled (LC) win rate.
- ``paper``: what the MIG paper ran (OpenCompass): the same judge prompt, a discrete ``m``/``M``
  answer, plain win rate against the GPT-4-Turbo reference outputs.

Judging differences from the reference tools, all deliberate and stated: the output order is
randomised by a hash of the instruction (alpaca_eval seeds its own shuffle; both swap about half);
the official one-token request is sent at temperature 0 (alpaca_eval sends 1 and notes it has no
effect on the returned log-probabilities); ``paper`` mode uses alpaca_eval's prompt, whose
wording differs slightly from OpenCompass's copy (triple versus single quotes around the texts),
and reads the first standalone ``m``/``M`` of the reply.

Another instruction set can be judged with the same protocol: ``reference`` turns FastChat's
MT-Bench questions and GPT-4 reference answers (Apache-2.0) into a reference file (first turns;
``dataset`` = ``mt_bench/<category>``). A score on such a reference says so
(``instruction_set: "mt_bench"``, else ``"alpaca_eval"``) and is not an AlpacaEval number;
:mod:`hf_mig.eval.compare` shows it as ``AE*``, apart from ``AE``.

Preferences follow the AlpacaEval convention: ``1`` = the baseline (``output_1``) wins, ``2`` = the
evaluated model (``output_2``) wins, ``1.5`` (or the legacy ``0``) = a draw.

The LC win rate and its inputs are computed by :mod:`hf_mig.eval.length_control`; which
variant was computed is always in the result (``lc_method``). The judge prompt, the parsing of
its replies and the judge calls are in :mod:`hf_mig.eval.alpaca_eval_judging`; their names are
importable from here too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_mig.eval.alpaca_eval_judging import (  # noqa: F401 - the judging API, also read from here
    TEMPLATE_OFFICIAL,
    TEMPLATES,
    build_judge_messages,
    chatml_to_messages,
    is_swapped,
    judge_outputs,
    parse_discrete,
    preference_from_logprobs,
)
from hf_mig.eval.base import (
    Benchmark,
    add_all_step,
    add_generate_step,
    add_mode_arg,
    is_number,
    iter_jsonl,
    read_jsonl,
    register_benchmark,
    write_result,
)
from hf_mig.eval.length_control import (
    GAMED_SAMPLE_WEIGHT,
    LC_CS,
    LC_FORMULA,
    LC_N_SPLITS,
    N_INSTRUCTIONS,
    WEIGHT_COLUMNS,
    GLMWeights,
    HubLCInputs,
    LCResult,
    _as_float,
    estimate_difficulty_distribution,
    fetch_hub_lc_inputs,
    fit_length_controlled,
    lc_from_weights,
    load_gamed,
    load_glm_weights,
    load_instruction_difficulty,
    load_leaderboard,
)

__all__ = [
    "GAMED_SAMPLE_WEIGHT",
    "LC_CS",
    "LC_FORMULA",
    "LC_N_SPLITS",
    "WEIGHT_COLUMNS",
    "AlpacaEval",
    "AlpacaEvalScore",
    "GLMWeights",
    "LCResult",
    "WinRate",
    "estimate_difficulty_distribution",
    "fit_length_controlled",
    "lc_from_weights",
    "load_annotations",
    "load_glm_weights",
    "load_instruction_difficulty",
    "load_leaderboard",
    "main",
    "reference_from_mt_bench",
    "score_annotations",
    "win_rate",
]

DEFAULT_BASELINE = "gpt4_1106_preview"

# --------------------------------------------------------------------------------------------
# loading


def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Read annotations in the AlpacaEval format (a JSON list, or JSON lines).

    Each record needs ``preference``; ``output_1``/``output_2`` (baseline / model outputs) are
    needed for the LC win rate, ``generator_1``/``generator_2`` name the baseline and the model.
    Raises ``ValueError`` naming the file and record for a record that is not an object.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    records = json.loads(text) if text.lstrip().startswith("[") else read_jsonl(path)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {i} is {type(rec).__name__}, not an object")
    return records


# --------------------------------------------------------------------------------------------
# win rate


@dataclass
class WinRate:
    """AlpacaEval head-to-head statistics (percentages in [0, 100])."""

    win_rate: float
    standard_error: float
    n_wins: int
    n_wins_base: int
    n_draws: int
    n_total: int
    discrete_win_rate: float
    n_invalid: int = 0


def win_rate(preferences: Sequence[Any]) -> WinRate:
    """Win rate of the model over the baseline from AlpacaEval preferences.

    Contract (alpaca_eval's ``get_winrate``): ``0`` is read as a draw (``1.5``); values outside
    ``[1, 2]``, ``None`` and NaN are invalid and counted in ``n_invalid`` (they are not in
    ``n_total``). ``win_rate = 100 * mean(p - 1)``, ``standard_error = 100 * sem(p - 1)``
    (ddof 1), ``n_wins`` = #(p > 1.5), ``n_wins_base`` = #(p < 1.5), ``n_draws`` = #(p == 1.5),
    ``discrete_win_rate`` = 100 * (wins + draws / 2) / n after rounding each preference to 1 or 2.
    """
    p = np.array([_as_float(x) for x in preferences], dtype=float)
    p[p == 0] = 1.5
    n_draws = int(np.sum(p == 1.5))
    valid = (p >= 1) & (p <= 2)
    n_invalid = int(np.sum(~valid))
    q = p[valid] - 1.0
    n = len(q)
    if n == 0:
        return WinRate(math.nan, math.nan, 0, 0, n_draws, 0, math.nan, n_invalid)
    sem = float(np.std(q, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    # discrete: draws stay draws, every other preference is rounded to the nearer of 1 and 2
    qd = np.where(q == 0.5, 0.5, np.round(q))
    return WinRate(
        win_rate=float(np.mean(q) * 100),
        standard_error=sem * 100,
        n_wins=int(np.sum(q > 0.5)),
        n_wins_base=int(np.sum(q < 0.5)),
        n_draws=n_draws,
        n_total=n,
        discrete_win_rate=float(np.mean(qd) * 100),
        n_invalid=n_invalid,
    )


# --------------------------------------------------------------------------------------------
# scoring


@dataclass
class AlpacaEvalScore:
    """Everything ``score`` reports for one model."""

    model: str
    baseline: str
    mode: str
    primary_metric: str
    primary: float
    win_rate: WinRate
    lc: LCResult | None
    avg_length: float
    judging: str = "unknown"
    published: dict[str, float] = field(default_factory=dict)
    instruction_set: str = "alpaca_eval"

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-able dict (``win_rate``... fields at top level, LC fields when computed)."""
        out: dict[str, Any] = {
            "benchmark": "alpaca_eval_2",
            "model": self.model,
            "baseline": self.baseline,
            "mode": self.mode,
            "primary_metric": self.primary_metric,
            "primary": self.primary,
            "avg_length": self.avg_length,
            "judging": self.judging,
            "instruction_set": self.instruction_set,
        }
        out.update(asdict(self.win_rate))
        if self.lc is not None:
            out.update(asdict(self.lc))
        if self.published:
            out["published"] = self.published
        return out


def _judging_kind(records: Sequence[dict[str, Any]]) -> str:
    kinds = {r.get("judging") for r in records if r.get("judging")}
    if kinds:
        return "+".join(sorted(kinds))
    annotators = {str(r.get("annotator", "")) for r in records}
    if any(a.startswith("weighted_") for a in annotators):
        return "logprob-weighted"
    return "unknown"


def instruction_set_of(records: Sequence[dict[str, Any]]) -> str:
    """``"mt_bench"`` when every record comes from a :func:`reference_from_mt_bench` reference
    (``dataset`` ``mt_bench/...``), else ``"alpaca_eval"``."""
    datasets = [str(r.get("dataset") or "") for r in records]
    if datasets and all(d.startswith("mt_bench/") for d in datasets):
        return "mt_bench"
    return "alpaca_eval"


def _model_and_baseline(
    records: Sequence[dict[str, Any]], model_name: str | None
) -> tuple[str, str]:
    """The evaluated model (``model_name``, else the one ``generator_2``, else ``"model"``) and
    the baseline (the one ``generator_1``, else :data:`DEFAULT_BASELINE`)."""
    gens = {r.get("generator_2") for r in records}
    bases = {r.get("generator_1") for r in records}
    model = model_name or (gens.pop() if len(gens) == 1 else "model")
    baseline = bases.pop() if len(bases) == 1 else DEFAULT_BASELINE
    return model, baseline


def hub_lc_needs(
    records: Sequence[dict[str, Any]],
    *,
    model_name: str | None = None,
    glm_weights: dict[str, GLMWeights] | None = None,
    instruction_difficulty: np.ndarray | None = None,
    gamed: Sequence[dict[str, float]] | None = None,
) -> tuple[bool, bool]:
    """Which Hub LC files (``instruction_difficulty.csv``, ``df_gamed.csv``) the official LC of
    ``records`` needs and was not given, as ``(difficulty, gamed)``.

    Neither for the baseline against itself, nor when ``records`` are not the
    :data:`N_INSTRUCTIONS` AlpacaEval instructions (the files describe those); only the difficulty
    when ``glm_weights`` has the model (``glm-weights``); both otherwise (``glm-refit``).
    """
    model, baseline = _model_and_baseline(records, model_name)
    if model == baseline or len(records) != N_INSTRUCTIONS:
        return False, False
    if instruction_set_of(records) != "alpaca_eval":
        return False, False
    covered = glm_weights is not None and model in glm_weights
    return instruction_difficulty is None, gamed is None and not covered


def score_annotations(
    records: Sequence[dict[str, Any]],
    *,
    mode: str = "official",
    model_name: str | None = None,
    glm_weights: dict[str, GLMWeights] | None = None,
    instruction_difficulty: np.ndarray | None = None,
    gamed: Sequence[dict[str, float]] | None = None,
    leaderboard: dict[str, dict[str, float | str]] | None = None,
    lc: bool = True,
) -> AlpacaEvalScore:
    """Score AlpacaEval annotations of one model against one baseline.

    ``mode="official"``: headline = LC win rate, computed with the best method the inputs allow
    (see the module docstring: ``glm-weights`` > ``glm-refit`` >
    ``glm-weights+estimated-difficulty`` > ``reduced-glm``). ``mode="paper"``: headline = plain
    win rate (LC still reported when ``lc``). ``model_name`` overrides ``generator_2`` for the
    weights lookup. When ``leaderboard`` has the model, its published numbers are attached.
    """
    if mode not in ("official", "paper"):
        raise ValueError(f"mode must be 'official' or 'paper', got {mode!r}")
    if not records:
        raise ValueError("no annotations")
    model, baseline = _model_and_baseline(records, model_name)
    wr = win_rate([r.get("preference") for r in records])
    lengths = [len(r.get("output_2") or "") for r in records]
    avg_len = float(np.mean(lengths)) if lengths else math.nan

    lc_res: LCResult | None = None
    if lc:
        if model == baseline:
            lc_res = LCResult(
                50.0, 0.0, "baseline", "the baseline against itself is 50 by definition"
            )
        elif (
            glm_weights is not None and model in glm_weights and instruction_difficulty is not None
        ):
            diff = np.asarray(instruction_difficulty, dtype=float)
            val, sem = lc_from_weights(glm_weights[model], diff, glm_weights.get(baseline))
            lc_res = LCResult(
                val,
                sem,
                "glm-weights",
                "published GLM coefficients + official difficulty",
                asdict(glm_weights[model]),
            )
        elif instruction_difficulty is not None:
            lc_res = fit_length_controlled(
                records, instruction_difficulty=instruction_difficulty, gamed=gamed
            )
        elif glm_weights is not None and model in glm_weights and leaderboard is not None:
            grid, probs, used = estimate_difficulty_distribution(
                glm_weights, leaderboard, exclude=[model]
            )
            val, _ = lc_from_weights(
                glm_weights[model], grid, glm_weights.get(baseline), probabilities=probs
            )
            lc_res = LCResult(
                val,
                math.nan,
                "glm-weights+estimated-difficulty",
                "published GLM coefficients; instruction-difficulty DISTRIBUTION estimated from "
                f"{len(used)} other leaderboard models' published LC (official file not given)",
                asdict(glm_weights[model]),
            )
        else:
            lc_res = fit_length_controlled(records)

    if mode == "official" and lc_res is not None:
        primary_metric, primary = "length_controlled_winrate", lc_res.length_controlled_winrate
    else:
        primary_metric, primary = "win_rate", wr.win_rate
    published: dict[str, float] = {}
    if leaderboard is not None and model in leaderboard:
        for k in ("win_rate", "standard_error", "length_controlled_winrate", "avg_length"):
            v = leaderboard[model].get(k)
            if isinstance(v, float) and not math.isnan(v):
                published[k] = v
    return AlpacaEvalScore(
        model,
        str(baseline),
        mode,
        primary_metric,
        primary,
        wr,
        lc_res,
        avg_len,
        _judging_kind(records),
        published,
        instruction_set_of(records),
    )


def format_score(score: AlpacaEvalScore) -> str:
    """Human-readable summary of :func:`score_annotations`'s result."""
    wr = score.win_rate
    head = "AlpacaEval 2"
    if score.instruction_set != "alpaca_eval":
        head += f" protocol on {score.instruction_set} (not the AlpacaEval set)"
    lines = [
        f"{head} [{score.mode}] {score.model} vs {score.baseline} (judging: {score.judging})",
        f"  win rate            {wr.win_rate:6.2f} +/- {wr.standard_error:.2f}  "
        f"(wins {wr.n_wins}, losses {wr.n_wins_base}, draws {wr.n_draws}, n {wr.n_total}"
        + (f", invalid {wr.n_invalid}" if wr.n_invalid else "")
        + ")",
        f"  discrete win rate   {wr.discrete_win_rate:6.2f}",
    ]
    if score.lc is not None:
        lines.append(
            f"  LC win rate         {score.lc.length_controlled_winrate:6.2f}  "
            f"[{score.lc.lc_method}: {score.lc.note}]"
        )
    lines.append(f"  avg length          {score.avg_length:.0f}")
    if score.published:
        pub = ", ".join(f"{k} {v:.2f}" for k, v in score.published.items())
        lines.append(f"  published           {pub}")
    lines.append(f"  => {score.primary_metric} = {score.primary:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# reference outputs and generation


#: Default generation budgets: alpaca_eval's model configs use 2048 new tokens; the MIG paper's
#: OpenCompass runs used max_out_len 4096.
MAX_NEW_TOKENS = {"official": 2048, "paper": 4096}


def load_reference(path: str | Path | None) -> list[dict[str, Any]]:
    """The 805 instructions with the reference (baseline) outputs, AlpacaEval results format
    (``instruction``, ``output``, ``generator``, ``dataset``).

    ``path=None`` downloads the AlpacaEval 2 baseline (GPT-4-Turbo outputs,
    ``alpaca_eval_gpt4_baseline.json`` of the Hub dataset ``tatsu-lab/alpaca_eval``; needs
    network); otherwise a local JSON file, e.g. alpaca_eval's
    ``results/gpt4_1106_preview/model_outputs.json``.
    """
    if path is None:
        from huggingface_hub import hf_hub_download

        repo, name = HUB_REFERENCE
        try:
            path = hf_hub_download(repo, name, repo_type="dataset")
        except Exception as err:  # offline, unreachable, not cached: one line, not a traceback
            raise SystemExit(
                f"alpaca_eval: could not get {name} of the Hub dataset {repo} "
                f"({type(err).__name__}); pass --reference FILE (alpaca_eval's "
                "results/gpt4_1106_preview/model_outputs.json) or go online"
            ) from err
    records = load_annotations(path)
    for i, r in enumerate(records):
        if "instruction" not in r or "output" not in r:
            raise ValueError(f"{path}: record {i} lacks 'instruction' or 'output'")
    return records


#: The AlpacaEval 2 baseline on the Hub: (dataset, file).
HUB_REFERENCE = ("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json")
#: ``generator`` of the references made by :func:`reference_from_mt_bench`.
MT_BENCH_GENERATOR = "gpt-4 (MT-Bench reference answers)"


def reference_from_mt_bench(questions: str | Path, answers: str | Path) -> list[dict[str, Any]]:
    """Reference records (AlpacaEval results format) from FastChat's MT-Bench files: for each
    question with a reference answer, in the answers file's order, ``instruction`` = the
    question's first turn, ``output`` = the answer's first turn, ``generator`` =
    :data:`MT_BENCH_GENERATOR`, ``dataset`` = ``mt_bench/<category>``, and ``question_id``.

    ``ValueError`` naming the file and line for a record without the fields, an answer to an
    unknown question, a question id answered twice, or no answers at all.
    """
    by_id: dict[int, dict[str, Any]] = {}
    for lineno, rec in _jsonl_records(questions):
        try:
            by_id[int(rec["question_id"])] = {
                "category": str(rec["category"]),
                "turn": str(rec["turns"][0]),
            }
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(
                f"{questions}: line {lineno}: expected question_id, category and turns "
                f"({type(err).__name__}: {err})"
            ) from None
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for lineno, rec in _jsonl_records(answers):
        try:
            qid = int(rec["question_id"])
            answer = str(rec["choices"][0]["turns"][0])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(
                f"{answers}: line {lineno}: expected question_id and choices[0].turns "
                f"({type(err).__name__}: {err})"
            ) from None
        if qid not in by_id:
            raise ValueError(f"{answers}: line {lineno}: question {qid} is not in {questions}")
        if qid in seen:
            raise ValueError(f"{answers}: line {lineno}: question {qid} answered twice")
        seen.add(qid)
        q = by_id[qid]
        out.append(
            {
                "instruction": q["turn"],
                "output": answer,
                "generator": MT_BENCH_GENERATOR,
                "dataset": f"mt_bench/{q['category']}",
                "question_id": qid,
            }
        )
    if not out:
        raise ValueError(f"{answers}: no reference answers")
    return out


def _jsonl_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {lineno}: not a JSON object")
        records.append((lineno, rec))
    return records


def generate_outputs(
    backend: Any,
    reference: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    generator: str,
    max_new_tokens: int,
    chunk_size: int = 32,
) -> Any:
    """Generate the model's outputs for the reference's instructions (greedy, chat template).

    Progress goes to ``<out>.progress.jsonl`` (resumable); when every instruction has an output,
    ``out`` is written in the AlpacaEval results format. Returns the
    :class:`~hf_mig.eval.generate.GenerationReport`.
    """
    from hf_mig.eval.generate import GenerationItem, generate_incremental

    out = Path(out)
    items = [
        GenerationItem(str(i), [{"role": "user", "content": r["instruction"]}], max_new_tokens)
        for i, r in enumerate(reference)
    ]
    done, report = generate_incremental(
        backend, items, str(out) + ".progress.jsonl", chunk_size=chunk_size
    )
    if len(done) >= len(items) and all(it.key in done for it in items):
        rows = [
            {
                "instruction": r["instruction"],
                "output": done[str(i)]["output"],
                "generator": generator,
                "dataset": r.get("dataset", ""),
            }
            for i, r in enumerate(reference)
        ]
        out.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return report


# --------------------------------------------------------------------------------------------
# command line


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference",
        help="reference outputs in the AlpacaEval results format (default: the Hub's "
        "gpt4_1106_preview outputs when online); also the source of the 805 instructions",
    )
    p.add_argument("--limit", type=int, help="only the first N instructions (smoke tests)")


def _add_lc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--glm-weights", help="alpaca_eval's baseline_gpt4_1106_preview.csv")
    p.add_argument("--instruction-difficulty", help="alpaca_eval's instruction_difficulty.csv")
    p.add_argument("--gamed", help="alpaca_eval's df_gamed.csv (gamed-baseline annotations)")
    p.add_argument(
        "--no-download",
        action="store_true",
        help="never fetch instruction_difficulty.csv / df_gamed.csv from the Hub (default: "
        "fetched once into the Hub cache when the LC needs them and they are not given)",
    )


@register_benchmark("alpaca_eval")
class AlpacaEval(Benchmark):
    """AlpacaEval 2: outputs for the 805 instructions, pairwise judging against the reference
    outputs, win rate and length-controlled win rate; ``reference`` makes a reference file
    from MT-Bench."""

    description = "AlpacaEval 2: generate, judge and score"
    prog = "alpaca_eval.py"
    result_benchmark = "alpaca_eval_2"
    all_files = ("model_outputs.json", "annotations.json", "alpaca_eval.json")
    items = "instructions"

    def add_steps(self, sub: argparse._SubParsersAction) -> None:
        from hf_mig.eval.judge import add_judge_args

        p_gen = add_generate_step(sub, "model outputs for the 805 instructions", _add_data_args)
        add_mode_arg(p_gen, help="sets the default --max-new-tokens (2048 / 4096)")
        p_gen.add_argument("--out", required=True, help="model_outputs.json to write (resumable)")
        p_judge = sub.add_parser("judge", help="annotations from a judge")
        _add_data_args(p_judge)
        p_judge.add_argument("--outputs", required=True, help="model_outputs.json of the model")
        add_mode_arg(p_judge)
        p_judge.add_argument("--out", required=True, help="annotations.json to write")
        add_judge_args(p_judge)
        p_score = sub.add_parser("score", help="metrics from annotations")
        p_score.add_argument(
            "--annotations", required=True, nargs="+", help="annotations JSON file(s)"
        )
        add_mode_arg(p_score)
        p_score.add_argument("--model-name", help="model name for the GLM weights lookup")
        _add_lc_args(p_score)
        p_score.add_argument(
            "--leaderboard", help="leaderboard CSV: published numbers shown alongside"
        )
        p_score.add_argument(
            "--no-lc", action="store_true", help="skip the length-controlled win rate"
        )
        p_score.add_argument("--out", help="write the result(s) as JSON here")
        p_all = add_all_step(sub, "generate, judge and score", _add_data_args)
        _add_lc_args(p_all)
        p_ref = sub.add_parser(
            "reference",
            help="a reference file from MT-Bench's questions and GPT-4 answers (first turns)",
        )
        p_ref.add_argument("--mt-bench-questions", required=True, help="FastChat question.jsonl")
        p_ref.add_argument(
            "--mt-bench-answers", required=True, help="FastChat reference_answer/gpt-4.jsonl"
        )
        p_ref.add_argument("--out", required=True, help="reference JSON to write")
        p_ref.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    def extra_steps(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def reference(self, args: argparse.Namespace) -> int:
        """``reference``: write :func:`reference_from_mt_bench`'s records to ``--out``; 2 with
        a one-line error for unreadable inputs or an existing ``--out``."""
        from hf_mig.data.io import OutputExistsError, write_text_atomic

        try:
            records = reference_from_mt_bench(args.mt_bench_questions, args.mt_bench_answers)
            text = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
            write_text_atomic(args.out, text, overwrite=args.overwrite)
        except (OSError, ValueError, OutputExistsError) as err:
            print(f"alpaca_eval reference: error: {err}", file=sys.stderr)
            return 2
        print(f"reference: {len(records)} MT-Bench questions with GPT-4 answers -> {args.out}")
        return 0

    def generate_outputs(self, backend: Any, args: argparse.Namespace, model_id: str) -> Any:
        mode = getattr(args, "mode", "official")
        return generate_outputs(
            backend,
            load_reference(args.reference)[: args.limit],
            args.out,
            generator=model_id,
            max_new_tokens=args.max_new_tokens or MAX_NEW_TOKENS[mode],
            chunk_size=args.chunk_size,
        )

    def judge_inputs(self, args: argparse.Namespace) -> tuple[list[dict[str, Any]], ...]:
        return load_annotations(args.outputs)[: args.limit], load_reference(args.reference)

    def judge_outputs(
        self, client: Any, data: Any, args: argparse.Namespace
    ) -> list[dict[str, Any]]:
        model_outputs, reference = data
        records = judge_outputs(client, model_outputs, reference, mode=args.mode)
        Path(args.out).write_text(json.dumps(records, indent=2, ensure_ascii=False))
        return records

    def chain_judge(self, args: argparse.Namespace) -> None:
        args.outputs = args.out

    def chain_score(self, args: argparse.Namespace, judged: Any) -> None:
        args.annotations = [args.out]
        args.model_name = None
        args.leaderboard = None
        args.no_lc = False

    def score(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        """Score each ``--annotations`` file; the LC files a model needs and was not given
        (:func:`hub_lc_needs`) are fetched once from the Hub unless ``--no-download``."""
        weights = load_glm_weights(args.glm_weights) if args.glm_weights else None
        diff = None
        if args.instruction_difficulty:
            diff = load_instruction_difficulty(args.instruction_difficulty)
        gamed = load_gamed(args.gamed) if args.gamed else None
        board = load_leaderboard(args.leaderboard) if args.leaderboard else None
        runs = [load_annotations(path) for path in args.annotations]
        download = not args.no_lc and not getattr(args, "no_download", False)
        needs = [
            hub_lc_needs(
                recs,
                model_name=args.model_name,
                glm_weights=weights,
                instruction_difficulty=diff,
                gamed=gamed,
            )
            if download
            else (False, False)
            for recs in runs
        ]
        hub = fetch_hub_lc_inputs(
            difficulty=any(d for d, _ in needs), gamed=any(g for _, g in needs)
        )
        results = []
        for recs, need in zip(runs, needs):
            res = score_annotations(
                recs,
                mode=args.mode,
                model_name=args.model_name,
                glm_weights=weights,
                instruction_difficulty=hub.instruction_difficulty if need[0] else diff,
                gamed=hub.gamed if need[1] else gamed,
                leaderboard=board,
                lc=not args.no_lc,
            )
            _note_missing_hub_files(res, hub, need)
            print(format_score(res))
            results.append(res.to_dict())
        if args.out:
            write_result(args.out, results if len(results) > 1 else results[0])
        return results

    def table_cells(self, result: Mapping[str, Any]) -> dict[str, float]:
        """``AE``: the plain win rate (the paper's metric) whatever the mode; ``AE*`` for the
        protocol on another instruction set."""
        if result.get("benchmark") != "alpaca_eval_2" or not is_number(result.get("win_rate")):
            return {}
        if result.get("instruction_set", "alpaca_eval") != "alpaca_eval":
            return {"AE*": float(result["win_rate"])}
        return {"AE": float(result["win_rate"])}


def _note_missing_hub_files(
    res: AlpacaEvalScore, hub: HubLCInputs, need: tuple[bool, bool]
) -> None:
    """Say in ``res``'s LC note (and on stderr) why a needed Hub LC file is missing."""
    missing = (need[0] and hub.instruction_difficulty is None) or (need[1] and hub.gamed is None)
    if res.lc is None or not missing:
        return
    why = (
        f"{hub.reason}; for the official LC pass --instruction-difficulty FILE --gamed FILE "
        "(alpaca_eval's instruction_difficulty.csv, df_gamed.csv) or run once online"
    )
    res.lc.note = f"{res.lc.note}; {why}"
    print(f"alpaca_eval score: {res.model}: {res.lc.lc_method}: {why}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/alpaca_eval.py`` argument parser (subcommands generate / judge / score / all /
    reference)."""
    return AlpacaEval().build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/alpaca_eval.py``; returns the exit status.

    ``generate`` -> ``model_outputs.json``; ``judge`` -> ``annotations.json``; ``score`` prints
    (and with ``--out`` writes) the metrics; ``all`` runs the three into ``--out-dir``;
    ``reference`` writes a reference file from MT-Bench (:func:`reference_from_mt_bench`).
    """
    return AlpacaEval().main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
