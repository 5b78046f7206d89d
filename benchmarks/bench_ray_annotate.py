"""Local ``Dataset.map`` against the Ray Data engine on the same pool: time, peak memory, ratio.

::

    python -m benchmarks.bench_ray_annotate                       # length 2,000 + embedding 200
    python -m benchmarks.bench_ray_annotate --rows 20000 --concurrency 2 --skip-embedding

For each step (the ``length`` scorer on ``--rows`` rows, the MiniLM ``embedding`` tagger on
``--embedding-rows`` rows of the bundled demo pool, repeated), both engines read the same
``.jsonl`` pool and write ``.parquet`` (``map_on_ray`` and the local ``load_pool`` +
``with_messages`` + ``Dataset.map`` + ``save_dataset``, which is what ``hf-mig score|tag`` runs).
Ray runs on a local Ray of ``--num-cpus`` CPUs started once before timing (its start-up is
printed apart); the Ray time includes starting the actors and loading the model in each.

Peak memory: this process's peak RSS growth (``ru_maxrss``) for local; for Ray the driver's
peak RSS growth and the largest RSS of one actor process (sampled from ``/proc`` every 0.2 s
while the run lasts; Linux only). Ray writes ``~/.ray/auth_token``:
``HOME`` is pointed at a temporary folder for the run. Timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def _rows(n: int) -> list[dict[str, Any]]:
    from hf_mig.data.resources import demo_pool_path

    base = [json.loads(line) for line in demo_pool_path().read_text(encoding="utf-8").splitlines()]
    return [{**base[i % len(base)], "id": f"r{i}"} for i in range(n)]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _local(step: Any, pool: Path, out: Path, batch_size: int) -> float:
    from hf_mig.data.conversations import with_messages
    from hf_mig.data.io import load_pool, save_dataset

    start = time.perf_counter()
    ds = with_messages(load_pool(pool))
    ds = ds.map(step, batched=True, with_indices=True, batch_size=batch_size,
                load_from_cache_file=False)  # fmt: skip
    save_dataset(ds, out)
    return time.perf_counter() - start


def _ray(step: Any, pool: Path, out: Path, batch_size: int, concurrency: int) -> float:
    from hf_mig.runtime.ray_data import map_on_ray

    start = time.perf_counter()
    map_on_ray(step, pool, out, concurrency=concurrency, batch_size=batch_size, progress=False)
    return time.perf_counter() - start


class _ActorMemory:
    """Samples (every 0.2 s, in a thread) the RSS of the Ray Data actor processes; ``peak_mb``
    is the largest one seen."""

    def __enter__(self) -> _ActorMemory:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid_dir in Path("/proc").iterdir():
                try:
                    if (
                        pid_dir.name.isdigit()
                        and b"MapWorker" in (pid_dir / "cmdline").read_bytes()
                    ):
                        for line in (pid_dir / "status").read_text().splitlines():
                            if line.startswith("VmRSS:"):
                                self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
                except OSError:
                    continue

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows for the length scorer")
    parser.add_argument("--embedding-rows", type=int, default=200)
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)

    from hf_mig.annotate.scorers import LengthScorer

    root = Path(tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp"))
    os.environ["HOME"] = str(root / "home")  # Ray's ~/.ray/auth_token
    cases: list[tuple[str, Any, int]] = [("length", LengthScorer, args.rows)]
    if not args.skip_embedding:
        from hf_mig.annotate.taggers import EmbeddingTagger

        cases.append(("embedding", EmbeddingTagger, args.embedding_rows))
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=str(root / "ray"),
             log_to_driver=False, configure_logging=False)  # fmt: skip
    print(f"ray.init ({args.num_cpus} CPUs): {time.perf_counter() - start:.1f} s")
    try:
        for name, cls, n in cases:
            pool = root / f"{name}.jsonl"
            pool.write_text("".join(json.dumps(r) + "\n" for r in _rows(n)), encoding="utf-8")
            before = _peak_mb()
            local_s = _local(cls(), pool, root / f"{name}-local.parquet", args.batch_size)
            local_mb = _peak_mb() - before
            before = _peak_mb()
            with _ActorMemory() as actors:
                ray_s = _ray(cls(), pool, root / f"{name}-ray.parquet", args.batch_size,
                             args.concurrency)  # fmt: skip
            driver_mb = _peak_mb() - before
            print(
                f"{name:9s} {n:6,d} rows | local {local_s:7.2f} s, peak +{local_mb:6.0f} MB | "
                f"ray ({args.concurrency} actors) {ray_s:7.2f} s, "
                f"driver peak +{driver_mb:4.0f} MB, largest actor {actors.peak_mb:5.0f} MB | "
                f"ray/local time {ray_s / local_s:5.2f}"
            )
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
