"""What differs between model kinds, so that one `train(cfg)` loop serves them all.

A Task names the model builder, the loss on a batch, the split-level meter, the metric to monitor, the MLflow
tags and the ONNX export. The segmentation task is TinyEfficientViTSeg with the combined loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from training.losses import CombinedLoss, ellipse_loss
from training.metrics import SegmentationMeter, center_statistics, predict_classes
from training.models import VARIANTS, build_model
from training.models.ellipse import ELLIPSE_VARIANTS, build_ellipse_model
from training.preprocess import HEIGHT, WIDTH


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
    label_maps: bool = True  # the loss needs spatial weights and distance maps (derived on the device when absent)


class SegmentationScores:
    """Accumulates the confusion matrix of the predicted classes over a split."""

    def __init__(self) -> None:
        self.meter = SegmentationMeter()

    def update(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self.meter.update(predict_classes(logits), batch["label"])

    def compute(self) -> dict[str, float]:
        scores = self.meter.compute()
        return {"pupil_iou": scores["pupil_iou"], "miou": scores["miou"], "dice": scores["dice"], "precision": scores["precision"], "recall": scores["recall"], "pixel_accuracy": scores["pixel_accuracy"]}


_combined = CombinedLoss()


def segmentation_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return _combined(logits, batch["label"].long(), batch["spatial_weights"], batch["dist_map"], alpha)


SEGMENTATION = Task(
    name="segmentation",
    model_type="TinyEfficientViT",
    monitor="valid_miou",
    onnx_name="best_efficientvit_model.onnx",
    output_shapes={"logits": (-1, 2, HEIGHT, WIDTH)},
    variants=VARIANTS,
    build_model=build_model,
    compute_loss=segmentation_loss,
    new_meter=SegmentationScores,
    predict_mask=predict_classes,
)

# ------------------------------------------------------------------------------------ ellipse regression
def ellipse_targets(batch: dict[str, torch.Tensor], width: float = WIDTH, height: float = HEIGHT) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dataset columns -> (targets (B, 6), angle weights (B,), valid (B,)).

    The dataset's rx/ry are the cv2 axes (rx along `angle`), normalized by W and H; targets put the major axis
    first (both / W) so that (sin 2t, cos 2t) is continuous. Circles get angle weight 0 (their angle is arbitrary).
    """
    cx, cy, rx, ry = batch["ellipse"].float().unbind(dim=1)
    angle = torch.deg2rad(batch["angle"].float())
    rx_px, ry_px = rx * width, ry * height
    swap = ry_px > rx_px
    major, minor = torch.where(swap, ry_px, rx_px), torch.where(swap, rx_px, ry_px)
    theta = torch.where(swap, angle + torch.pi / 2, angle)
    targets = torch.stack([cx, cy, major / width, minor / width, torch.sin(2 * theta), torch.cos(2 * theta)], dim=1)
    eccentric = ((major - minor) / (major + minor).clamp_min(1e-6) * 10.0).clamp(0.0, 1.0)
    valid = torch.isfinite(targets[:, :4]).all(dim=1)
    angle_valid = torch.isfinite(targets[:, 4:]).all(dim=1)
    weight = torch.where(angle_valid, eccentric, torch.zeros_like(eccentric)).nan_to_num(0.0)
    return targets.nan_to_num(0.0), weight, valid


def ellipse_task_loss(pred: torch.Tensor, batch: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    targets, weight, valid = ellipse_targets(batch)
    return ellipse_loss(pred, targets, weight, valid)


class EllipseScores:
    """Per-sample errors in pixels over a split: centre (mean/median/p95), detection @5 px, axes, angle."""

    def __init__(self, width: float = WIDTH, height: float = HEIGHT) -> None:
        self.width, self.height = width, height
        self.center, self.axes, self.angle = [], [], []

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        targets, weight, valid = ellipse_targets(batch, self.width, self.height)
        pred, targets = pred.detach().float().cpu()[valid.cpu()], targets.cpu()[valid.cpu()]
        weight = weight.cpu()[valid.cpu()]
        dx, dy = (pred[:, 0] - targets[:, 0]) * self.width, (pred[:, 1] - targets[:, 1]) * self.height
        self.center += torch.hypot(dx, dy).tolist()
        self.axes += ((pred[:, 2:4] - targets[:, 2:4]).abs() * self.width).mean(dim=1).tolist()
        cosine = (pred[:, 4:6] * targets[:, 4:6]).sum(dim=1).clamp(-1, 1)
        degrees = torch.rad2deg(torch.acos(cosine)) / 2  # the vectors encode 2 theta
        self.angle += degrees[weight >= 1.0].tolist()  # clearly elliptical pupils only

    def compute(self) -> dict[str, float]:
        stats = center_statistics(self.center)
        return {**stats, "axis_error_mean": float(np.mean(self.axes)) if self.axes else float("nan"),
                "angle_error_mean": float(np.mean(self.angle)) if self.angle else float("nan")}


ELLIPSE = Task(
    name="ellipse",
    model_type="EllipseRegressor",
    monitor="valid_detection_rate",
    onnx_name="best_ellipse_model.onnx",
    output_shapes={"ellipse": (-1, 6)},
    variants=ELLIPSE_VARIANTS,
    build_model=build_ellipse_model,
    compute_loss=ellipse_task_loss,
    new_meter=EllipseScores,
    label_maps=False,
)

TASKS: dict[str, Task] = {"segmentation": SEGMENTATION, "ellipse": ELLIPSE}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["Task", "TASKS", "get_task", "SEGMENTATION"]
