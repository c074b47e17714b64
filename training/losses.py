"""Segmentation losses: weighted cross-entropy + alpha * generalized Dice + (1 - alpha) * surface loss.

Pure functions on tensors, wrapped by `CombinedLoss`, which returns the total and every component. Shapes:
logits (B, C, H, W); target (B, H, W) int64 class indices; spatial_weights (B, H, W); dist_map (B, C, H, W)
signed distance per class (<= 0 inside the class, >= 0 outside; see training.preprocess.signed_distance).

All reductions are per-sample means averaged over the batch, so a batch split across DDP ranks gives the same
gradient as the whole batch in one process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.preprocess import HEIGHT, WIDTH


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, spatial_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel cross-entropy, each pixel weighted by (1 + spatial_weights), averaged over pixels."""
    if logits.shape[1] == 2:
        return _binary_cross_entropy(pupil_logit(logits), target, spatial_weights)
    ce = F.cross_entropy(logits.float(), target, reduction="none")  # (B, H, W)
    if spatial_weights is not None:
        ce = ce * (1.0 + spatial_weights)
    return ce.mean()


def generalized_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - generalized Dice (Sudre et al. 2017), per sample, averaged over the batch.

    Class weights are 1 / (label area)^2, with the area clamped to >= 1 pixel so that a class absent from the
    label (an empty pupil) still penalizes any probability mass predicted for it, without dividing by zero.
    """
    if logits.shape[1] == 2:
        return _binary_generalized_dice(torch.sigmoid(pupil_logit(logits)), target, eps)
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)  # (B, C, H, W)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)  # (B, C, H, W)
    area = onehot.sum(dim=(2, 3))  # (B, C)
    weights = 1.0 / area.clamp_min(1.0) ** 2
    intersection = (weights * (probs * onehot).sum(dim=(2, 3))).sum(dim=1)  # (B,)
    union = (weights * (probs + onehot).sum(dim=(2, 3))).sum(dim=1)  # (B,)
    return (1.0 - (2.0 * intersection + eps) / (union + eps)).mean()


def surface_loss(logits: torch.Tensor, target: torch.Tensor, dist_map: torch.Tensor) -> torch.Tensor:
    """Boundary (surface) loss of Kervadec et al., shifted so that it is >= 0 and exactly 0 at the label.

    mean over classes and pixels of (p_c - y_c) * phi_c. Because phi_c <= 0 where y_c = 1 and >= 0 where
    y_c = 0, each term equals |p_c - y_c| * |phi_c|: it falls as the prediction approaches the label, with the
    same gradient as the original sum(p_c * phi_c). (The original summed p_c * phi_c alone, so it sat below
    zero and dragged the total loss negative.)
    """
    if logits.shape[1] == 2:
        return _binary_surface(torch.sigmoid(pupil_logit(logits)), target, dist_map)
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    return ((probs - onehot) * dist_map.float()).mean()


# Two classes (the pupil model): every term is a function of one logit difference z = logit_pupil - logit_background,
# p = sigmoid(z) = softmax's pupil probability, so each full-resolution op runs on one channel instead of two and no
# one-hot is built (the loss was ~45 % of a CPU training step at 400x640). Same values as the C-class forms.
def pupil_logit(logits: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) logits -> (B, H, W) float32 logit of the pupil against the background.

    A sum against (-1, 1) rather than a difference of two channel slices: its backward writes the (B, 2, H, W)
    gradient in one pass (two slices' backward zero-fill it twice and add)."""
    sign = torch.tensor([-1.0, 1.0], dtype=torch.float32, device=logits.device).view(1, 2, 1, 1)
    return (logits.float() * sign).sum(dim=1)


def _binary_cross_entropy(z: torch.Tensor, target: torch.Tensor, spatial_weights: torch.Tensor | None) -> torch.Tensor:
    weight = None if spatial_weights is None else 1.0 + spatial_weights.float()
    return F.binary_cross_entropy_with_logits(z, target.to(z.dtype), weight=weight, reduction="mean")


def _binary_generalized_dice(p: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    y = target.to(p.dtype)
    pixels = float(y[0].numel())
    area = y.sum(dim=(1, 2))  # (B,) pupil pixels of each label
    mass = p.sum(dim=(1, 2))  # (B,) predicted pupil mass
    hit = (p * y).sum(dim=(1, 2))  # (B,) pupil intersection
    weights = 1.0 / torch.stack([pixels - area, area], dim=1).clamp_min(1.0) ** 2  # (B, 2): background, pupil
    intersection = weights[:, 0] * (pixels - mass - area + hit) + weights[:, 1] * hit
    union = weights[:, 0] * (2 * pixels - mass - area) + weights[:, 1] * (mass + area)
    return (1.0 - (2.0 * intersection + eps) / (union + eps)).mean()


def _binary_surface(p: torch.Tensor, target: torch.Tensor, dist_map: torch.Tensor) -> torch.Tensor:
    # (p0 - y0) = -(p1 - y1), so the mean over both classes is half the mean of (p1 - y1) * (phi1 - phi0)
    dist_map = dist_map.float()
    return ((p - target.to(p.dtype)) * (dist_map[:, 1] - dist_map[:, 0])).mean() * 0.5


def alpha_schedule(epoch: int, total_epochs: int, start: float = 1.0, end: float = 0.0, decay_epochs: int = 0) -> float:
    """Dice weight alpha for `epoch` (0-based): linear from `start` to `end` over decay_epochs (default: all)."""
    span = decay_epochs or total_epochs
    progress = min(max(epoch, 0) / max(span - 1, 1), 1.0)
    return float(start + (end - start) * progress)


class CombinedLoss(nn.Module):
    """total = CE(1 + w) + alpha * generalized Dice + (1 - alpha) * surface; returns a dict of all four terms."""

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        spatial_weights: torch.Tensor,
        dist_map: torch.Tensor,
        alpha: float,
    ) -> dict[str, torch.Tensor]:
        if logits.shape[1] == 2:  # one logit difference and one sigmoid serve the three terms
            z = pupil_logit(logits)
            p = torch.sigmoid(z)
            ce, dice, surface = _binary_cross_entropy(z, target, spatial_weights), _binary_generalized_dice(p, target, 1e-6), _binary_surface(p, target, dist_map)
        else:
            ce = weighted_cross_entropy(logits, target, spatial_weights)
            dice = generalized_dice_loss(logits, target)
            surface = surface_loss(logits, target, dist_map)
        total = ce + alpha * dice + (1.0 - alpha) * surface
        return {"loss": total, "ce": ce, "dice": dice, "surface": surface}


# ------------------------------------------------------------------------------------ ellipse regression
ELLIPSE_PIXEL_SCALE = WIDTH / 10.0  # loss unit: 10 px, so SmoothL1 is quadratic within 10 px and linear beyond


def ellipse_loss(pred: torch.Tensor, target: torch.Tensor, angle_weight: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """SmoothL1 on centre and semi-axes (in 10-px units) + an angle term 1 - cos(2 dtheta), weighted per sample.

    pred, target: (B, 6) = cx, cy, major, minor, sin 2t, cos 2t (cx and axes / width, cy / height);
    angle_weight: (B,) in [0, 1] (0 for circles, whose angle is arbitrary); valid: (B,) bool (samples without a
    pupil contribute nothing). Returns loss, center, axes and angle terms.
    """
    pred, target = pred.float(), target.float()
    if not bool(valid.any()):
        zero = pred.sum() * 0.0
        return {"loss": zero, "center": zero, "axes": zero, "angle": zero}
    pred, target, angle_weight = pred[valid], target[valid], angle_weight[valid]
    scale = torch.tensor([ELLIPSE_PIXEL_SCALE, ELLIPSE_PIXEL_SCALE * HEIGHT / WIDTH, ELLIPSE_PIXEL_SCALE, ELLIPSE_PIXEL_SCALE], device=pred.device)
    center = F.smooth_l1_loss(pred[:, :2] * scale[:2], target[:, :2] * scale[:2])
    axes = F.smooth_l1_loss(pred[:, 2:4] * scale[2:], target[:, 2:4] * scale[2:])
    cosine = (pred[:, 4:6] * target[:, 4:6]).sum(dim=1)
    angle = (angle_weight * (1.0 - cosine)).mean()
    return {"loss": center + axes + angle, "center": center, "axes": axes, "angle": angle}
