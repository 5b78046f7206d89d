"""Calibrate similarity thresholds for an embedder: the label graph and the tagger.

Run from the repository root (about a minute on 2 CPU cores with all-MiniLM-L6-v2)::

    HF_HUB_OFFLINE=1 python -m benchmarks.calibrate_threshold
    HF_HUB_OFFLINE=1 python -m benchmarks.calibrate_threshold --embedder PATH --skip-tagger
    HF_HUB_OFFLINE=1 python -m benchmarks.calibrate_threshold --graph-thresholds 0.8 \
        --pool ../shared/data/lima/lima.json --limit 400

Part 1, label graph. Embeds the 4,531 InsTag tags (or ``--vocabulary``) and, for every threshold
T in ``--graph-thresholds`` (default 0.60, 0.65, ..., 0.95), counts the edges of the graph that
joins two labels when their cosine is ``>= T``, the labels with at least one neighbour, the
largest degree and the size of the largest connected component; then prints ``--examples``
random edges (seeded) whose cosine lies in ``[T, T + 0.05)``, i.e. the edges that T adds over
the next threshold. Pick the smallest T whose new edges still join near-synonyms or clearly the
same intent, and whose largest component stays small.

Part 2, tagger. Computes, for the first user turn of every row of the demo pool (or of
``--pool``: JSON or JSON lines, OpenAI ``messages``, ShareGPT ``conversations`` or Alpaca
``instruction``/``input`` records; ``--limit`` rows), its cosine with every label; for each tagging
threshold in ``--tag-thresholds`` it prints the share of rows left without a label, the mean
number of labels per row (``top_m`` = 5) and ``--examples`` random (row, label) pairs from that
row's top 5 whose cosine lies in ``[T, T + 0.05)``.

Everything is printed as markdown. The seed makes the examples reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from hf_mig.annotate.taggers.embedding import load_vocabulary
from hf_mig.data.resources import demo_pool_path
from hf_mig.models.embedders import DEFAULT_EMBEDDER, embedder_name, load_embedder


def _grid(spec: str) -> list[float]:
    """Parse ``"start:stop:step"`` (inclusive) or a comma-separated list of floats."""
    if ":" in spec:
        start, stop, step = (float(x) for x in spec.split(":"))
        count = int(round((stop - start) / step)) + 1
        return [round(start + i * step, 4) for i in range(count)]
    return [float(x) for x in spec.split(",")]


def _short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def graph_table(
    labels: Sequence[str],
    emb: np.ndarray,
    thresholds: Sequence[float],
    examples: int,
    band: float,
    rng: np.random.Generator,
) -> str:
    """Markdown: one row of graph statistics per threshold, then example edges per threshold."""
    sims = emb @ emb.T
    upper_r, upper_c = np.triu_indices(len(labels), k=1)
    pair_sims = sims[upper_r, upper_c]
    del sims
    rows = [
        "| T | edges | labels with a neighbour | max degree | largest component |",
        "|---:|---:|---:|---:|---:|",
    ]
    samples = []
    n = len(labels)
    for t in thresholds:
        keep = pair_sims >= t
        r, c = upper_r[keep], upper_c[keep]
        degree = np.bincount(np.concatenate([r, c]), minlength=n)
        graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        largest = int(np.bincount(comp).max())
        rows.append(
            f"| {t:.2f} | {int(keep.sum()):,} | {int((degree > 0).sum()):,} | "
            f"{int(degree.max())} | {largest:,} |"
        )
        in_band = np.flatnonzero(keep & (pair_sims < t + band))
        pick = rng.choice(in_band, size=min(examples, len(in_band)), replace=False)
        pick = pick[np.argsort(-pair_sims[pick])]
        samples.append(
            (
                t,
                len(in_band),
                [(pair_sims[i], labels[upper_r[i]], labels[upper_c[i]]) for i in pick],
            )
        )
    out = ["\n".join(rows), ""]
    for t, total, pairs in samples:
        out.append(f"Edges with cosine in [{t:.2f}, {t + band:.2f}) ({total:,} in all):")
        out.extend(f"- {s:.3f}  {a!r} -- {b!r}" for s, a, b in pairs)
        out.append("")
    return "\n".join(out)


def _first_user_text(row: dict) -> str | None:
    """First non-empty user text of an OpenAI-style, ShareGPT-style or Alpaca-style record."""
    if isinstance(row.get("messages"), list):
        turns = [
            m.get("content")
            for m in row["messages"]
            if isinstance(m, dict) and m.get("role") == "user"
        ]
    elif isinstance(row.get("conversations"), list):
        turns = [
            m.get("value")
            for m in row["conversations"]
            if isinstance(m, dict) and m.get("from") == "human"
        ]
    elif isinstance(row.get("instruction"), str):
        extra = row.get("input")
        turns = [
            row["instruction"]
            + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        ]
    else:
        turns = []
    return next((t for t in turns if isinstance(t, str) and t.strip()), None)


def first_user_turns(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(id, first non-empty user turn) of the first ``limit`` rows of a pool that have one.

    ``path`` is JSON lines or a JSON list; records may be OpenAI-style (``messages``), ShareGPT
    (``conversations`` with ``from``/``value``) or Alpaca (``instruction``, ``input``).
    """
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        records = list(enumerate(json.loads(text), 1))
    else:
        records = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((line_no, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise SystemExit(f"{path}:{line_no}: invalid JSON: {err}") from err
    out = []
    for position, row in records[:limit]:
        user = _first_user_text(row) if isinstance(row, dict) else None
        if user is not None:
            out.append((str(row.get("id", position)), user))
    return out


def tagger_table(
    labels: Sequence[str],
    emb: np.ndarray,
    texts: Sequence[str],
    text_emb: np.ndarray,
    thresholds: Sequence[float],
    examples: int,
    band: float,
    top_m: int,
    rng: np.random.Generator,
) -> str:
    """Markdown: coverage per tagging threshold, then example (row, label) pairs per band."""
    sims = text_emb @ emb.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :top_m]
    top = np.take_along_axis(sims, order, axis=1)
    rows = [
        f"| T | rows without a label | mean labels per row (top_m={top_m}) |",
        "|---:|---:|---:|",
    ]
    best = sims.max(axis=1)
    quartiles = ", ".join(f"{q:.3f}" for q in np.quantile(best, [0.25, 0.5, 0.75]))
    samples = []
    for t in thresholds:
        count = (top >= t).sum(axis=1)
        rows.append(
            f"| {t:.2f} | {int((count == 0).sum())} / {len(texts)} "
            f"({100 * float((count == 0).mean()):.0f}%) | {float(count.mean()):.2f} |"
        )
        r, k = np.nonzero((top >= t) & (top < t + band))
        pick = rng.choice(len(r), size=min(examples, len(r)), replace=False)
        samples.append(
            (t, len(r), [(top[r[i], k[i]], labels[order[r[i], k[i]]], texts[r[i]]) for i in pick])
        )
    out = [f"Best cosine per row, quartiles: {quartiles}.", "", "\n".join(rows), ""]
    for t, total, pairs in samples:
        out.append(f"Top-{top_m} labels with cosine in [{t:.2f}, {t + band:.2f}) ({total:,}):")
        out.extend(f"- {s:.3f}  {label!r} <- {_short(text)!r}" for s, label, text in pairs)
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints markdown to stdout and returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="model id or local path")
    parser.add_argument("--vocabulary", default=None, help="JSON list / text file of labels")
    parser.add_argument("--graph-thresholds", default="0.60:0.95:0.05")
    parser.add_argument("--tag-thresholds", default="0.30:0.60:0.05")
    parser.add_argument(
        "--pool", type=Path, default=None, help="JSON / JSON lines pool (default: demo pool)"
    )
    parser.add_argument("--limit", type=int, default=None, help="use the first N pool rows")
    parser.add_argument("--examples", type=int, default=8, help="examples per threshold")
    parser.add_argument("--band", type=float, default=0.05, help="width of the example band")
    parser.add_argument("--top-m", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-tagger", action="store_true")
    args = parser.parse_args(argv)

    labels = load_vocabulary(args.vocabulary)
    embed = load_embedder(args.embedder)
    started = time.perf_counter()
    emb = embed(labels)
    print(f"# Threshold calibration: {embedder_name(args.embedder)}\n")
    print(
        f"{len(labels):,} labels embedded in {time.perf_counter() - started:.1f} s "
        f"(dim {emb.shape[1]}); seed {args.seed}.\n"
    )
    print("## Label graph (edge when cosine >= T)\n")
    rng = np.random.default_rng(args.seed)
    print(graph_table(labels, emb, _grid(args.graph_thresholds), args.examples, args.band, rng))

    if not args.skip_tagger:
        pool = args.pool or demo_pool_path()
        rows = first_user_turns(pool, args.limit)
        if not rows:
            print(f"{pool}: no row has a user turn", file=sys.stderr)
            return 1
        texts = [text for _, text in rows]
        print(f"## Tagger (first user turn vs label), {len(texts)} rows of {pool.name}\n")
        text_emb = embed(texts)
        rng = np.random.default_rng(args.seed)
        print(
            tagger_table(
                labels,
                emb,
                texts,
                text_emb,
                _grid(args.tag_thresholds),
                args.examples,
                args.band,
                args.top_m,
                rng,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
