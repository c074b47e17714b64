"""What differs between model kinds, so that one `train(cfg)` loop serves them all.

A Task names the model builder, the loss on a batch, the split-level meter, the metric to monitor, the MLflow
tags and the ONNX export. The segmentation task is TinyEfficientViTSeg with the combined loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from training.losses import CombinedLoss
from training.metrics import SegmentationMeter
from training.models import VARIANTS, build_model


@dataclass(frozen=True)
class Task:
    name: str
    model_type: str  # MLflow tag model_type
    monitor: str  # validation metric to maximize (early stopping, best checkpoint)
    onnx_name: str  # file name of the exported best model
    output_shapes: dict[str, tuple[int, ...]]  # ONNX outputs (name: shape, -1 = dynamic)
    variants: dict[str, Any]
    build_model: Callable[[str], nn.Module]
    compute_loss: Callable[[Any, dict[str, torch.Tensor], float], dict[str, torch.Tensor]]
    new_meter: Callable[[], Any]  # .update(outputs, batch), .compute() -> dict of scores
    predict_mask: Callable[[Any], torch.Tensor] | None = None  # outputs -> (B, H, W) pupil mask, for overlays


class SegmentationScores:
    """Accumulates the confusion matrix of argmax predictions over a split."""

    def __init__(self) -> None:
        self.meter = SegmentationMeter()

    def update(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self.meter.update(logits.argmax(dim=1), batch["label"])

    def compute(self) -> dict[str, float]:
        scores = self.meter.compute()
        return {"iou": scores["pupil_iou"], "miou": scores["miou"], "dice": scores["dice"], "precision": scores["precision"], "recall": scores["recall"], "pixel_accuracy": scores["pixel_accuracy"]}


_combined = CombinedLoss()


def segmentation_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return _combined(logits, batch["label"].long(), batch["spatial_weights"], batch["dist_map"], alpha)


SEGMENTATION = Task(
    name="segmentation",
    model_type="TinyEfficientViT",
    monitor="valid_miou",
    onnx_name="best_efficientvit_model.onnx",
    output_shapes={"logits": (-1, 2, 400, 640)},
    variants=VARIANTS,
    build_model=build_model,
    compute_loss=segmentation_loss,
    new_meter=SegmentationScores,
    predict_mask=lambda logits: logits.argmax(dim=1),
)

TASKS: dict[str, Task] = {"segmentation": SEGMENTATION}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["Task", "TASKS", "get_task", "SEGMENTATION"]
