"""``hf-mig score POOL OUT``: add a quality score to every row of a pool.

::

    hf-mig score pool.jsonl scored.jsonl --scorer deita                 # DEITA's two scorers
    hf-mig score pool.jsonl scored.jsonl --scorer deita --model smollm2 # one general model
    hf-mig score pool.jsonl scored/ --scorer ifd --model openai-community/gpt2 --shard 3/16
    hf-mig score pool.jsonl scored.parquet --scorer reward --model my/reward-model
    hf-mig score pool.jsonl scored.jsonl --scorer length
    hf-mig score pool.jsonl costed.jsonl --scorer tokens --tokenizer Qwen/Qwen2.5-7B
    hf-mig score pool.jsonl scored.parquet --scorer deita --engine ray --ray-concurrency 8 \
        --num-gpus-per-worker 1

Scorers (every one registered in :data:`hf_mig.annotate.scorers.SCORERS`, with the options its
class declares): ``deita`` (``score``, ``deita_complexity``, ``deita_quality``, ``deita_error``,
``deita_truncated``), ``ifd`` (``ifd``, ``ifd_turns``, ``ifd_error``, ``ifd_truncated``; select on
it with ``--score-column ifd``), ``reward`` (``reward``, ``score`` = sigmoid(reward),
``reward_error``, ``reward_truncated``), the model-free ``length``, ``constant`` and
``label-count`` (``score``), and ``tokens`` (``num_tokens``, int64, for ``hf-mig select --budget``;
``--tokenizer`` and ``--output-column``). Pools without a ``messages`` column are converted with
:func:`hf_mig.data.conversations.with_messages` first.
``--shard I/N`` scores contiguous shard I of N into ``OUT/shard-I-of-N`` (skipped when already
complete); join the shards with ``hf-mig merge OUT merged.jsonl``.

An existing OUT is refused before any work unless ``--overwrite`` (and a folder holding other
files is never replaced); with ``--shard``, OUT may be an existing folder and ``--overwrite``
redoes a complete shard.

``--engine ray`` runs the scorer on Ray Data actors (:mod:`hf_mig.runtime.ray_data`):
``--ray-concurrency`` actors, each with one copy of the model and ``--num-gpus-per-worker`` GPUs,
on the Ray at ``--ray-address`` (default ``$RAY_ADDRESS``, else a new local Ray); the output is
the local engine's, row for row (``--no-cache`` concerns the local engine's ``datasets`` cache).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import Any

from hf_mig.annotate.base import Scorer, add_step_options, step_arguments
from hf_mig.annotate.scorers import SCORERS
from hf_mig.cli.commands._annotate import add_run_arguments, check_run, run_step, shard_prefix

logger = logging.getLogger(__name__)

NAME = "score"
HELP = f"score a pool ({', '.join(SCORERS)})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run arguments; ``--scorer`` is any registered scorer and the options of every scorer
    class are flags."""
    add_run_arguments(parser, "score")
    parser.add_argument("--scorer", required=True, choices=list(SCORERS), help="which score")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute even when the datasets cache holds this exact map",
    )
    add_step_options(parser, list(SCORERS.values()))


def build_scorer(args: argparse.Namespace) -> Any:
    """The scorer the arguments ask for (nothing is loaded yet)."""
    cls = SCORERS[args.scorer]
    return cls(**step_arguments(cls, args, {}, f"--scorer {args.scorer}"))


def _scorer_class(scorer: str) -> type[Scorer]:
    """The registered class of ``scorer`` (the :class:`Scorer` defaults for another name)."""
    cls = SCORERS.get(scorer)
    return cls if cls is not None and issubclass(cls, Scorer) else Scorer


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
    cls = _scorer_class(scorer)
    column = cls.score_columns[0]
    counts: dict[str, Any] = {"rows": len(ds), "score_column": column}
    error = f"{cls.prefix or scorer}_error"
    counts["rows_with_errors"] = (
        len(ds) - table.column(error).null_count if error in ds.column_names else 0
    )
    truncated = f"{cls.prefix or scorer}_truncated"
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
    for name in cls.score_columns:
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
    cls = _scorer_class(scorer)
    if cls.prefix is None:
        lines.append(f"  rows with errors: rows the scorer failed on (none with {scorer})")
    else:
        lines.append(
            f"  rows with errors: rows the scorer failed on ({cls.prefix}_error says why); they "
            "have no score"
        )
    unscored = counts.get("rows_without_score", 0) - counts["rows_with_errors"]
    if unscored > 0:
        lines.append(f"  rows without a score and without an error: {unscored:,}")
    if "rows_at_min" in counts:
        lowest = counts["min"]
        meaning = cls.low_score_meaning
        if cls.low_score is not None and lowest != cls.low_score:
            meaning = None
        lines.append(
            f"  rows at the lowest score ({lowest:.4g}): {counts['rows_at_min']:,}; scored, not "
            "failed" + (f" ({meaning})" if meaning else "")
        )
        if lowest != 0 and counts["rows_scoring_zero"]:
            lines.append(f"  rows scoring 0: {counts['rows_scoring_zero']:,}; scored, not failed")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ``hf-mig score``; prints counts; exit 0 (row failures are recorded, not fatal).

    Arguments and OUT are checked before the pool is read or a model loaded (an OUT that may not be
    written raises :class:`hf_mig.data.io.OutputExistsError`).
    """
    check_run(args, ("batch_size", "map_batch_size"))
    start = time.perf_counter()
    scorer = build_scorer(args)
    run = run_step(
        args,
        scorer,
        desc=f"score ({args.scorer})",
        with_indices=scorer.uses_rank,
        with_rank=scorer.uses_rank,
        load_from_cache_file=not args.no_cache,
    )
    where = shard_prefix(run)
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
        error = f"{_scorer_class(args.scorer).prefix or args.scorer}_error"
        print(f"rows with errors have {error} set and no score; they stay in the output")
    logger.debug("score counts: %s", json.dumps(counts))
    return 0
