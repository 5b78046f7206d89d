"""Benchmark the whole ``hf-mig select`` command against the selection it wraps.

Run from the repository root::

    python -m benchmarks.bench_cli_select                  # 2M rows (~2 minutes on 2 cores)
    python -m benchmarks.bench_cli_select --rows 200000    # quick
    python -m benchmarks.bench_cli_select --json bench_out/cli_select.json

A synthetic Tulu-3-shaped pool (:mod:`benchmarks.synthetic`, string labels, K = 4,531) is
written once as a saved dataset folder (memory-mapped, as ``load_pool`` reads it) and as
parquet, with the synthetic label graph. In one process, after a warm-up call:

- ``select_indices``: ``MIGSelector(k, label_graph=...).select_indices(pool)`` on the loaded
  pool: the baseline, the work itself.
- ``command``: ``hf_mig.cli.main.main(["select", POOL, "-k", k, "--graph", G, "-o", OUT.parquet,
  "--summary-json", S])``: loading, validation, the same selection, writing the subset, the
  summary. Timed for the folder pool and for the parquet pool (whose first load converts it to
  Arrow; the conversion is then cached by content, so the timed run is a cache hit).

Printed: seconds, how far the call raised the process's peak RSS (``ru_maxrss``), and the
ratio command / select_indices.
Target: the command on the folder pool takes at most 1.5x ``select_indices`` at 2M rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import make_label_graph, make_pool_dataset  # noqa: E402

TARGET_RATIO = 1.5


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn) -> tuple[float, float]:
    before = _rss_peak_mb()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, max(0.0, _rss_peak_mb() - before)


def run(rows: int, k: int, work: Path) -> dict:
    import hf_mig
    from hf_mig.cli import main as cli

    pool = make_pool_dataset(rows, seed=0)
    folder, parquet, graph = work / "pool", work / "pool.parquet", work / "graph.npz"
    pool.save_to_disk(str(folder))
    pool.to_parquet(str(parquet))
    make_label_graph(seed=0).save(graph)
    del pool

    def command(source: Path, tag: str) -> None:
        argv = ["-q", "select", str(source), "-k", str(k), "--graph", str(graph)]
        out, summary = work / f"out-{tag}.parquet", work / f"summary-{tag}.json"
        argv += ["-o", str(out), "--summary-json", str(summary), "--overwrite"]
        if cli.main(argv) != 0:
            raise SystemExit(f"hf-mig select failed on {source}")

    loaded = hf_mig.load_pool(folder)
    selector = hf_mig.MIGSelector(k, label_graph=graph, progress=False)
    selector.select_indices(loaded)  # warm-up: numba compilation, page cache
    command(parquet, "warm")  # fills the parquet -> Arrow cache
    results = {"rows": rows, "k": k}
    seconds, rss = _timed(lambda: selector.select_indices(loaded))
    results["select_indices"] = {"seconds": seconds, "rss_peak_growth_mb": rss}
    for source, tag in ((folder, "folder"), (parquet, "parquet")):
        seconds, rss = _timed(lambda s=source, t=tag: command(s, t))
        results[f"command_{tag}"] = {"seconds": seconds, "rss_peak_growth_mb": rss}
        results[f"ratio_{tag}"] = seconds / results["select_indices"]["seconds"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("-k", type=int, default=50_000)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hf_mig_bench_cli_") as tmp:
        results = run(args.rows, args.k, Path(tmp))
    base = results["select_indices"]["seconds"]
    print(f"pool {results['rows']:,} rows, k = {results['k']:,}")
    print(f"{'case':<24}{'seconds':>10}{'RSS peak +MB':>14}{'x select':>10}")
    for case in ("select_indices", "command_folder", "command_parquet"):
        r = results[case]
        ratio = r["seconds"] / base
        print(f"{case:<24}{r['seconds']:>10.2f}{r['rss_peak_growth_mb']:>14.0f}{ratio:>10.2f}")
    ok = results["ratio_folder"] <= TARGET_RATIO
    verdict = "met" if ok else "MISSED"
    print(f"target: command (folder) <= {TARGET_RATIO}x select_indices: {verdict}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
