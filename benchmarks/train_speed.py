"""CPU training throughput at batch 8, 400x640, beside a plain conv baseline timed in the same run.

    python benchmarks/train_speed.py [--steps 5] [--batch-size 8]

One step = forward, the combined loss, backward, AdamW step and the split-metric update, as in the engine.
Figures are images/s and ratios to the baseline (this machine is noisy; ratios travel better).
"""

from __future__ import annotations

import argparse
import time

import torch
from latency import PlainConvBaseline  # sibling script: benchmarks/ is sys.path[0] when run as a script

from training.engine import reuse_freed_host_memory
from training.models import VARIANTS, build_model
from training.tasks import SEGMENTATION


def images_per_second(model: torch.nn.Module, batch_size: int, steps: int, device: torch.device = torch.device("cpu"), amp: bool = False,
                      channels_last: bool = False, shape: tuple[int, int] = (400, 640)) -> float:
    """Training images/s: forward (AMP on CUDA if asked), the segmentation loss, backward, AdamW step, meter update."""
    torch.manual_seed(0)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    image = torch.rand(batch_size, 1, *shape, device=device)
    batch = {
        "image": image.contiguous(memory_format=torch.channels_last) if channels_last else image,
        "label": (torch.rand(batch_size, *shape, device=device) > 0.99).to(torch.uint8),
        "spatial_weights": torch.zeros(batch_size, *shape, device=device),
        "dist_map": torch.rand(batch_size, 2, *shape, device=device) - 0.5,
    }
    meter = SEGMENTATION.new_meter()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(batch["image"])
        loss = SEGMENTATION.compute_loss(logits.float(), batch, 0.5)["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        meter.update(logits.detach().float(), batch)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    reuse_freed_host_memory()  # as train() does on the CPU
    baseline = images_per_second(PlainConvBaseline(), args.batch_size, args.steps)
    print(f"{'model':22s} {'train img/s':>12s} {'x baseline':>10s}   (batch {args.batch_size}, 400x640, {torch.get_num_threads()} threads)")
    print(f"{'plain-conv-baseline':22s} {baseline:12.1f} {1.0:10.2f}")
    for name in VARIANTS:
        rate = images_per_second(build_model(name), args.batch_size, args.steps)
        print(f"{name:22s} {rate:12.1f} {rate / baseline:10.2f}")


if __name__ == "__main__":
    main()
