"""Distil a model's flip-averaged output into the same model, single view: the measurement behind pretrain's last stage.

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
import time
from pathlib import Path

import torch

from training.distill import FRAME_SEED_OFFSET, distil, generator_frames
from training.evaluate import evaluate_model
from training.inference import model_from_checkpoint
from training.models import build_model, pretrained_card


def load_model(model: str) -> torch.nn.Module:
    """'pretrained' (the shipped weights) or a .pt checkpoint / state_dict, as a torch model."""
    if model == "pretrained":
        return build_model(pretrained_card()["variant"], pretrained=True)
    return model_from_checkpoint(model)


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
    images, masks = generator_frames(args.frames, FRAME_SEED_OFFSET + args.seed)
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
