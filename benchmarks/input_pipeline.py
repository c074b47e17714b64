"""Input pipeline vs the training step, measured in the same run on the same machine.

    python benchmarks/input_pipeline.py [--images 96] [--batch-size 32] [--workers N] [--device auto|cpu|cuda]

Prints samples/s for: decoding alone (DataLoader workers: uint8 image + label from the parquet shards), the
device work alone (augmentation + label targets on an already decoded batch), the full pipeline (decode in the
workers + augmentation and targets on the device, as the engine runs it), and the base model's training step
(forward, loss, backward, AdamW) at the same batch size; on CUDA also with AMP + channels_last. The last line is
`pipeline/step=<ratio>`: how many times faster the input pipeline feeds than the step consumes (target >= 10).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from training import precompute
from training.augment import AugmentConfig, BatchAugmenter
from training.data import IMAGE_AND_LABEL, TrainingDataset, open_split
from training.engine import resolve_device, to_device
from training.models import build_model
from training.synthetic import generate
from training.tasks import SEGMENTATION


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader(dataset_dir: Path, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    dataset = TrainingDataset(open_split(str(dataset_dir), "train", columns=IMAGE_AND_LABEL))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                                       persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(0))


def pipeline_rate(loader, batches: int, device: torch.device | None = None, augmenter: BatchAugmenter | None = None) -> float:
    """Samples/s over `batches` batches after one warm-up batch; with a device, each batch is also augmented and
    given its targets there (the engine's to_device)."""
    def batches_forever():
        epoch = 0
        while True:
            for batch in loader:
                yield epoch, batch
            epoch += 1

    stream = batches_forever()
    epoch, batch = next(stream)  # worker start-up and the first allocations are not throughput
    if device is not None:
        to_device(batch, device, False, augmenter, epoch)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        epoch, batch = next(stream)
        if device is not None:
            batch = to_device(batch, device, False, augmenter, epoch)
            _sync(device)
        count += len(batch["image"])
    return count / (time.perf_counter() - start)


def device_rate(loader, device: torch.device, augmenter: BatchAugmenter, repeats: int) -> float:
    """Augmentation + targets alone, on one decoded batch already on the device."""
    batch = {k: v.to(device) for k, v in next(iter(loader)).items()}
    to_device(batch, device, False, augmenter, 0)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for epoch in range(repeats):
        to_device(batch, device, False, augmenter, epoch)
    _sync(device)
    return repeats * len(batch["image"]) / (time.perf_counter() - start)


def step_rate(variant: str, batch_size: int, steps: int, device: torch.device, amp: bool = False, channels_last: bool = False,
              shape: tuple[int, int] = (400, 640)) -> float:
    """Training images/s of one model: forward, the segmentation loss, backward, AdamW step."""
    torch.manual_seed(0)
    model = build_model(variant).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    image = torch.rand(batch_size, 1, *shape, device=device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    batch = {"image": image, "label": (torch.rand(batch_size, *shape, device=device) > 0.99).to(torch.uint8),
             "spatial_weights": torch.zeros(batch_size, *shape, device=device), "dist_map": torch.rand(batch_size, 2, *shape, device=device) - 0.5}

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(batch["image"])
        loss = SEGMENTATION.compute_loss(logits.float(), batch, 0.5)["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640, help="synthetic frames to precompute for the loader (enough for a whole pass without an epoch boundary)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", default="", help="HxW: augment to crops, as `--crop` in training (default: whole frames)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    crop = tuple(int(side) for side in args.crop.lower().split("x")) if args.crop else None
    augmenter = BatchAugmenter(AugmentConfig(crop=crop), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        generate(raw, args.images, seed=0)
        precompute.build_dataset(raw, workers=args.workers)
        loader = _loader(raw / "dataset", args.batch_size, args.workers)
        decode = pipeline_rate(loader, args.batches)
        work = device_rate(loader, device, augmenter, args.batches)
        full = pipeline_rate(loader, args.batches, device, augmenter)
    shape = crop or (400, 640)
    print(f"device {device}, batch {args.batch_size}, {args.workers} loader workers, torch threads {torch.get_num_threads()}, input {shape[0]}x{shape[1]}")
    print(f"decode only (workers)                 : {decode:8.1f} samples/s")
    print(f"augmentation + targets only (device)  : {work:8.1f} samples/s")
    print(f"full pipeline (decode + device work)  : {full:8.1f} samples/s")
    step = step_rate("base", args.batch_size, args.steps, device, shape=shape)
    print(f"training step, base                   : {step:8.1f} images/s")
    if device.type == "cuda":
        for variant in ("tiny", "base"):
            fast = step_rate(variant, args.batch_size, args.steps * 10, device, amp=True, channels_last=True, shape=shape)
            print(f"training step, {variant}, AMP + channels_last: {fast:8.1f} images/s")
    print(f"pipeline/step={full / step:.2f}")


if __name__ == "__main__":
    main()
