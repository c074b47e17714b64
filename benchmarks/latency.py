"""Per-variant params, ONNX bytes and ONNX Runtime 1-thread median latency at 1x1x400x640.

    python benchmarks/latency.py [--repeats 50]

A plain small conv net is timed in the same run; latencies are also given as ratios to it, since this
machine is noisy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from training.export import export_bytes, ort_session, strip_debug_metadata
from training.models import VARIANTS, build_model, count_parameters


class PlainConvBaseline(nn.Sequential):
    """Three 3x3 convs (two with stride 2), a 1x1 classifier and bilinear upsampling: the simplest segmenter."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 2, 1), nn.Upsample(scale_factor=4, mode="bilinear"),
        )


def median_latency_ms(onnx_bytes: bytes, repeats: int, threads: int = 1) -> float:
    session = ort_session(onnx_bytes, threads)
    frame = np.random.default_rng(0).random((1, 1, 400, 640), dtype=np.float32)
    for _ in range(5):
        session.run(None, {"image": frame})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"image": frame})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [("plain-conv-baseline", PlainConvBaseline())]
    rows += [(name, build_model(name)) for name in VARIANTS]
    baseline_ms = None
    print(f"{'model':22s} {'params':>8s} {'onnx bytes (plain)':>19s} {'onnx bytes (ours)':>18s} {'1-thread ms':>12s} {'x baseline':>10s}")
    for name, model in rows:
        params = count_parameters(model)
        model.eval()
        if hasattr(model, "fuse"):
            model.fuse()
        plain = export_bytes(model)
        ours = strip_debug_metadata(plain)
        latency = median_latency_ms(ours, args.repeats)
        baseline_ms = baseline_ms or latency
        print(f"{name:22s} {params:8d} {len(plain):19,d} {len(ours):18,d} {latency:12.2f} {latency / baseline_ms:10.2f}")


if __name__ == "__main__":
    main()
