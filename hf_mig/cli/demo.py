"""``hf-mig demo``: the whole pipeline on the bundled self-instruct pool, offline.

Tag (EmbeddingTagger over the InsTag vocabulary) -> score (LengthScorer) -> label graph ->
MIG selection, then a readable account of what was picked and why, beside a top-score and a
random selection of the same size.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import time
from pathlib import Path

import numpy as np
from datasets import Dataset, load_dataset

from hf_mig.annotate.graph import LabelGraph
from hf_mig.annotate.scorers import LengthScorer
from hf_mig.core.summary import selection_summary
from hf_mig.data.io import (
    OutputExistsError,
    atomic_output,
    check_output,
    save_dataset,
    write_text_atomic,
)
from hf_mig.data.resources import demo_pool_path
from hf_mig.selectors import MIGSelector, RandomSelector


def _excerpt(messages: list[dict], width: int = 60) -> str:
    text = next((m["content"] for m in messages if m["role"] == "user"), "")
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder="...")


#: Files the demo writes into its ``--out`` folder.
DEMO_OUTPUTS = ("mig_subset.jsonl", "label_graph.npz")
#: Records, in the ``--out`` folder, the files the demo wrote and their sha256.
DEMO_MANIFEST = ".hf-mig-demo.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _written_by_demo(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the outputs an earlier demo run recorded in ``folder``."""
    try:
        files = json.loads((folder / DEMO_MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}


def check_demo_outputs(out_dir: str | os.PathLike) -> dict[str, bool]:
    """Check, before any work, that the demo may write its outputs into ``out_dir``.

    Returns ``{file name: overwrite}``: a file is replaced only when an earlier demo run wrote
    it and it is unchanged since (its sha256 is the one recorded in ``DEMO_MANIFEST``). Raises
    :class:`~hf_mig.data.io.OutputExistsError` for any other existing file; nothing else in the
    folder is touched.
    """
    folder = Path(out_dir)
    recorded = _written_by_demo(folder)
    plan: dict[str, bool] = {}
    for name in DEMO_OUTPUTS:
        path = folder / name
        ours = path.is_file() and recorded.get(name) == _sha256(path)
        try:
            check_output(path, overwrite=ours)
        except OutputExistsError:
            raise OutputExistsError(
                f"{path}: exists and was not written by hf-mig demo (or was changed since); "
                "move it away or choose another --out folder"
            ) from None
        plan[name] = ours
    return plan


def write_demo_outputs(
    subset: Dataset,
    graph: LabelGraph,
    out_dir: str | os.PathLike,
    plan: dict[str, bool] | None = None,
) -> list[Path]:
    """Write the selected subset (JSON Lines) and the label graph into ``out_dir``.

    ``plan`` comes from :func:`check_demo_outputs` (called here when not given). Each file is
    written atomically, then recorded with its sha256 in ``DEMO_MANIFEST`` so that a later run
    replaces it, and only it. Returns the paths written.
    """
    folder = Path(out_dir)
    if plan is None:
        plan = check_demo_outputs(folder)
    subset_path, graph_path = (folder / name for name in DEMO_OUTPUTS)
    save_dataset(subset, subset_path, overwrite=plan[subset_path.name])
    with atomic_output(graph_path, overwrite=plan[graph_path.name]) as tmp:
        graph.save(tmp)
    recorded = _written_by_demo(folder)
    recorded.update({p.name: _sha256(p) for p in (subset_path, graph_path)})
    manifest = json.dumps({"files": recorded}, indent=2, sort_keys=True) + "\n"
    write_text_atomic(folder / DEMO_MANIFEST, manifest, overwrite=True)
    return [subset_path, graph_path]


def build_demo_pool(progress: bool = True) -> Dataset:
    """The bundled pool with ``labels`` and ``score`` columns added by ``Dataset.map``."""
    from hf_mig.annotate.taggers import EmbeddingTagger

    pool = load_dataset("json", data_files=str(demo_pool_path()), split="train")
    pool = pool.map(EmbeddingTagger(), batched=True, batch_size=128, desc="Tagging")
    pool = pool.map(LengthScorer(), batched=True, desc="Scoring")
    return pool


def run_demo(k: int = 40, out_dir: str | os.PathLike | None = None, echo=print) -> dict:
    """Run the demo; print the account with ``echo`` and return its numbers.

    With ``out_dir``, the outputs are checked first (:func:`check_demo_outputs`) and written
    with :func:`write_demo_outputs`.
    """
    plan = check_demo_outputs(out_dir) if out_dir is not None else None
    start = time.perf_counter()
    pool = build_demo_pool()
    labels = sorted({label for row in pool["labels"] for label in row})
    graph = LabelGraph.from_labels(labels)
    selector = MIGSelector(k, label_graph=graph, record_gains=True)
    subset = selector.select(pool)
    order = np.argsort(-np.asarray(pool["score"]), kind="stable")
    top_score = pool.select(order[:k])
    random_subset = RandomSelector(k, seed=42).select(pool)
    seconds = time.perf_counter() - start

    stats = graph.stats()
    summaries = {
        "mig": selection_summary(pool, subset),
        "top_score": selection_summary(pool, top_score),
        "random": selection_summary(pool, random_subset),
    }
    pool_unlabelled = summaries["mig"]["pool_unlabelled_rows"]
    echo(f"Pool: {len(pool)} self-instruct tasks (Apache-2.0), bundled with hf-mig.")
    echo(
        f"Tagged with the {len(selector.label_graph_.labels)} InsTag labels they use "
        f"({pool_unlabelled} of {len(pool)} rows got no label above the tagger's threshold; "
        f"they are kept and rank last); scored with LengthScorer, the best offline scorer "
        "measured (README: Annotating a pool)."
    )
    echo(
        f"Label graph: {stats['num_labels']} labels, {stats['num_edges']} edges at "
        f"T={graph.threshold} (all-MiniLM-L6-v2)."
    )
    echo("")
    echo(f"MIG picked {k} rows. The first ten, with the information gain each added:")
    echo(f"  {'#':>2}  {'gain':>7}  {'score':>5}  labels / request")
    for rank in range(min(10, k)):
        row = subset[rank]
        echo(
            f"  {rank + 1:>2}  {row['mig_gain']:7.2f}  {row['score']:5.1f}  "
            f"{', '.join(row['labels'][:3]) or '(no label)'}"
        )
        echo(f"  {'':>2}  {'':>7}  {'':>5}  \u2514 {_excerpt(row['messages'])}")
    echo("")
    echo("Why: a row's gain is its score times how little the pool's picks so far cover its")
    echo("labels (and their graph neighbours), so high scores on labels not yet seen come first.")
    echo(
        f"The gain fell from {subset['mig_gain'][0]:.2f} to {subset['mig_gain'][-1]:.2f} as "
        "labels filled up."
    )
    echo("")
    header = f"{'selection':<10} {'labels covered':>15} {'mean score':>11}"
    echo(f"  {header} {'rows without a label':>21}")
    for name, s in summaries.items():
        echo(
            f"  {name:<10} {s['selected_labels']:>7} / {s['pool_labels']:<5} "
            f"{s['selected_mean_score']:>11.2f} {s['selected_unlabelled_rows']:>21}"
        )
    echo(
        f"  {'pool':<10} {'':>15} {summaries['mig']['pool_mean_score']:>11.2f} "
        f"{pool_unlabelled:>21}"
    )
    echo("  (labels covered: distinct labels; rows without a label: no label at all)")
    if out_dir is not None:
        written = write_demo_outputs(subset, graph, out_dir, plan)
        echo(f"\nWrote {written[0]} and {written[1]}")
    echo(f"\nDone in {seconds:.1f} s.")
    return {
        "summaries": summaries,
        "graph": stats,
        "seconds": seconds,
        "selected_ids": subset["id"],
    }
