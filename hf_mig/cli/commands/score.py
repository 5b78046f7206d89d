"""``hf-mig score POOL OUT``: add a quality score to every row of a pool.

::

    hf-mig score pool.jsonl scored.jsonl --scorer deita                 # DEITA's two scorers
    hf-mig score pool.jsonl scored.jsonl --scorer deita --model smollm2 # one general model
    hf-mig score pool.jsonl scored/ --scorer ifd --model openai-community/gpt2 --shard 3/16
    hf-mig score pool.jsonl scored.parquet --scorer reward --model my/reward-model
    hf-mig score pool.jsonl scored.jsonl --scorer length

Scorers: ``deita`` (``score``, ``deita_complexity``, ``deita_quality``, ``deita_error``,
``deita_truncated``), ``ifd`` (``ifd``, ``ifd_turns``, ``ifd_error``, ``ifd_truncated``; select on
it with ``--score-column ifd``), ``reward`` (``reward``, ``score`` = sigmoid(reward),
``reward_error``, ``reward_truncated``) and ``length`` (``score``, model-free). Pools without a
``messages`` column are converted with :func:`hf_mig.data.formats.with_messages` first.
``--shard I/N`` scores contiguous shard I of N into ``OUT/shard-I-of-N`` (skipped when already
complete); join the shards with ``hf-mig merge OUT merged.jsonl``.

An existing OUT is refused before any work unless ``--overwrite`` (and a folder holding other
files is never replaced); with ``--shard``, OUT may be an existing folder and ``--overwrite``
redoes a complete shard.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import Any

logger = logging.getLogger(__name__)

SCORERS = ("deita", "ifd", "reward", "length")


def register(subparsers: Any) -> None:
    """Add the ``score`` subcommand."""
    p = subparsers.add_parser(
        "score",
        help="score a pool (DEITA, IFD, a reward model or length)",
        description=__doc__.split("::")[0].strip() if __doc__ else None,
    )
    p.add_argument("pool", help="pool: .jsonl/.json/.parquet/.csv file, saved folder or Hub id")
    p.add_argument("out", help="output file (.jsonl/.json/.parquet/.csv) or folder")
    p.add_argument("--scorer", required=True, choices=SCORERS, help="which score")
    p.add_argument(
        "--model",
        default=None,
        help="model id, folder, .gguf file, 'smollm2' or 'hf-mig:tiny-llama' (deita: one model "
        "for both prompts; ifd default openai-community/gpt2; reward: required)",
    )
    p.add_argument("--complexity-model", default=None, help="deita: complexity scorer model")
    p.add_argument("--quality-model", default=None, help="deita: quality scorer model")
    p.add_argument("--tokenizer", default=None, help="tokenizer id/folder if not the model's")
    p.add_argument("--reduce", default="mean", choices=["mean", "sum"], help="deita: combine turns")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    p.add_argument(
        "--map-batch-size", type=int, default=256, help="rows per Dataset.map batch (default 256)"
    )
    p.add_argument("--num-proc", type=int, default=None, help="processes for Dataset.map")
    p.add_argument("--shard", default=None, metavar="I/N", help="score shard I of N only")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT written by hf-mig (a file, or a folder holding only a "
        "saved dataset); with --shard, redo a complete shard",
    )
    p.add_argument("--max-length", type=int, default=None, help="window cap in tokens")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:0, ...")
    p.add_argument("--padding-side", default="left", choices=["left", "right"])
    p.add_argument(
        "--use-chat-template",
        action="store_true",
        help="deita/ifd: wrap prompts in the tokenizer's chat template",
    )
    p.add_argument(
        "--prompt-template",
        default=None,
        help="ifd: prompt with {instruction} (\\n and \\t are read as newline and tab)",
    )
    p.add_argument("--messages-column", default="messages")
    p.add_argument("--split", default="train", help="split of a Hub dataset or DatasetDict")
    p.add_argument("--skip-bad-lines", action="store_true", help="skip malformed JSON lines")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute even when the datasets cache holds this exact map",
    )
    p.set_defaults(func=cmd_score)


def build_scorer(args: argparse.Namespace) -> Any:
    """The scorer the arguments ask for (nothing is loaded yet)."""
    from hf_mig.annotate.scorers import DeitaScorer, IFDScorer, LengthScorer, RewardModelScorer

    common = dict(
        batch_size=args.batch_size,
        max_length=args.max_length,
        dtype=args.dtype,
        device=args.device,
        tokenizer=args.tokenizer,
        trust_remote_code=args.trust_remote_code,
    )
    if args.scorer == "length":
        return LengthScorer()
    if args.scorer == "deita":
        options: dict[str, Any] = {}
        if args.complexity_model:
            options["complexity_model"] = args.complexity_model
        if args.quality_model:
            options["quality_model"] = args.quality_model
        return DeitaScorer(
            model=args.model,
            reduce=args.reduce,
            padding_side=args.padding_side,
            use_chat_template=args.use_chat_template,
            **options,
            **common,
        )
    if args.scorer == "ifd":
        extra: dict[str, Any] = {}
        if args.prompt_template:
            extra["prompt_template"] = args.prompt_template.replace("\\n", "\n").replace(
                "\\t", "\t"
            )
        if args.model:
            extra["model"] = args.model
        return IFDScorer(
            padding_side=args.padding_side,
            use_chat_template=args.use_chat_template,
            **extra,
            **common,
        )
    if not args.model:
        raise ValueError("--scorer reward needs --model (a sequence-classification reward model)")
    return RewardModelScorer(args.model, **common)


#: The score columns each scorer writes; the first is the one the summary describes.
SCORE_COLUMNS: dict[str, tuple[str, ...]] = {
    "deita": ("score", "deita_complexity", "deita_quality"),
    "ifd": ("ifd",),
    "reward": ("reward", "score"),
    "length": ("score",),
}
#: What the lowest score means, per scorer (a score, never a failure).
LOW_SCORE_MEANING = {
    "length": "LengthScorer gives 0 to a row with no turn having both a non-empty request and a "
    "non-empty answer",
    "deita": "DEITA's lowest possible score is 1: complexity 1 x quality 1",
    "ifd": "the answer is no harder to predict without the instruction than with it",
    "reward": "the reward model's least preferred conversation",
}


def score_counts(ds: Any, scorer: str) -> dict[str, Any]:
    """What a scored dataset holds, for the summary ``hf-mig score`` prints.

    Keys: ``rows``, ``score_column``; ``rows_with_errors`` (the scorer's ``*_error`` column is
    set: the scorer failed on the row and it has no score) and ``rows_without_score`` (a null
    score, failed or not); ``truncated_sequences``; with scores, ``mean``, ``min``, ``max``,
    ``rows_at_min`` (rows scoring exactly the minimum: scored rows, not failures) and
    ``rows_scoring_zero``; ``collapse``: ``{column: warning}`` for each score column the scorer
    writes (per-turn list columns flattened) that :func:`hf_mig.core.summary.score_collapse` finds
    collapsed (one value, or most rows at the lowest or highest score).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from hf_mig.core.summary import score_collapse

    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    column = {"ifd": "ifd", "reward": "reward"}.get(scorer, "score")
    counts: dict[str, Any] = {"rows": len(ds), "score_column": column}
    error = f"{scorer}_error"
    counts["rows_with_errors"] = (
        len(ds) - table.column(error).null_count if error in ds.column_names else 0
    )
    truncated = f"{scorer}_truncated"
    counts["truncated_sequences"] = (
        int(pc.sum(table.column(truncated)).as_py() or 0) if truncated in ds.column_names else 0
    )
    if column in ds.column_names:
        counts["rows_without_score"] = table.column(column).null_count
    if len(ds) and column in ds.column_names:
        values = [v for v in table.column(column).to_pylist() if v is not None]
        if values:
            counts["mean"] = math.fsum(values) / len(values)
            counts["min"], counts["max"] = min(values), max(values)
            counts["rows_at_min"] = sum(1 for v in values if v == counts["min"])
            counts["rows_scoring_zero"] = sum(1 for v in values if v == 0)
    collapse: dict[str, str] = {}
    for name in SCORE_COLUMNS.get(scorer, (column,)):
        if name not in ds.column_names or not len(ds):
            continue
        col = table.column(name)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.list_flatten(col)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            continue
        found = score_collapse(col)
        if found:
            collapse[name] = f"score collapse in column {name!r}: {found['message']}"
    counts["collapse"] = collapse
    return counts


def format_score_counts(counts: dict[str, Any], scorer: str, where: str = "") -> list[str]:
    """The summary lines of :func:`score_counts` (warnings are in ``counts["collapse"]``)."""
    line = (
        f"{where}rows: {counts['rows']:,}; rows with errors: {counts['rows_with_errors']:,}; "
        f"truncated sequences: {counts['truncated_sequences']:,}"
    )
    if "mean" in counts:
        line += (
            f"; {counts['score_column']}: mean {counts['mean']:.4g} "
            f"[{counts['min']:.4g}, {counts['max']:.4g}]"
        )
    lines = [line]
    if scorer == "length":
        lines.append("  rows with errors: rows the scorer failed on (none with length)")
    else:
        lines.append(
            f"  rows with errors: rows the scorer failed on ({scorer}_error says why); they have "
            "no score"
        )
    unscored = counts.get("rows_without_score", 0) - counts["rows_with_errors"]
    if unscored > 0:
        lines.append(f"  rows without a score and without an error: {unscored:,}")
    if "rows_at_min" in counts:
        lowest = counts["min"]
        meaning = LOW_SCORE_MEANING.get(scorer)
        if scorer == "length" and lowest != 0:
            meaning = None
        lines.append(
            f"  rows at the lowest score ({lowest:.4g}): {counts['rows_at_min']:,}; scored, not "
            "failed" + (f" ({meaning})" if meaning else "")
        )
        if lowest != 0 and counts["rows_scoring_zero"]:
            lines.append(f"  rows scoring 0: {counts['rows_scoring_zero']:,}; scored, not failed")
    return lines


def cmd_score(args: argparse.Namespace) -> int:
    """Run ``hf-mig score``; prints counts; exit 0 (row failures are recorded, not fatal).

    Arguments and OUT are checked before the pool is read or a model loaded (an OUT that may not be
    written raises :class:`hf_mig.data.io.OutputExistsError`).
    """
    from hf_mig.data.formats import with_messages
    from hf_mig.data.io import load_pool
    from hf_mig.runtime.sharding import check_run_output, run_sharded

    for name in ("batch_size", "map_batch_size"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.num_proc is not None and args.num_proc < 1:
        raise ValueError(f"--num-proc must be >= 1, got {args.num_proc}")
    check_run_output(args.out, args.shard, overwrite=args.overwrite, inputs=[args.pool])
    start = time.perf_counter()
    scorer = build_scorer(args)
    pool = load_pool(args.pool, split=args.split, skip_bad_lines=args.skip_bad_lines)
    num_proc = args.num_proc if args.num_proc and args.num_proc > 1 else None
    model_based = args.scorer != "length"

    def process(ds: Any) -> Any:
        ds = with_messages(ds, args.messages_column)
        return ds.map(
            scorer,
            batched=True,
            batch_size=args.map_batch_size,
            with_indices=model_based,
            with_rank=model_based,
            num_proc=num_proc,
            load_from_cache_file=not args.no_cache,
            desc=f"score ({args.scorer})",
        )

    run = run_sharded(pool, args.out, process, args.shard, overwrite=args.overwrite)
    where = f"shard {run.index}/{run.num_shards} " if run.index is not None else ""
    counts = score_counts(run.load(), args.scorer)
    counts["seconds"] = round(time.perf_counter() - start, 3)
    if run.skipped:
        print(f"{where}already complete at {run.path} ({counts['rows']:,} rows): skipped")
    print("\n".join(format_score_counts(counts, args.scorer, where)))
    for warning in counts["collapse"].values():
        print(f"hf-mig score: warning: {where}{warning}", file=sys.stderr)
    if not run.skipped:
        print(f"wrote {counts['rows']:,} rows to {run.path} in {counts['seconds']:.1f} s")
    if counts["rows_with_errors"]:
        print(
            f"rows with errors have {args.scorer}_error set and no score; they stay in the output"
        )
    logger.debug("score counts: %s", json.dumps(counts))
    return 0
