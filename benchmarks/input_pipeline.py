"""Input pipeline vs the training step, measured in the same run on the same machine.

    python benchmarks/input_pipeline.py [--images 640] [--batch-size 32] [--workers N] [--device auto|cpu|cuda]

Prints samples/s for: decoding alone (DataLoader workers: uint8 image + label from the parquet shards, and from the
same rows decoded once into memory maps, `--decode-cache`), the device work alone (augmentation + label targets on an
already decoded batch), the full pipeline both ways (workers + augmentation and targets on the device, as the engine
runs it), and the base model's training step
(train_speed.images_per_second: train()'s step, with the levers train() picks on this device for a short run) at
the same batch size. On the CPU the process reuses freed memory, as train() does there. The last line is
`pipeline/step=<ratio>`: how many times faster the input pipeline with --decode-cache (the faster of --workers loader
workers and none) feeds than the step consumes (target >= 10); the line above it gives the ratio without the cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from train_speed import images_per_second  # sibling script: benchmarks/ is sys.path[0] when run as a script

from training import precompute
from training.augment import AugmentConfig, BatchAugmenter
from training.data import IMAGE_AND_LABEL, DecodedSplit, TrainingDataset, open_split
from training.engine import resolve_device, reuse_freed_host_memory, to_device
from training.synthetic import generate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader(dataset_dir: Path, batch_size: int, workers: int, decoded: Path | None = None) -> torch.utils.data.DataLoader:
    """The engine's training loader: parquet rows, or (decoded) the same rows decoded once into memory maps there."""
    source = open_split(str(dataset_dir), "train", columns=IMAGE_AND_LABEL)
    if decoded is not None:
        source = DecodedSplit(source, decoded, "train")
    return torch.utils.data.DataLoader(TrainingDataset(source), batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640, help="synthetic frames to precompute for the loader (enough for a whole pass without an epoch boundary)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="training steps timed (after one warm-up step)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", default="", help="HxW: augment to crops, as `--crop` in training (default: whole frames)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        reuse_freed_host_memory()  # as train() does on the CPU, before the loader workers start
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
        del loader  # its workers stop
        cached_loader = _loader(raw / "dataset", args.batch_size, args.workers, decoded=raw / "decoded")
        cached_decode = pipeline_rate(cached_loader, args.batches)
        cached_full = pipeline_rate(cached_loader, args.batches, device, augmenter)
        del cached_loader
        # decoded rows cost ~0.2 ms: on a CPU with few cores the worker processes then only compete with the device
        # work, and train()'s default (num_workers 0: rows read in the training process) feeds faster
        in_process = pipeline_rate(_loader(raw / "dataset", args.batch_size, 0, decoded=raw / "decoded"), args.batches, device, augmenter)
    shape = crop or (400, 640)
    print(f"device {device}, batch {args.batch_size}, {args.workers} loader workers, torch threads {torch.get_num_threads()}, input {shape[0]}x{shape[1]}")
    print(f"decode only (workers, parquet rows)   : {decode:8.1f} samples/s")
    print(f"decode only (workers, --decode-cache) : {cached_decode:8.1f} samples/s")
    print(f"augmentation + targets only (device)  : {work:8.1f} samples/s")
    print(f"full pipeline, parquet rows           : {full:8.1f} samples/s")
    print(f"full pipeline, --decode-cache         : {cached_full:8.1f} samples/s")
    print(f"full pipeline, --decode-cache, 0 workers: {in_process:6.1f} samples/s")
    step = images_per_second("base", args.batch_size, args.steps, device, shape=shape)
    print(f"training step, base                   : {step:8.1f} images/s")
    print(f"pipeline/step without the cache: {full / step:.2f}")
    print(f"pipeline/step={max(cached_full, in_process) / step:.2f}")


if __name__ == "__main__":
    main()
