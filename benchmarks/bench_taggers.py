"""Offline tagger throughput against the encoder it wraps, and the static tagger against both.

::

    python -m benchmarks.bench_taggers                 # 300 LIMA rows (~1 minute on 2 cores)
    python -m benchmarks.bench_taggers --rows 1029 --json bench_out/taggers.json
    python -m benchmarks.bench_taggers --pool alpaca --rows 999 --sweep 0.40:0.70:0.01

Rows: the first ``--rows`` conversations of a real pool, as OpenAI messages: ``lima`` (default)
or ``alpaca`` (the LLaMA-Factory ``alpaca_en_demo``) from the project's shared data folder
(``HF_MIG_SHARED``), or ``demo``, the bundled Apache-2.0 demo pool (also used when the shared
file is missing).

- ``encoder``: sentence-transformers all-MiniLM-L6-v2 ``encode`` of each row's first user turn
  (its default batch of 32, normalised): the baseline, the work itself.
- ``tagger``: ``Dataset.map(EmbeddingTagger(), batched=True, with_indices=True)`` on the same
  rows (no ``map`` cache): reading the batch, embedding, cosine against the 4,531 InsTag tags
  and choosing the labels.
- ``static encoder`` / ``static tagger`` (unless ``--no-static``): the same two with the
  model2vec static embeddings distilled from MiniLM (``static:sentence-transformers/
  all-MiniLM-L6-v2``, its calibrated threshold). The first run distils them into the hf-mig cache
  (about 1.5 minutes of CPU time; the time is printed).
- agreement of the static tagger's labels with the MiniLM tagger's on the same rows: mean
  Jaccard of the two label sets per row (1 when both are empty), precision and recall of the
  static labels taking MiniLM's as the reference (pooled over rows), the share of rows each
  leaves without a label, and, of the rows both label, the share whose label sets intersect.
  ``--sweep LO:HI:STEP`` prints these for every static threshold in the range (the calibration
  of ``DEFAULT_TAG_THRESHOLDS``; see ``benchmarks/CALIBRATION.md``).

Models are loaded and warmed before timing; timings are wall-clock. Targets: the MiniLM tagger
keeps >= 0.8x the encoder's rows/s, and the static tagger runs >= 10x the MiniLM encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_MIG_SHARED", ROOT.parent / "shared"))
POOLS = {
    "lima": ("LIMA", SHARED / "data" / "lima" / "lima.json"),
    "alpaca": ("alpaca_en_demo", SHARED / "data" / "llama_factory_demo" / "alpaca_en_demo.json"),
}
LIMA = POOLS["lima"][1]
STATIC = "static:sentence-transformers/all-MiniLM-L6-v2"
TARGET_RATIO = 0.8
TARGET_STATIC_SPEEDUP = 10.0


def load_rows(limit: int, pool: str = "lima"):
    """``(name, Dataset with a messages column)``: the named shared pool when available, else the
    demo pool."""
    import datasets

    from hf_mig.data.formats import to_messages
    from hf_mig.data.io import load_pool

    name, path = POOLS.get(pool, (None, None))
    if path is not None and path.is_file():
        records = json.loads(path.read_text(encoding="utf-8"))[:limit]
        ds = datasets.Dataset.from_list(records)
    else:
        from hf_mig.data.resources import demo_pool_path

        ds = load_pool(demo_pool_path())
        ds = ds.select(range(min(limit, len(ds))))
        name = "demo pool (self-instruct)"
    ds = ds.map(to_messages, batched=True, with_indices=True, load_from_cache_file=False)
    return name, ds.select_columns(["messages"])


def first_user_turns(ds) -> list[str]:
    texts = []
    for messages in ds["messages"]:
        user = [m["content"] for m in messages if m["role"] == "user" and m["content"].strip()]
        texts.append(user[0] if user else "")
    return texts


def agreement(reference: list[list[str]], labels: list[list[str]]) -> dict[str, float]:
    """How far ``labels`` agree with ``reference``, row by row (see the module docstring)."""
    if len(reference) != len(labels):
        raise ValueError(f"{len(reference)} reference rows but {len(labels)} labelled rows")
    jaccard, common, n_ref, n_got, both, sharing = [], 0, 0, 0, 0, 0
    for ref, got in zip(map(set, reference), map(set, labels)):
        union = ref | got
        jaccard.append(len(ref & got) / len(union) if union else 1.0)
        common, n_ref, n_got = common + len(ref & got), n_ref + len(ref), n_got + len(got)
        if ref and got:
            both, sharing = both + 1, sharing + bool(ref & got)
    rows = max(len(labels), 1)
    return {
        "rows_sharing_a_label": sharing / both if both else 0.0,
        "jaccard": float(np.mean(jaccard)) if jaccard else 1.0,
        "precision": common / n_got if n_got else 0.0,
        "recall": common / n_ref if n_ref else 0.0,
        "empty": sum(1 for got in labels if not got) / rows,
        "empty_reference": sum(1 for ref in reference if not ref) / rows,
        "labels_per_row": n_got / rows,
        "reference_labels_per_row": n_ref / rows,
    }


def select(scores: np.ndarray, labels: list[str], threshold: float, top_m: int) -> list[str]:
    """The tagger's rule: labels with cosine >= threshold, best first (ties by vocabulary
    order), at most ``top_m``."""
    keep = np.flatnonzero(scores >= threshold)
    order = keep[np.lexsort((keep, -scores[keep]))][:top_m]
    return [labels[i] for i in order]


def parse_sweep(text: str) -> list[float]:
    try:
        low, high, step = (float(x) for x in text.split(":"))
    except ValueError as err:
        raise SystemExit(f"--sweep: expected LO:HI:STEP got {text!r}") from err
    if not (step > 0 and low <= high):
        raise SystemExit(f"--sweep: need LO <= HI and STEP > 0, got {text!r}")
    return [round(x, 6) for x in np.arange(low, high + step / 2, step)]


def timed_map(ds, tagger) -> tuple[list[list[str]], float]:
    start = time.perf_counter()
    tagged = ds.map(tagger, batched=True, with_indices=True, load_from_cache_file=False)
    seconds = time.perf_counter() - start
    assert len(tagged) == len(ds)
    return tagged["labels"], seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--pool", choices=[*POOLS, "demo"], default="lima")
    parser.add_argument("--no-static", action="store_true", help="skip the static tagger")
    parser.add_argument("--sweep", help="LO:HI:STEP: static agreement for each threshold")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    sweep = parse_sweep(args.sweep) if args.sweep else None

    from sentence_transformers import SentenceTransformer

    from hf_mig.annotate.taggers import EmbeddingTagger
    from hf_mig.models.embedders import DEFAULT_EMBEDDER, _offline_path

    name, ds = load_rows(args.rows, args.pool)
    texts = [t for t in first_user_turns(ds) if t]
    model = SentenceTransformer(_offline_path(DEFAULT_EMBEDDER) or DEFAULT_EMBEDDER, device="cpu")
    tagger = EmbeddingTagger().load()
    model.encode(texts[:32], normalize_embeddings=True)
    tagger({"messages": ds[:32]["messages"]})

    start = time.perf_counter()
    model.encode(texts, normalize_embeddings=True)
    encoder_seconds = time.perf_counter() - start
    minilm_labels, tagger_seconds = timed_map(ds, tagger)

    results: dict = {
        "pool": name,
        "rows": len(ds),
        "encoder_rows_per_s": len(texts) / encoder_seconds,
        "tagger_rows_per_s": len(ds) / tagger_seconds,
    }
    results["ratio"] = results["tagger_rows_per_s"] / results["encoder_rows_per_s"]
    print(f"{name}: {len(ds):,} rows ({len(texts):,} with a user turn)")
    print(f"encoder (sentence-transformers encode): {results['encoder_rows_per_s']:8.1f} rows/s")
    print(f"EmbeddingTagger via Dataset.map:        {results['tagger_rows_per_s']:8.1f} rows/s")
    ok = results["ratio"] >= TARGET_RATIO
    verdict = "met" if ok else "MISSED"
    print(f"ratio {results['ratio']:.2f} (target >= {TARGET_RATIO}: {verdict})")

    if not args.no_static:
        ok = bench_static(ds, texts, minilm_labels, tagger, results, sweep) and ok
    if args.json:
        from hf_mig.data.io import write_text_atomic

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n", overwrite=True)
    return 0 if ok else 1


def bench_static(ds, texts, minilm_labels, minilm_tagger, results: dict, sweep) -> bool:
    """Time the static encoder and tagger on the same rows, compare labels; ``True`` if the
    speed target is met."""
    from hf_mig.annotate.taggers import EmbeddingTagger

    static = EmbeddingTagger(embedder=STATIC)
    start = time.perf_counter()
    static.load()  # distils on the first use, then loads from the cache
    load_seconds = time.perf_counter() - start
    embed = static._embed
    distilled = getattr(embed, "distill_seconds", None)
    how = f"distilled in {distilled:.1f} s" if distilled is not None else "loaded from the cache"
    print(f"static embedder {how} ({load_seconds:.1f} s with the label matrix); {embed.path}")
    embed(texts[:32])
    static({"messages": ds[:32]["messages"]})

    start = time.perf_counter()
    embed(texts)
    static_encoder_seconds = time.perf_counter() - start
    static_labels, static_seconds = timed_map(ds, static)
    agree = agreement(minilm_labels, static_labels)
    results.update(
        static_threshold=static.threshold,
        static_distill_seconds=distilled,
        static_encoder_rows_per_s=len(texts) / static_encoder_seconds,
        static_tagger_rows_per_s=len(ds) / static_seconds,
        static_agreement={k: round(v, 4) for k, v in agree.items()},
    )
    speedup = results["static_tagger_rows_per_s"] / results["encoder_rows_per_s"]
    results["static_speedup"] = speedup
    for label, key in (
        ("static encoder (model2vec encode):     ", "static_encoder_rows_per_s"),
        ("static EmbeddingTagger via Dataset.map:", "static_tagger_rows_per_s"),
    ):
        print(f"{label} {results[key]:8.1f} rows/s")
    ok = speedup >= TARGET_STATIC_SPEEDUP
    print(
        f"static tagger / MiniLM encoder: {speedup:.1f}x "
        f"(target >= {TARGET_STATIC_SPEEDUP:.0f}x: {'met' if ok else 'MISSED'})"
    )
    print(
        f"agreement with MiniLM at {minilm_tagger.threshold} (static at {static.threshold}): "
        f"mean Jaccard {agree['jaccard']:.3f}, precision {agree['precision']:.3f}, recall "
        f"{agree['recall']:.3f}; rows labelled by both that share a label: "
        f"{agree['rows_sharing_a_label']:.1%}; rows without labels: static "
        f"{agree['empty']:.1%}, MiniLM {agree['empty_reference']:.1%}; labels/row static "
        f"{agree['labels_per_row']:.2f}, MiniLM {agree['reference_labels_per_row']:.2f}"
    )
    if sweep:
        results["static_sweep"] = sweep_thresholds(ds, minilm_labels, static, sweep)
    return ok


def sweep_thresholds(ds, minilm_labels, static, thresholds: list[float]) -> dict[str, dict]:
    """Agreement of the static labels with MiniLM's for each threshold (same rows, same rule)."""
    turns = first_user_turns(ds)
    rows = [k for k, text in enumerate(turns) if text]
    scores = static.similarities([turns[k] for k in rows])
    labels, top_m = static.vocabulary, static.top_m or len(static.vocabulary)
    out = {}
    print(f"{'T':>5} {'jaccard':>8} {'precision':>9} {'recall':>7} {'empty':>6} {'labels/row':>10}")
    for threshold in thresholds:
        got: list[list[str]] = [[] for _ in turns]
        for row, row_scores in zip(rows, scores):
            got[row] = select(row_scores, labels, threshold, top_m)
        agree = agreement(minilm_labels, got)
        out[f"{threshold:.2f}"] = {k: round(v, 4) for k, v in agree.items()}
        print(
            f"{threshold:5.2f} {agree['jaccard']:8.3f} {agree['precision']:9.3f} "
            f"{agree['recall']:7.3f} {agree['empty']:6.1%} {agree['labels_per_row']:10.2f}"
        )
    best = max(out, key=lambda t: out[t]["jaccard"])
    print(f"best mean Jaccard at T={best}: {out[best]['jaccard']:.3f}")
    return out


if __name__ == "__main__":
    sys.exit(main())
