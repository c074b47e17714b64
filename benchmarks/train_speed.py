"""Training throughput of the project's variants beside a baseline model timed in the same run.

    python benchmarks/train_speed.py                                        # baseline: the plain conv net (latency.py)
    python benchmarks/train_speed.py --baseline /tmp/orig/model.py:TinyEfficientViTSeg --rounds 5
    python benchmarks/train_speed.py --shape 256x384 --variants base --device cuda

The baseline (any nn.Module that maps (B, 1, H, W) to (B, 2, H, W) logits, built with no arguments, loaded from
FILE.py) runs a plain eager float32 step, as a model's own training script does: forward, cross-entropy, backward,
AdamW. The project's variants run engine.TrainStep, the step train() runs: channels_last, forward + the combined
loss (compiled with bf16 autocast where train() compiles), backward, gradient clipping, AdamW, the cosine schedule,
and the split-metric update; on a batch of random frames with one pupil each and the label targets computed as
train() does. Two settings of each variant: a short run (train() runs eagerly below COMPILE_MIN_STEPS steps) and
a long run (where train() compiles: the pretrain recipe); compiling happens before the clock and is reported.

Rounds interleave every entry (the machine's speed drifts; each entry's figure is its median over rounds). The last
line is `vs_baseline tiny=R base=R` (R = the variant's images/s in a long run / the baseline's); the line above it
gives the same ratios for a short run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from latency import PlainConvBaseline  # sibling script: benchmarks/ is sys.path[0] when run as a script

from training.config import TrainConfig
from training.engine import COMPILE_MIN_STEPS, Levers, Runtime, TrainStep, build_state, resolve_device, resolve_levers, reuse_freed_host_memory
from training.models import VARIANTS
from training.targets import label_targets
from training.tasks import SEGMENTATION


def load_baseline(spec: str) -> tuple[str, torch.nn.Module]:
    """FILE.py:ClassName -> (name, an instance built with no arguments); the file is imported from where it lies."""
    path, _, name = spec.rpartition(":")
    if not path or not name or not Path(path).is_file():
        raise SystemExit(f"--baseline {spec!r}: expected FILE.py:ClassName with an existing file")
    module_spec = importlib.util.spec_from_file_location(f"baseline_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise SystemExit(f"--baseline {spec!r}: {path} defines no {name}")
    return name, getattr(module, name)()


def synthetic_batch(batch_size: int, shape: tuple[int, int], device: torch.device, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Random frames, each with one elliptical pupil, and the targets train() derives from such labels."""
    generator = torch.Generator().manual_seed(0)
    height, width = shape
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    labels = []
    for _ in range(batch_size):
        cx, cy = (torch.rand(2, generator=generator) * torch.tensor([width * 0.6, height * 0.6]) + torch.tensor([width * 0.2, height * 0.2])).tolist()
        rx, ry = (torch.rand(2, generator=generator) * 30 + 8).tolist()
        labels.append((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).to(torch.uint8))
    label = torch.stack(labels).to(device)
    image = torch.rand(batch_size, 1, height, width, generator=generator).to(device)
    batch = {"image": image.contiguous(memory_format=torch.channels_last) if channels_last else image, "label": label}
    batch.update(label_targets(label))
    return batch


def project_step(variant: str, levers: Levers, batch_size: int, shape: tuple[int, int], device: torch.device):
    """A closure running train()'s step (engine.TrainStep) on one batch, as train_one_epoch runs it."""
    torch.manual_seed(0)
    cfg = TrainConfig(model_variant=variant, batch_size=batch_size, epochs=1)
    runtime = Runtime(device, levers=levers)
    state = build_state(cfg, SEGMENTATION, runtime, steps_per_epoch=10**6, checkpoint=None)
    step = TrainStep(state, SEGMENTATION, cfg, levers, device)
    batch = synthetic_batch(batch_size, shape, device, levers.channels_last)
    meter = SEGMENTATION.new_meter()
    state.model.train()

    def run() -> None:
        outputs, _ = step(batch, 0.5)
        with torch.no_grad():
            meter.update(outputs.detach().float(), batch)

    return run


def baseline_step(model: torch.nn.Module, batch_size: int, shape: tuple[int, int], device: torch.device):
    """A plain eager float32 step: forward, cross-entropy, backward, AdamW."""
    torch.manual_seed(0)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    batch = synthetic_batch(batch_size, shape, device)
    target = batch["label"].long()

    def run() -> None:
        loss = F.cross_entropy(model(batch["image"]), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run, steps: int, batch_size: int, device: torch.device) -> float:
    """images/s over `steps` steps."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def images_per_second(model_variant: str, batch_size: int, steps: int, device: torch.device = torch.device("cpu"), levers: Levers | None = None,
                      shape: tuple[int, int] = (400, 640)) -> float:
    """train()'s step rate for a variant (levers: those of a short run on this device unless given), after a warm-up step."""
    levers = levers or resolve_levers(TrainConfig(), device, total_steps=1)
    run = project_step(model_variant, levers, batch_size, shape, device)
    run()
    return time_steps(run, steps, batch_size, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="", help="FILE.py:ClassName of the model to compare with (default: the plain conv net)")
    parser.add_argument("--steps", type=int, default=4, help="steps per entry and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shape", default="400x640", help="HxW of the training input (the pretrain recipe trains on 256x384 crops)")
    parser.add_argument("--variants", default="tiny,base")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        reuse_freed_host_memory()  # as train() does on the CPU
    shape = tuple(int(side) for side in args.shape.lower().split("x"))
    name, baseline = load_baseline(args.baseline) if args.baseline else ("plain-conv-baseline", PlainConvBaseline())
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    settings = {"short run": resolve_levers(TrainConfig(), device, total_steps=1), "long run": resolve_levers(TrainConfig(), device, total_steps=COMPILE_MIN_STEPS)}
    entries = {(name, "baseline"): baseline_step(baseline, args.batch_size, shape, device)}
    warmup = {}
    for variant in variants:
        for setting, levers in settings.items():
            if setting == "long run" and levers == settings["short run"]:
                continue  # the same step: time it once
            entries[(variant, setting)] = project_step(variant, levers, args.batch_size, shape, device)
    for key, run in entries.items():  # first call: compiling (long runs) and first allocations are not throughput
        start = time.perf_counter()
        run()
        _sync(device)
        warmup[key] = time.perf_counter() - start
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in entries}
    for _ in range(args.rounds):
        for key, run in entries.items():
            rates[key].append(time_steps(run, args.steps, args.batch_size, device))
    median = {key: float(np.median(values)) for key, values in rates.items()}
    base = median[(name, "baseline")]
    print(f"device {device}, batch {args.batch_size}, input {shape[0]}x{shape[1]}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds of {args.steps} steps")
    print(f"{'model':26s} {'setting':10s} {'step':38s} {'img/s':>8s} {'x baseline':>10s} {'first step s':>12s}")
    for (model, setting), rate in median.items():
        levers = settings.get(setting)
        if setting == "short run" and (model, "long run") not in median:
            setting = "any run"
        how = levers.describe() if levers else "float32, eager, cross-entropy only"
        print(f"{model:26s} {setting:10s} {how:38s} {rate:8.1f} {rate / base:10.2f} {warmup[(model, setting if setting != 'any run' else 'short run')]:12.1f}")
    short = " ".join(f"{v}={median[(v, 'short run')] / base:.2f}" for v in variants)
    long = " ".join(f"{v}={median.get((v, 'long run'), median[(v, 'short run')]) / base:.2f}" for v in variants)
    print(f"vs_baseline_short_run {short}")
    print(f"vs_baseline {long}")


if __name__ == "__main__":
    main()
