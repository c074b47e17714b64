"""`make bench`: one table of the numbers a user asks for, each beside a baseline timed in the same run.

    python benchmarks/bench.py [--images 64]

Per variant: parameters, ONNX bytes (fp32, int8), ONNX Runtime latency at 1 thread and all threads (fp32, int8)
as ratios to a plain conv net, CPU training images/s as a ratio to the same plain net; then precompute images/s
(N workers vs 1) and input-pipeline samples/s vs the training step rate (details: input_pipeline.py). Models are untrained: sizes and speeds do not
depend on the weights (int8 calibration uses synthetic frames).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from input_pipeline import _loader as training_loader
from input_pipeline import pipeline_rate
from latency import PlainConvBaseline, median_latency_ms
from precompute_speed import precompute_rate
from train_speed import baseline_step, images_per_second, time_steps

from training.augment import BatchAugmenter
from training.engine import reuse_freed_host_memory
from training.export import export_bytes, export_onnx, strip_debug_metadata
from training.models import VARIANTS, build_model, count_parameters
from training.quantize import quantize
from training.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="synthetic frames for precompute/loader/calibration")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    torch.manual_seed(0)
    reuse_freed_host_memory()  # as train() does on the CPU
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "raw", args.images, seed=0)
        many = precompute_rate(tmp / "raw", cores)
        one = precompute_rate(tmp / "raw", 1)
        baseline = PlainConvBaseline().eval()
        base_onnx = strip_debug_metadata(export_bytes(baseline))
        base_1 = median_latency_ms(base_onnx, args.repeats, 1)
        base_n = median_latency_ms(base_onnx, args.repeats, 0)
        base_train = time_steps(baseline_step(PlainConvBaseline(), 8, (400, 640), torch.device("cpu")), 3, 8, torch.device("cpu"))
        header = (f"{'model':12s} {'params':>7s} {'fp32 B':>8s} {'int8 B':>8s} {'fp32 1t ms':>11s} {'int8 1t ms':>11s} "
                  f"{'fp32 {0}t ms'.format(cores):>11s} {'int8 {0}t ms'.format(cores):>11s} {'train img/s':>12s}")
        print(header)
        print(f"{'plain-conv':12s} {count_parameters(baseline):7d} {len(base_onnx):8d} {'-':>8s} {base_1:11.2f} {'-':>11s} {base_n:11.2f} {'-':>11s} {base_train:12.1f}")
        for name in VARIANTS:
            model = build_model(name)
            fp32_path = export_onnx(model, tmp / f"{name}.onnx")
            int8_path = quantize(fp32_path, str(tmp / "raw"), tmp / f"{name}_int8.onnx", calibration_frames=8, max_bytes=0)  # report, not enforce
            fp32, int8 = fp32_path.read_bytes(), int8_path.read_bytes()
            l1, q1 = median_latency_ms(fp32, args.repeats, 1), median_latency_ms(int8, args.repeats, 1)
            ln, qn = median_latency_ms(fp32, args.repeats, 0), median_latency_ms(int8, args.repeats, 0)
            train = images_per_second(name, 8, 3)
            print(f"{name:12s} {count_parameters(model):7d} {len(fp32):8d} {len(int8):8d} "
                  f"{l1:6.2f} ({l1 / base_1:.2f}x) {q1:5.2f} ({q1 / base_1:.2f}x) {ln:6.2f} ({ln / base_n:.2f}x) {qn:5.2f} ({qn / base_n:.2f}x) "
                  f"{train:6.1f} ({train / base_train:.2f}x)")
        print("(latency ratios: variant / plain conv; lower is faster. train ratio: variant / plain conv; higher is faster)")
        step_rate = images_per_second("tiny", 8, 3)
        loader = pipeline_rate(training_loader(tmp / "raw" / "dataset", 8, cores), 4, torch.device("cpu"), BatchAugmenter())
        print(f"precompute: {many:.1f} img/s with {cores} workers vs {one:.1f} img/s with 1 ({many / one:.2f}x)")
        print(f"loader: {loader:.1f} samples/s (decode in {cores} workers, augmentation + targets on the CPU) vs tiny training step {step_rate:.1f} img/s ({loader / step_rate:.1f}x)")


if __name__ == "__main__":
    main()
