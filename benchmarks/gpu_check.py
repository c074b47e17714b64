"""The prepared GPU check: one script to run once on a CUDA machine (a lent device, a Modal GPU).

    python benchmarks/gpu_check.py                      # CUDA: every figure below, ~5 min on one GPU
    python benchmarks/gpu_check.py --device cpu --quick # smoke run of the same code path on the CPU

Prints, for tiny and base at batch 32 and 400x640: training images/s of engine.TrainStep with channels_last and AMP,
compiled and eager (and float32 eager, the reference); then benchmarks/input_pipeline.py on the same device
(pipeline/step); then one short train() end to end with the Modal app's defaults (ENTRYPOINT_DEFAULTS: batch 16,
loader workers, decode cache) on synthetic frames, and its first epoch's line. Nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_speed import project_step, time_steps  # sibling script: benchmarks/ is sys.path[0] when run as a script

from training.config import TrainConfig
from training.engine import Levers, resolve_device, resolve_levers, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke run)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    batch, steps = (4, 2) if args.quick else (args.batch_size, args.steps)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), torch {torch.__version__}, batch {batch}, 400x640")
    auto = resolve_levers(TrainConfig(), device, total_steps=10**6)  # what a long run uses here
    settings = {"float32 eager": Levers(channels_last=True), "AMP eager": dataclasses.replace(auto, compile=False), "AMP compiled": auto}
    for variant in ("tiny", "base"):
        for name, levers in settings.items():
            run = project_step(variant, levers, batch, (400, 640), device)
            start = time.perf_counter()
            run()  # compiling, first allocations
            first = time.perf_counter() - start
            rate = time_steps(run, steps, batch, device)
            print(f"train step {variant:5s} {name:14s} ({levers.describe()}): {rate:8.1f} images/s (first step {first:.1f} s)", flush=True)
    pipeline = [sys.executable, str(Path(__file__).with_name("input_pipeline.py")), "--device", str(device)]
    if args.quick:
        pipeline += ["--images", "48", "--batch-size", "4", "--batches", "2", "--steps", "1", "--workers", "1"]
    print(subprocess.run(pipeline, capture_output=True, text=True).stdout, flush=True)
    from training.demo import synthetic_dataset
    from training.train_efficientvit import ENTRYPOINT_DEFAULTS  # the Modal app's defaults

    with tempfile.TemporaryDirectory() as tmp:
        dataset = synthetic_dataset(Path(tmp), 48 if args.quick else 400, seed=0, workers=1 if args.quick else 0)
        cfg = dataclasses.replace(ENTRYPOINT_DEFAULTS, dataset=str(dataset), epochs=1 if args.quick else 2, device=str(device), output_dir=str(Path(tmp) / "runs"),
                                  run_name="gpu-check", decode_cache=str(Path(tmp) / "decoded"), num_workers=1 if args.quick else ENTRYPOINT_DEFAULTS.num_workers)
        result = train(cfg)
        print(f"train() end to end with the Modal defaults on {device}: {result.epochs_run} epochs, best mIoU {result.best_metric:.4f}, "
              f"{result.history[-1]['images_per_second']:.1f} images/s in the last epoch, ONNX {result.onnx_path}")


if __name__ == "__main__":
    main()
