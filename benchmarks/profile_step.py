"""Where a training step's time goes, per module, forward and backward (eager, on the CPU by default).

    python benchmarks/profile_step.py                       # tiny and base, 400x640 and the 256x384 crop, batch 8
    python benchmarks/profile_step.py --variants base --shapes 256x384 --steps 10 --autocast bf16

Hooks time each part of TinyEfficientViTSeg (the stem, each encoder stage, the decoder, the sub-pixel head), the
combined loss (forward and its backward), and AdamW's step, on a batch of random frames with one pupil each and the
label targets train() derives (train_speed.synthetic_batch). Eager only: torch.compile fuses across modules, so
per-module figures exist only without it. Each figure is the mean over --steps steps after two warm-up steps (means
of disjoint parts add up to the step's), in milliseconds and as a share of the whole step. The frame needs no
gradient, as in training, so the stem's backward is timed from its start to the end of backward (nothing runs after
it); the decoder's backward (a list input, which backward hooks cannot bracket) is what the backward pass leaves
after the other parts.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import torch
from train_speed import synthetic_batch  # sibling script: benchmarks/ is sys.path[0] when run as a script

from training.engine import reuse_freed_host_memory
from training.losses import CombinedLoss
from training.models import build_model


def parts(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    named = {"stem (stride 4)": model.encoder.stem}
    for index, stage in enumerate(model.encoder.stages):
        named[f"stage {index + 1} (stride {8 * 2 ** index})"] = stage
    named["decoder"] = model.decoder
    named["head (sub-pixel)"] = model.head
    return named


def profile(variant: str, shape: tuple[int, int], batch_size: int, steps: int, autocast: str) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    model = build_model(variant).train()
    loss_fn, optimizer = CombinedLoss(), torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = synthetic_batch(batch_size, shape, torch.device("cpu"))
    clock: dict[str, float] = {}
    times: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, phase: str):
        def start(*_):
            clock[name + phase] = time.perf_counter()

        def stop(*_):
            times[f"{name}: {phase}"].append(time.perf_counter() - clock[name + phase])

        return start, stop

    for name, module in parts(model).items():
        start, stop = timed(name, "backward")
        if name.startswith("stem"):  # its input (the frame) needs no gradient: its backward runs to the end (below)
            module.register_full_backward_pre_hook(start)
        elif name != "decoder":  # the decoder takes a list: see the end
            module.register_full_backward_pre_hook(start)
            module.register_full_backward_hook(stop)
        start, stop = timed(name, "forward")
        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)
    image = batch["image"]  # no gradient, as in training
    for step in range(steps + 2):
        if step == 2:
            times.clear()
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bf16"):
            logits = model(image)
            t1 = time.perf_counter()
            losses = loss_fn(logits.float(), batch["label"], batch["spatial_weights"], batch["dist_map"], 0.5)
        t2 = time.perf_counter()
        times["loss: forward"].append(t2 - t1)
        optimizer.zero_grad(set_to_none=True)
        loss_start = time.perf_counter()
        losses["loss"].backward()
        t3 = time.perf_counter()
        times["loss: backward"].append(clock["head (sub-pixel)backward"] - loss_start)  # until the head's backward starts
        times["stem (stride 4): backward"].append(t3 - clock["stem (stride 4)backward"])  # the last module backward reaches
        times["backward, all"].append(t3 - loss_start)
        optimizer.step()
        t4 = time.perf_counter()
        times["AdamW step"].append(t4 - t3)
        times["whole step"].append(t4 - t0)
    mean = {name: sum(values) / len(values) * 1000 for name, values in times.items()}  # means add up; medians would not
    # the decoder takes a list, so its backward hooks cannot bracket it: its backward is what the others leave
    backward = mean.pop("backward, all")
    mean["decoder: backward"] = backward - sum(ms for name, ms in mean.items() if name.endswith(": backward"))
    return list(mean.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="tiny,base")
    parser.add_argument("--shapes", default="400x640,256x384")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--autocast", choices=("none", "bf16"), default="none")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # the stem's: timed without its end hook
    reuse_freed_host_memory()  # as train() does on the CPU
    for variant in args.variants.split(","):
        for text in args.shapes.split(","):
            shape = tuple(int(v) for v in text.split("x"))
            rows = profile(variant, shape, args.batch_size, args.steps, args.autocast)
            total = dict(rows)["whole step"]
            print(f"\n## {variant}, batch {args.batch_size} x 1x{text}, eager {'bf16 autocast' if args.autocast == 'bf16' else 'fp32'}, {args.threads} threads: "
                  f"{total:.1f} ms a step, {args.batch_size / total * 1000:.1f} img/s")
            print("| part | ms | share |\n|---|---|---|")
            for name, ms in sorted(rows, key=lambda row: (row[0].endswith("backward"), row[0] == "AdamW step")):
                if name != "whole step":
                    print(f"| {name} | {ms:.1f} | {ms / total * 100:.0f} % |")
            print(f"| (the rest: zero_grad, Python) | {total - sum(ms for name, ms in rows if name != 'whole step'):.1f} | |")


if __name__ == "__main__":
    main()
