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

import precompute
from training.synthetic import generate


def precompute_rate(raw: Path, workers: int) -> float:
    shutil.rmtree(raw / "dataset", ignore_errors=True)
    shutil.rmtree(raw / ".precompute_state", ignore_errors=True)
    start = time.perf_counter()
    summaries = precompute.build_dataset(raw, workers=workers)
    frames = sum(s.found for s in summaries.values())
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        generate(raw, args.images, seed=0)
        one = precompute_rate(raw, 1)
        many = precompute_rate(raw, args.workers)
        print(f"precompute      1 worker : {one:7.1f} img/s")
        print(f"precompute {args.workers:2d} workers: {many:7.1f} img/s  ({many / one:.2f}x; linear would be {args.workers}x)")
        steps = images_per_second(build_model("tiny"), 8, 3)
        for workers in (0, args.workers):
            rate = loader_rate(raw / "dataset", workers)
            print(f"loader {workers} workers   : {rate:7.1f} samples/s = {rate / steps:5.1f}x the training step rate")
        print(f"CPU train step (tiny, batch 8, 400x640): {steps:6.1f} img/s (torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
