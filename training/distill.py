"""Flip distillation: a model taught its own flip-averaged output, single view (the last stage of training.pretrain).

`evaluate --flips` averages a model over the frame and its three flips (4x the work) and raises both real dev sets.
`distil` trains a student (a copy of the teacher's weights) single view toward the teacher's flip-averaged class
probabilities (soft cross-entropy per pixel) on generator frames under the training augmentation, AdamW with a cosine
decay: the same model, file size and cost per frame, most of the average's gain (README, "Teaching the single view
the average"). Checkpointed every `checkpoint_every` steps: a killed call continues exactly where it stopped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.augment import AugmentConfig, BatchAugmenter
from training.checkpoint import load_checkpoint, save_checkpoint, state_dict_cpu
from training.export import FlipAveraged
from training.preprocess import binarize, preprocess_image
from training.synthetic import FRAMES_PER_SUBJECT, render_frame

BATCH_SIZE = 8
FRAME_SEED_OFFSET = 31  # distillation frames are generator seed SEED + 31: never the frames of a dataset made with seed SEED


def generator_frames(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` preprocessed generator frames (N, 1, H, W) uint8 (every family) and their pupil masks (N, H, W) uint8."""
    images, masks = [], []
    for index in range(count):
        image, label = render_frame(seed, index, index // FRAMES_PER_SUBJECT)
        images.append(preprocess_image(image))
        masks.append(binarize(label))
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks))


def distil(teacher: torch.nn.Module, student: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, steps: int, lr: float = 3e-4,
           teacher_weight: float = 1.0, label_weight: float = 0.0, seed: int = 0, log_every: int = 50,
           augment: AugmentConfig | None = AugmentConfig(), checkpoint: Path | None = None, checkpoint_every: int = 100,
           amp: bool = True) -> list[float]:
    """Trains `student` in place toward `teacher`'s flip average (augment None: on the frames as they are); returns
    the loss of every step. `label_weight` adds that many times the cross-entropy to `masks`. With `checkpoint`, the
    student, optimizer and losses are written there every `checkpoint_every` steps and at the end, and a call that
    finds the file continues from its step (a finished one returns at once): batches and augmentation are drawn
    from (seed, step), so the resumed steps are the ones a straight run takes."""
    device = next(student.parameters()).device
    teacher.eval()
    student.train()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    averaged = FlipAveraged(teacher)  # what evaluate --flips scores: log of the class probabilities averaged over the flips
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    augmenter = BatchAugmenter(augment, seed=seed) if augment is not None else None
    batch_size = min(BATCH_SIZE, len(images))
    losses: list[float] = []
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        if state["steps"] != steps:
            raise ValueError(f"{checkpoint}: a distillation checkpoint of {state['steps']} steps, asked for {steps}; remove it to start again")
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        losses = list(state["losses"])
        print(f"distillation resumed at step {len(losses)}/{steps} from {checkpoint}", flush=True)
    start = time.perf_counter()
    for step in range(len(losses), steps):
        index = torch.from_numpy(np.random.default_rng([seed, step]).choice(len(images), batch_size, replace=False))
        batch = {"image": images[index].to(device), "label": masks[index].to(device), "index": index}
        if augmenter is None:
            batch["image"] = batch["image"].float() / 255.0
        else:
            batch = augmenter(batch, step * batch_size // len(images), unit_float=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = student(batch["image"]).float()
        loss = torch.zeros((), device=device)
        if teacher_weight:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                target = averaged(batch["image"]).float().exp()
            loss = loss - teacher_weight * (target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        if label_weight:
            loss = loss + label_weight * F.cross_entropy(logits, batch["label"].long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if checkpoint is not None and (len(losses) % checkpoint_every == 0 or len(losses) == steps):
            save_checkpoint(checkpoint, {"steps": steps, "student": state_dict_cpu(student), "optimizer": optimizer.state_dict(),
                                         "schedule": schedule.state_dict(), "losses": losses})
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"distil step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f} {time.perf_counter() - start:.0f} s", flush=True)
    return losses
