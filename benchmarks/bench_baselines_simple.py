"""Benchmark the label-, score- and text-based baselines: score, ifd, instag and zip.

Run from the repository root::

    python -m benchmarks.bench_baselines_simple            # ~3 minutes on 2 cores
    python -m benchmarks.bench_baselines_simple --quick    # reduced sizes, < 1 minute
    python -m benchmarks.bench_baselines_simple --json bench_out/baselines_simple.json

Cases (each in a fresh subprocess, ``--in-process`` to disable; timings from
``benchmarks.bench_select.measure``, which also gives the peak-memory columns):

- ``score``, ``ifd``, ``instag`` (both strategies) and, for comparison, ``mig``: 50,000 of the
  synthetic Tulu-3-shaped pool of 939,000 rows (``benchmarks.synthetic.make_pool_dataset``,
  string labels + DEITA-like scores). ``ifd`` reads a synthetic ``ifd`` column added to that
  pool: log-normal around 0.8, ~19% of rows above 1. Every conversion from Arrow is timed.
- ``zip``: its cost does not depend on the pool size but on the number of rounds
  (``k / k3``), the candidates per round (``k1`` + the stage-3 greedy over ``k2``) and the text
  size, so it runs at a feasible size (default: 1,000 of 20,000 rows with the original
  ``k1, k2, k3 = 10,000, 200, 100``) on synthetic conversations, and is extrapolated to
  50,000 of 939,000: ``own-ratio time per row x 939,000 + time per round x 500``.
  Synthetic conversations: a user and an assistant turn of words drawn from a Zipf-distributed
  vocabulary, log-normal lengths with a mean around 1.5 KB; a row's own compression ratio is
  ~2.0 and that of 500 rows together ~3.1 (LIMA: 2.1 and 2.6).
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_select import (  # noqa: E402
    bench_parser,
    measure,
    run_all,
    serve_case,
    write_json,
)
from benchmarks.synthetic import (  # noqa: E402
    TULU_K_LABELS,
    TULU_N_ROWS,
    label_names,
    make_label_graph,
    make_pool_dataset,
)

MODULE = "benchmarks.bench_baselines_simple"
PAPER_K = 50_000
ZIP_K1, ZIP_K2, ZIP_K3 = 10_000, 200, 100
STAGE3_PER_ROUND = ZIP_K3 * ZIP_K2 - ZIP_K3 * (ZIP_K3 - 1) // 2


# ----------------------------------------------------------------------------- inputs
def add_ifd_column(ds: Any, seed: int) -> Any:
    """``ds`` with a synthetic ``ifd`` column: log-normal, median 0.8, ~19% above 1."""
    rng = np.random.default_rng([int(seed), 77])
    ifd = np.exp(rng.normal(np.log(0.8), 0.25, size=len(ds)))
    return ds.add_column("ifd", ifd)


def make_conversations(n: int, seed: int, mean_chars: float = 1_500.0) -> Any:
    """A ``Dataset`` with a ``messages`` column of ``n`` synthetic two-turn conversations.

    Words come from the syllable words of :func:`benchmarks.synthetic.label_names` with Zipf
    frequencies; a conversation's length is log-normal with mean ``mean_chars``; 20% of its
    words form the user turn, the rest the assistant turn. Deterministic given ``(n, seed)``.
    """
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    rng = np.random.default_rng([int(seed), 501])
    words = np.array(sorted({w for name in label_names(TULU_K_LABELS) for w in name.split()}))
    p = 1.0 / (np.arange(words.size) + 3.0)
    p /= p.sum()
    words = words[rng.permutation(words.size)]
    mean_word = float((np.char.str_len(words) + 1) @ p)
    sigma = 0.7
    chars = np.exp(rng.normal(np.log(mean_chars) - sigma**2 / 2, sigma, size=n))
    n_words = np.maximum(4, (chars / mean_word).astype(np.int64))
    drawn = words[rng.choice(words.size, size=int(n_words.sum()), p=p)]
    contents: list[str] = []
    start = 0
    for count in n_words:
        cut = start + max(1, int(count) // 5)
        stop = start + int(count)
        contents.append(" ".join(drawn[start:cut]) + "?")
        contents.append(" ".join(drawn[cut:stop]) + ".")
        start = stop
    roles = pa.array(["user", "assistant"] * n, type=pa.string())
    turns = pa.StructArray.from_arrays(
        [roles, pa.array(contents, type=pa.string())], names=["role", "content"]
    )
    offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    messages = pa.ListArray.from_arrays(offsets, turns)
    return datasets.Dataset(InMemoryTable(pa.Table.from_arrays([messages], names=["messages"])))


def _warm_instag() -> None:
    """Load the compiled InsTag and encoding kernels with a tiny selection."""
    from hf_mig.selectors import InsTagSelector

    InsTagSelector(k=50).select_indices(make_pool_dataset(2_000, seed=123))


# ----------------------------------------------------------------------------- cases
def case_table(method: str, n: int, k: int, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """``get_selector(method, k, **options).select_indices`` on the synthetic label pool."""
    from hf_mig.selectors import get_selector

    t0 = time.perf_counter()
    if method == "instag":
        _warm_instag()
    ds = make_pool_dataset(n, seed)
    if method == "ifd":
        ds = add_ifd_column(ds, seed)
    if method == "mig":
        from benchmarks.bench_select import _warm_up

        graph = make_label_graph(TULU_K_LABELS, seed)
        _warm_up(graph)
        options = {**options, "label_graph": graph, "progress": False}
    prep = time.perf_counter() - t0
    selector = get_selector(method, k, **options)
    picks, meas = measure(lambda: selector.select_indices(ds), trace=True)
    picks = np.asarray(picks)
    if picks.size != k or np.unique(picks).size != k:
        raise AssertionError(f"{method}: expected {k} distinct picks, got {picks.size}")
    again = get_selector(method, k, **options).select_indices(ds)
    if not np.array_equal(again, picks):
        raise AssertionError(f"{method}: two runs picked differently")
    out: dict[str, Any] = {**meas, "prepare_s": prep, "first_picks": picks[:5].tolist()}
    if method == "instag":
        out["notes"] = (
            f"passes: {selector.passes_}, filled: {selector.n_filled_:,}, "
            f"{len(selector.covered_labels_):,}/{selector.n_pool_labels_:,} labels covered"
        )
    elif method in ("score", "ifd"):
        out["notes"] = f"{selector.n_qualifying_:,} rows qualify"
    elif method == "mig":
        out["notes"] = f"lazy greedy, {selector.result_.stats['evaluations']:,} gain evals"
    return out


def case_zip(n: int, k: int, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """``ZIPSelector(k, **options).select_indices`` on synthetic conversations."""
    from hf_mig.selectors import ZIPSelector

    ds = make_conversations(n, seed)
    selector = ZIPSelector(k=k, progress=False, **options)
    picks, meas = measure(lambda: selector.select_indices(ds))
    picks = np.asarray(picks)
    if picks.size != k or np.unique(picks).size != k:
        raise AssertionError(f"zip: expected {k} distinct picks, got {picks.size}")
    sample = ds.select(range(min(n, 2_000)))["messages"]
    # zlib throughput on this text, for the cost of the original script, which recompresses
    # the whole selection (+ one candidate) for every candidate
    blob = "".join(
        "\n".join(f"{t['role']}: {t['content']}" for t in turns) + "\n" for turns in sample
    ).encode("utf-8")
    t0 = time.perf_counter()
    zlib.compress(blob, 9)
    zlib_rate = len(blob) / (time.perf_counter() - t0)
    chars = sum(len(turn["content"]) for turns in sample for turn in turns)
    timings = selector.timings_
    counts = selector.compressions_
    return {
        **meas,
        "rounds": selector.rounds_,
        "compressions": selector.n_compressions_,
        "timings": timings,
        "own_ratio_s_per_row": timings["own_ratios_s"] / n,
        "compressions_by_phase": counts,
        "stage2_s_per_candidate": timings["stage12_s"] / counts["stage2"],
        "stage3_s_per_round": timings["stage3_s"] / selector.rounds_,
        "mean_conversation_chars": chars / len(sample),
        "mean_unit_bytes": len(blob) / len(sample),
        "zlib_level9_bytes_per_s": zlib_rate,
        "pool_ratio_mean": float(selector.compression_ratios_.mean()),
        "selection_ratio": selector.selection_ratio_,
        "first_picks": picks[:5].tolist(),
    }


CASE_FUNCS = {"table": case_table, "zip": case_zip}


def plan(quick: bool) -> list[dict[str, Any]]:
    """The cases of a full or a ``--quick`` run: ``{"id", "kind", "label", "args"}``."""
    pool, k = (100_000, 5_000) if quick else (TULU_N_ROWS, PAPER_K)
    zip_n, zip_k = (3_000, 200) if quick else (20_000, 1_000)
    seed = 0
    cases = []
    for method, options, tag in [
        ("score", {}, "score"),
        ("ifd", {}, "ifd"),
        ("instag", {}, "instag (passes)"),
        ("instag", {"strategy": "fill"}, "instag (fill)"),
        ("mig", {}, "mig (for comparison)"),
    ]:
        cases.append(
            {
                "id": f"{tag.split()[0]}_{options.get('strategy', '')}_{k}_of_{pool}",
                "kind": "table",
                "method": method,
                "label": f"{tag} {k:,} of {pool:,}",
                "args": {"method": method, "n": pool, "k": k, "seed": seed, "options": options},
            }
        )
    zip_opts = {"k1": ZIP_K1, "k2": ZIP_K2, "k3": ZIP_K3}
    jobs = (1,) if quick else (1, 2)
    for n_jobs in jobs:
        cases.append(
            {
                "id": f"zip_{zip_k}_of_{zip_n}_jobs{n_jobs}",
                "kind": "zip",
                "method": "zip",
                "label": f"zip {zip_k:,} of {zip_n:,} (n_jobs={n_jobs})",
                "args": {
                    "n": zip_n,
                    "k": zip_k,
                    "seed": seed,
                    "options": {**zip_opts, "n_jobs": n_jobs},
                },
            }
        )
    return cases


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this process."""
    return CASE_FUNCS[case["kind"]](**case["args"])


# ----------------------------------------------------------------------------- report
def fmt_s(seconds: float) -> str:
    if seconds >= 3 * 86400:
        return f"{seconds / 86400:,.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3f} s"


def zip_extrapolation(result: dict[str, Any], n: int = TULU_N_ROWS, k: int = PAPER_K) -> dict:
    """ZIP's time for ``k`` of ``n`` from a measured run with the same ``k2``, ``k3`` and text
    sizes: own ratios per row x ``n`` + rounds x (``k1`` stage-2 compressions at the measured
    cost each + the measured stage-3 time per round). The stage-2 cost is taken per candidate
    because a pool smaller than ``k1`` has fewer candidates per round."""
    rounds = int(np.ceil(k / ZIP_K3))
    own = result["own_ratio_s_per_row"] * n
    round_s = result["stage2_s_per_candidate"] * ZIP_K1 + result["stage3_s_per_round"]
    # recompressing everything: round r compresses k1 texts of (r * k3 + 1) rows, and stage 3
    # compresses (k2 - j) texts of (j + 1) rows at its step j
    unit_s = result["mean_unit_bytes"] / result["zlib_level9_bytes_per_s"]
    stage2_rows = ZIP_K1 * (ZIP_K3 * rounds * (rounds - 1) / 2 + rounds)
    stage3_rows = rounds * sum((ZIP_K2 - j) * (j + 1) for j in range(ZIP_K3))
    recompress_s = unit_s * (n + stage2_rows + stage3_rows)
    return {
        "n": n,
        "k": k,
        "rounds": rounds,
        "own_s": own,
        "round_s": round_s,
        "rounds_s": round_s * rounds,
        "total_s": own + round_s * rounds,
        "recompressing_total_s": recompress_s,
    }


def render(cases: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> str:
    """The human-readable report."""
    head = f"{'case':<42} {'time':>10} {'RSS peak':>10} {'py peak':>9}  notes"
    lines = [head, "-" * len(head)]
    for case in cases:
        r = results[case["id"]]
        rss = f"{r['rss_peak_mb']:.0f} MB" + ("" if r["rss_method"] == "VmHWM" else "*")
        py = f"{r['py_peak_mb']:.0f} MB" if "py_peak_mb" in r else "-"
        if case["kind"] == "zip":
            t = r["timings"]
            notes = (
                f"{r['rounds']} rounds, {r['compressions']:,} compressions; own ratios "
                f"{t['own_ratios_s']:.2f} s, stages 1-2 {t['stage12_s']:.1f} s, stage 3 "
                f"{t['stage3_s']:.1f} s; text {r['mean_conversation_chars']:,.0f} chars/row"
            )
        else:
            notes = r.get("notes", "")
        lines.append(f"{case['label']:<42} {fmt_s(r['seconds']):>10} {rss:>10} {py:>9}  {notes}")
    lines.append("")
    for case in cases:
        if case["kind"] != "zip":
            continue
        r = results[case["id"]]
        ex = zip_extrapolation(r)
        lines.append(
            f"ZIP extrapolated to {ex['k']:,} of {ex['n']:,} from '{case['label']}': own ratios "
            f"{fmt_s(ex['own_s'])} + {ex['rounds']} rounds x {ex['round_s']:.2f} s = "
            f"{fmt_s(ex['total_s'])} (per round: {ZIP_K1:,} stage-2 + {STAGE3_PER_ROUND:,} stage-3 "
            "compressions; scales with the mean text size)"
        )
        lines.append(
            f"  recompressing every concatenation from scratch (the original script, one core): "
            f"~{fmt_s(ex['recompressing_total_s'])} at {r['zlib_level9_bytes_per_s'] / 1e6:.0f} "
            f"MB/s (zlib level 9 on this text), "
            f"{ex['recompressing_total_s'] / ex['total_s']:,.0f}x slower"
        )
    if any(r["rss_method"] != "VmHWM" for r in results.values()):
        lines.append("* peak RSS from ru_maxrss (process lifetime), not reset before the call")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (non-zero when a case fails)."""
    args = bench_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if serve_case(args, run_case):
        return 0
    cases = plan(args.quick)
    t0 = time.perf_counter()
    results = run_all("bench_baselines_simple", cases, run_case, MODULE, args.in_process)
    if results is None:
        return 1
    print()
    print(render(cases, results))
    print(f"\n(total benchmark wall time {fmt_s(time.perf_counter() - t0)})")
    if args.json:
        extrapolated = {
            c["id"]: zip_extrapolation(results[c["id"]]) for c in cases if c["kind"] == "zip"
        }
        write_json(args.json, args.quick, cases, results, zip_extrapolated=extrapolated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
