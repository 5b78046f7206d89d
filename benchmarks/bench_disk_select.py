"""Benchmark MIG selection from a pool on disk (Parquet shards) that is never loaded whole.

Run from the repository root::

    python -m benchmarks.bench_disk_select /tmp/mig100m              # 100M rows, 1M picks
    python -m benchmarks.bench_disk_select /tmp/mig2m --rows 2000000 --k 10000 \\
        --subset-rows 1000000 --subset-k 2000                         # smoke test, ~1 minute

The pool is generated once into ``FOLDER/shards`` (1M-row Parquet files; reused when the
generation parameters match): a ``labels`` column (``list<string>``, 1 to 5 labels per row
drawn from ``--labels`` word-like labels with Zipf-like frequencies, repeats possible) and a
float ``score``. The label graph is the synthetic thresholded graph of
:mod:`benchmarks.synthetic` (no embedder). Stages, each in its own process (the peak resident
set, ``VmHWM``, is reset through ``/proc/self/clear_refs`` before each stage; it counts the
memory-mapped files the stage touched):

- ``encode``: :func:`hf_mig.data.streaming.pool_encoding` into an empty cache (one pass);
- ``select``: ``MIGSelector(k).select_indices(FOLDER/shards)``, the encoding cached (checks,
  bounds, lazy greedy);
- ``write``: :func:`hf_mig.data.streaming.write_rows` of the picks to Parquet (second pass);
- on the first ``--subset-rows`` rows (a multiple of 1M; ``FOLDER/subset``, links to the
  first shards): the
  in-memory path (``pyarrow`` table -> ``Dataset`` -> ``select_indices``) against the disk path
  from an empty cache; the picks must be identical (the benchmark exits non-zero otherwise).

Each process first runs a tiny selection so that numba's compiled code is loaded, not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import label_frequencies, label_names, make_label_graph  # noqa: E402

SHARD_ROWS = 1_000_000
_SEED = 0


# ---------------------------------------------------------------------------- the pool
def _shard(index: int, rows: int, names, table: np.ndarray):
    import pyarrow as pa

    rng = np.random.default_rng([_SEED, 7, index])
    counts = rng.integers(1, 6, size=rows)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    ids = table[rng.integers(0, table.size, size=int(offsets[-1]))]
    labels = pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(ids)))
    scores = np.round(rng.gamma(4.0, 2.5, size=rows), 4)
    return pa.table({"labels": labels, "score": scores})


def generate(folder: Path, rows: int, k_labels: int) -> Path:
    """Write the pool's shards into ``folder/shards`` (kept when the parameters match)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = folder / "shards"
    params = {"rows": rows, "labels": k_labels, "seed": _SEED, "shard_rows": SHARD_ROWS}
    stamp = shards / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return shards
    if shards.exists():
        if not stamp.is_file():
            raise SystemExit(
                f"{shards} exists and was not written by this benchmark: give a new FOLDER"
            )
        shutil.rmtree(shards)  # an earlier pool of this benchmark, with other parameters
    shards.mkdir(parents=True)
    names = pa.array(label_names(k_labels), type=pa.string())
    p = label_frequencies(k_labels, _SEED)
    table = np.repeat(
        np.arange(k_labels, dtype=np.int32), np.maximum(1, (p * (1 << 22)).astype(int))
    )
    start = time.perf_counter()
    for index, first in enumerate(range(0, rows, SHARD_ROWS)):
        part = _shard(index, min(SHARD_ROWS, rows - first), names, table)
        tmp = shards / f".part-{index:05d}.tmp"
        pq.write_table(part, tmp, row_group_size=1 << 18)
        os.rename(tmp, shards / f"part-{index:05d}.parquet")
    stamp.write_text(json.dumps(params))
    size = sum(f.stat().st_size for f in shards.glob("*.parquet"))
    print(f"generated {rows:,} rows in {time.perf_counter() - start:.0f} s ({size / 1e9:.2f} GB)")
    return shards


def subset(folder: Path, shards: Path, rows: int) -> Path:
    """``folder/subset``: links to the shards holding the first ``rows`` rows."""
    out = folder / "subset"
    marker = folder / "subset.json"  # beside: the folder holds only the pool's files
    if out.exists():
        if not marker.is_file():
            raise SystemExit(
                f"{out} exists and was not written by this benchmark: give a new FOLDER"
            )
        shutil.rmtree(out)
        marker.unlink()
    if rows % SHARD_ROWS:
        raise SystemExit(f"--subset-rows must be a multiple of {SHARD_ROWS:,} (whole shards)")
    out.mkdir()
    for f in sorted(shards.glob("*.parquet"))[: max(1, rows // SHARD_ROWS)]:
        os.symlink(f, out / f.name)
    marker.write_text(json.dumps({"rows": rows}))
    return out


# ---------------------------------------------------------------------------- measuring
def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e6
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _warm_up(graph) -> None:
    """Load numba's compiled kernels (both the in-memory and the memory-mapped variants)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hf_mig.selectors.mig import MIGSelector

    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "pool.parquet"
        ids = np.arange(graph.num_labels, dtype=np.int32)
        sample = _shard(10**6, 2000, pa.array(graph.labels), ids)
        pq.write_table(sample, pool)
        os.environ["HF_MIG_CACHE"] = tmp
        MIGSelector(k=10, label_graph=graph).select_indices(str(pool))
        MIGSelector(k=10, label_graph=graph).select_indices(datasets.Dataset(_table(sample)))


def _table(table):
    from datasets.table import InMemoryTable

    return InMemoryTable(table)


def run_stage(args: argparse.Namespace) -> dict:
    """One stage in this process; -> its numbers."""
    import pyarrow.parquet as pq

    from hf_mig.data.streaming import StreamingPool, pool_encoding, write_rows
    from hf_mig.selectors.mig import MIGSelector

    graph = make_label_graph(args.labels, _SEED)
    _warm_up(graph)
    os.environ["HF_MIG_CACHE"] = args.cache
    pool = Path(args.pool)
    out: dict = {"stage": args.stage}
    _reset_peak()
    start = time.perf_counter()
    if args.stage == "encode":
        encoding, _ = pool_encoding(StreamingPool(pool), graph.labels, progress=False)
        out["rows"] = encoding.num_rows
    elif args.stage in ("select", "disk"):
        selector = MIGSelector(k=args.k, label_graph=graph, progress=False)
        picks = selector.select_indices(str(pool))
        np.save(args.picks, picks)
        out["stats"] = {k: selector.result_.stats[k] for k in ("evaluations", "refreshes")}
    elif args.stage == "write":
        picks = np.load(args.picks)
        write_rows(StreamingPool(pool), picks, args.out, overwrite=True, progress=False)
    elif args.stage == "memory":
        import datasets

        dataset = datasets.Dataset(_table(pq.read_table(pool, columns=["labels", "score"])))
        out["load_s"] = round(time.perf_counter() - start, 2)
        selector = MIGSelector(k=args.k, label_graph=graph, progress=False)
        np.save(args.picks, selector.select_indices(dataset))
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["peak_gb"] = round(_peak_gb(), 2)
    return out


def _stage(name: str, pool: Path, cache: Path, k: int, picks: Path, labels: int, **extra) -> dict:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bench_disk_select",
        "--stage",
        name,
        "--pool",
        str(pool),
        "--cache",
        str(cache),
        "--k",
        str(k),
        "--picks",
        str(picks),
        "--labels",
        str(labels),
    ]
    if "out" in extra:
        argv += ["--out", str(extra["out"])]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    if done.returncode:
        sys.exit(f"stage {name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="where the pool is generated and cached")
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--labels", type=int, default=30_000)
    parser.add_argument("--k", type=int, default=1_000_000)
    parser.add_argument("--subset-rows", type=int, default=10_000_000)
    parser.add_argument("--subset-k", type=int, default=100_000)
    parser.add_argument("--json", help="also write the results here")
    for hidden in ("--stage", "--pool", "--cache", "--picks", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(run_stage(args)))
        return 0
    if not args.folder:
        parser.error("give the folder the pool is generated in (e.g. /tmp/mig100m)")
    folder = Path(args.folder)
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    shards = generate(folder, args.rows, args.labels)
    results: dict = {"rows": args.rows, "k": args.k, "labels": args.labels}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        work = Path(tmp)
        picks = work / "picks.npy"
        common = {"labels": args.labels}
        results["encode"] = _stage("encode", shards, work / "cache", args.k, picks, **common)
        results["select"] = _stage("select", shards, work / "cache", args.k, picks, **common)
        out = work / "picks.parquet"
        results["write"] = _stage("write", shards, work / "cache", args.k, picks, out=out, **common)
        small = subset(folder, shards, args.subset_rows)
        mem_picks, disk_picks = work / "mem.npy", work / "disk.npy"
        results["subset_memory"] = _stage(
            "memory", small, work / "cache2", args.subset_k, mem_picks, **common
        )
        results["subset_disk"] = _stage(
            "disk", small, work / "cache2", args.subset_k, disk_picks, **common
        )
        same = bool(np.array_equal(np.load(mem_picks), np.load(disk_picks)))
    results["subset_identical_picks"] = same
    total = results["encode"]["seconds"] + results["select"]["seconds"]
    peak = max(results[s]["peak_gb"] for s in ("encode", "select", "write"))
    ratio = results["subset_disk"]["seconds"] / results["subset_memory"]["seconds"]
    print(
        f"{args.rows:,} rows -> {args.k:,} picks from disk: encode {results['encode']['seconds']}"
        f" s + select {results['select']['seconds']} s = {total:.1f} s, write "
        f"{results['write']['seconds']} s; peak RSS {peak} GB"
    )
    print(
        f"subset {args.subset_rows:,} rows -> {args.subset_k:,}: in memory "
        f"{results['subset_memory']['seconds']} s ({results['subset_memory']['peak_gb']} GB), "
        f"disk {results['subset_disk']['seconds']} s ({results['subset_disk']['peak_gb']} GB), "
        f"ratio {ratio:.2f}; identical picks: {same}"
    )
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
