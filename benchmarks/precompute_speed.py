"""Precompute throughput with 1 and N workers, and where one worker's time goes.

    python benchmarks/precompute_speed.py [--images 200] [--workers N]

Prints images/s with 1 and N workers (targets: >= 100 img/s with one worker on a 2-core machine, near-linear
scaling), the same run's PNG-decode-only rate as a baseline, and peak memory. (The training input pipeline has its
own benchmark: input_pipeline.py.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from training import precompute
from training.synthetic import generate


def precompute_rate(raw: Path, workers: int) -> float:
    """Steady-state images/s: one-time start-up (importing `datasets` for the schema, ~0.6 s, and pyarrow's parquet
    writer) happens before the clock starts, as a warm-up batch does in input_pipeline.py."""
    import pyarrow.parquet  # noqa: F401

    from training.data import dataset_features

    dataset_features()
    shutil.rmtree(raw / "dataset", ignore_errors=True)
    shutil.rmtree(raw / ".precompute_state", ignore_errors=True)
    start = time.perf_counter()
    summaries = precompute.build_dataset(raw, workers=workers)
    frames = sum(s.found for s in summaries.values())
    return frames / (time.perf_counter() - start)


def _measure(raw: Path, workers: int, queue) -> None:
    import resource

    rate = precompute_rate(raw, workers)
    own, children = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    queue.put((rate, max(own, children) / 1024))  # Linux reports KiB


def measured(raw: Path, workers: int) -> tuple[float, float]:
    """(images/s, peak resident MiB of one process) for one precompute run in a fresh process."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(raw, workers, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def decode_rate(raw: Path) -> float:
    """The baseline: reading and checking the same raw frames (PNG + .npy), nothing else."""
    from training.data import raw_split_dirs, read_raw_pair

    start, count = time.perf_counter(), 0
    for split in ("train", "validation", "test"):
        images, labels = raw_split_dirs(raw, split)
        for image_path in sorted(images.glob("*.png")):
            read_raw_pair(image_path, labels / f"{image_path.stem}.npy")
            count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        generate(raw, args.images, seed=0)
        baseline = decode_rate(raw)
        one, one_mib = measured(raw, 1)
        many, many_mib = measured(raw, args.workers)
        print(f"decode only (PNG + npy)  : {baseline:7.1f} img/s (baseline)")
        print(f"precompute      1 worker : {one:7.1f} img/s  ({one / baseline:.2f}x the decode-only rate), peak {one_mib:.0f} MiB")
        print(f"precompute {args.workers:2d} workers: {many:7.1f} img/s  ({many / one:.2f}x one worker; linear would be {args.workers}x), "
              f"peak {many_mib:.0f} MiB per process")


if __name__ == "__main__":
    main()
