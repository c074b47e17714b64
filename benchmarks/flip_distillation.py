"""Distil a model's flip-averaged output into the same model, single view (a measurement, not a training mode yet).

    python benchmarks/flip_distillation.py --output student.pt --frames 4000 --steps 1000 --eval-data meye=REAL/meye face=REAL/face_val

`evaluate --flips` averages the model over the frame and its three flips (4x the work) and raises both real dev sets
(README, "Score a model on your own frames", item 5). Here the shipped weights (or --model) teach themselves that
average: a student starts from the same weights and is trained, single view, to the teacher's flip-averaged pupil
probabilities (soft cross-entropy per pixel) on `--frames` generator frames (all families, `--seed`) under the
training augmentation, AdamW with a cosine decay over `--steps` batches of 8. `--label-weight W` adds W x the
cross-entropy to the generator's labels; `--teacher-weight 0 --label-weight 1` is the control (the same steps on
the labels alone). The student is written as a state_dict that evaluate, predict and export read; with
--eval-data, both models are scored single view on each set and one table is printed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.augment import AugmentConfig, BatchAugmenter
from training.evaluate import evaluate_model
from training.export import FlipAveraged
from training.inference import model_from_checkpoint
from training.models import build_model, pretrained_card
from training.preprocess import binarize, preprocess_image
from training.synthetic import FRAMES_PER_SUBJECT, render_frame

BATCH = 8


def generator_frames(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` preprocessed generator frames (N, 1, H, W) uint8 and their pupil masks (N, H, W) uint8."""
    images, masks = [], []
    for index in range(count):
        image, label = render_frame(seed, index, index // FRAMES_PER_SUBJECT)
        images.append(preprocess_image(image))
        masks.append(binarize(label))
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks))


def load_model(model: str) -> torch.nn.Module:
    """'pretrained' (the shipped weights) or a .pt checkpoint / state_dict, as a torch model."""
    if model == "pretrained":
        return build_model(pretrained_card()["variant"], pretrained=True)
    return model_from_checkpoint(model)


def distil(teacher: torch.nn.Module, student: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, steps: int, lr: float,
           teacher_weight: float = 1.0, label_weight: float = 0.0, seed: int = 0, log_every: int = 50,
           augment: AugmentConfig | None = AugmentConfig()) -> list[float]:
    """Trains `student` in place (augment None: on the frames as they are); returns the loss of every step."""
    teacher.eval()
    student.train()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    averaged = FlipAveraged(teacher)  # what evaluate --flips scores: log of the class probabilities averaged over the flips
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    augmenter = BatchAugmenter(augment, seed=seed) if augment is not None else None
    rng = np.random.default_rng(seed)
    batch_size = min(BATCH, len(images))
    losses, start = [], time.perf_counter()
    for step in range(steps):
        index = torch.from_numpy(rng.choice(len(images), batch_size, replace=False))
        batch = {"image": images[index], "label": masks[index], "index": index}
        if augmenter is None:
            batch["image"] = batch["image"].float() / 255.0
        else:
            batch = augmenter(batch, step * batch_size // len(images), unit_float=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = student(batch["image"]).float()
        loss = torch.zeros(())
        if teacher_weight:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                target = averaged(batch["image"]).float().exp()
            loss = loss - teacher_weight * (target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        if label_weight:
            loss = loss + label_weight * F.cross_entropy(logits, batch["label"].long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f} {time.perf_counter() - start:.0f} s", flush=True)
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrained", help="teacher and starting weights: 'pretrained' or a .pt file")
    parser.add_argument("--output", type=Path, required=True, help="the student's state_dict (.pt)")
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--teacher-weight", type=float, default=1.0)
    parser.add_argument("--label-weight", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="frames are generator seed 31 + SEED; augmentation and batches seed SEED")
    parser.add_argument("--eval-data", nargs="*", default=[], metavar="NAME=FOLDER")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    images, masks = generator_frames(args.frames, 31 + args.seed)
    print(f"{args.frames} generator frames in {time.perf_counter() - start:.0f} s", flush=True)
    teacher, student = load_model(args.model), load_model(args.model)
    distil(teacher, student, images, masks, args.steps, args.lr, args.teacher_weight, args.label_weight, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(student.state_dict(), args.output)
    print(f"student -> {args.output} ({time.perf_counter() - start:.0f} s)")
    if args.eval_data:
        print(f"\n| set | {args.model}, single view | student, single view |\n|---|---|---|")
        for name, folder in (item.split("=", 1) for item in args.eval_data):
            before = evaluate_model(args.model, folder, args.output.parent / f"{args.output.stem}_eval" / f"{name}_teacher", timing=False)
            after = evaluate_model(args.output, folder, args.output.parent / f"{args.output.stem}_eval" / f"{name}_student", timing=False)
            print(f"| {name} ({before['frames']}) | {before['pupil_iou_mean']:.3f} / {before['detection_rate']:.1%} | "
                  f"{after['pupil_iou_mean']:.3f} / {after['detection_rate']:.1%} |")


if __name__ == "__main__":
    main()
