"""Offline tagger throughput against the encoder it wraps, in one process.

::

    python -m benchmarks.bench_taggers                 # 300 LIMA rows (~1 minute on 2 cores)
    python -m benchmarks.bench_taggers --rows 1000 --json bench_out/taggers.json

Rows: the first ``--rows`` conversations of a real pool (LIMA from the project's shared data
folder, ``HF_MIG_SHARED``; without it, the bundled Apache-2.0 demo pool), as OpenAI messages.

- ``encoder``: sentence-transformers all-MiniLM-L6-v2 ``encode`` of each row's first user turn
  (its default batch of 32, normalised): the baseline, the work itself.
- ``tagger``: ``Dataset.map(EmbeddingTagger(), batched=True, with_indices=True)`` on the same
  rows (no ``map`` cache): reading the batch, embedding, cosine against the 4,531 InsTag tags
  and choosing the labels.

Both models are loaded and warmed before timing. Printed: rows/s and the ratio tagger / encoder.
Target: the tagger keeps >= 0.8x the encoder's rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_MIG_SHARED", ROOT.parent / "shared"))
LIMA = SHARED / "data" / "lima" / "lima.json"
TARGET_RATIO = 0.8


def load_rows(limit: int):
    """``(name, Dataset with a messages column)``: LIMA when available, else the demo pool."""
    import datasets

    from hf_mig.formats import to_messages
    from hf_mig.io import load_pool

    if LIMA.is_file():
        records = json.loads(LIMA.read_text(encoding="utf-8"))[:limit]
        ds = datasets.Dataset.from_list(records)
        name = "LIMA"
    else:
        from hf_mig.resources import demo_pool_path

        ds = load_pool(demo_pool_path()).select(range(limit))
        name = "demo pool (self-instruct)"
    ds = ds.map(to_messages, batched=True, with_indices=True, load_from_cache_file=False)
    return name, ds.select_columns(["messages"])


def first_user_turns(ds) -> list[str]:
    texts = []
    for messages in ds["messages"]:
        user = [m["content"] for m in messages if m["role"] == "user" and m["content"].strip()]
        texts.append(user[0] if user else "")
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    from hf_mig.embedders import DEFAULT_EMBEDDER, _offline_path
    from hf_mig.taggers import EmbeddingTagger

    name, ds = load_rows(args.rows)
    texts = [t for t in first_user_turns(ds) if t]
    model = SentenceTransformer(_offline_path(DEFAULT_EMBEDDER) or DEFAULT_EMBEDDER, device="cpu")
    tagger = EmbeddingTagger().load()
    model.encode(texts[:32], normalize_embeddings=True)
    tagger({"messages": ds[:32]["messages"]})

    start = time.perf_counter()
    model.encode(texts, normalize_embeddings=True)
    encoder_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tagged = ds.map(tagger, batched=True, with_indices=True, load_from_cache_file=False)
    tagger_seconds = time.perf_counter() - start
    assert len(tagged) == len(ds)

    results = {
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
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
