"""Precompute throughput (1 vs N workers) and loader throughput vs the CPU training step rate.

    python benchmarks/precompute_speed.py [--images 64] [--workers N]

Prints images/s with 1 and N workers (target: near-linear), and the DataLoader's samples/s (with training
augmentation) against the CPU training step rate at batch 8, 400x640 (target: loader >= 5x the step rate).
Everything is measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from train_speed import images_per_second  # sibling script: benchmarks/ is sys.path[0] when run as a script

import precompute
from training.data import AugmentConfig, TrainingDataset, open_split
from training.models import build_model
from training.synthetic import generate


def precompute_rate(raw: Path, workers: int) -> float:
    shutil.rmtree(raw / "dataset", ignore_errors=True)
    shutil.rmtree(raw / ".precompute_state", ignore_errors=True)
    start = time.perf_counter()
    summaries = precompute.build_dataset(raw, workers=workers)
    frames = sum(s.found for s in summaries.values())
    return frames / (time.perf_counter() - start)


def loader_rate(dataset_dir: Path, workers: int, batches: int = 6, batch_size: int = 8) -> float:
    dataset = TrainingDataset(open_split(str(dataset_dir), "train"), AugmentConfig(), seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start, count = time.perf_counter(), 0
    for _ in range(batches):
        try:
            count += len(next(iterator)["image"])
        except StopIteration:
            iterator = iter(loader)
    return count / (time.perf_counter() - start)


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
