"""EllipseRegressor: a small CNN that predicts the normalized pupil ellipse directly (no mask).

Output (B, 6): cx, cy (fractions of width and height), major and minor semi-axes (fractions of the width),
sin(2 theta), cos(2 theta) of the major axis angle. The centre comes from a soft-argmax over a stride-8 heatmap
(position-exact, unlike global pooling); the axes and angle from features pooled with the same heatmap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.models.efficientvit import ConvBN, _fuse_children


@dataclass(frozen=True)
class EllipseConfig:
    widths: tuple[int, ...] = (8, 16, 32, 48)  # channels at stride 2, 4, 8, 16
    blocks: tuple[int, ...] = (0, 1, 1, 1)  # extra depthwise-separable blocks per stage
    head_dim: int = 32  # hidden units of the axes/angle MLP
    in_channels: int = 1


ELLIPSE_VARIANTS: dict[str, EllipseConfig] = {
    "tiny": EllipseConfig(),
    "small": EllipseConfig(widths=(12, 24, 48, 64), blocks=(0, 1, 2, 2), head_dim=48),
}


def _separable(in_dim: int, out_dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        ConvBN(in_dim, in_dim, 3, stride=stride, padding=1, groups=in_dim), nn.ReLU(inplace=True),
        ConvBN(in_dim, out_dim), nn.ReLU(inplace=True),
    )


class EllipseRegressor(nn.Module):
    """(B, 1, H, W) image in [0, 1] -> (B, 6) ellipse parameters (see module docstring)."""

    def __init__(self, config: EllipseConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or EllipseConfig()
        if overrides:
            cfg = EllipseConfig(**{**asdict(cfg), **overrides})
        self.config = cfg
        layers: list[nn.Module] = [ConvBN(cfg.in_channels, cfg.widths[0], 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        in_dim = cfg.widths[0]
        self.heatmap_stage = 2  # the heatmap is read at stride 8
        stages = []
        for index, (width, extra) in enumerate(zip(cfg.widths, cfg.blocks)):
            stage = [] if index == 0 else [_separable(in_dim, width, 2)]
            stage += [_separable(width, width, 1) for _ in range(extra)]
            stages.append(nn.Sequential(*stage))
            in_dim = width
        self.stem = nn.Sequential(*layers)
        self.stages = nn.ModuleList(stages)
        self.context = nn.Conv2d(cfg.widths[-1], cfg.widths[2], 1)  # stride-16 context added to stride 8
        self.heatmap = nn.Conv2d(cfg.widths[2], 1, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(cfg.widths[2], cfg.head_dim), nn.ReLU(inplace=True), nn.Linear(cfg.head_dim, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        outputs = []
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        fine = outputs[self.heatmap_stage]  # (B, C8, H/8, W/8)
        fine = fine + F.interpolate(self.context(outputs[-1]), size=fine.shape[-2:], mode="nearest")
        batch, channels, height, width = fine.shape
        weights = self.heatmap(fine).flatten(1).softmax(dim=1)  # (B, h*w)
        ys = (torch.arange(height, dtype=x.dtype, device=x.device) + 0.5) / height
        xs = (torch.arange(width, dtype=x.dtype, device=x.device) + 0.5) / width
        grid_y = ys.view(height, 1).expand(height, width).reshape(1, -1)
        grid_x = xs.view(1, width).expand(height, width).reshape(1, -1)
        cx = (weights * grid_x).sum(dim=1, keepdim=True)  # (B, 1)
        cy = (weights * grid_y).sum(dim=1, keepdim=True)
        pooled = torch.bmm(fine.flatten(2), weights.unsqueeze(2)).squeeze(2)  # (B, C8)
        axes_angle = self.head(pooled)  # (B, 4)
        axes = F.softplus(axes_angle[:, :2]) * 0.05  # semi-axes, fractions of the width (~32 px at 1.0)
        angle = F.normalize(axes_angle[:, 2:], dim=1, eps=1e-6)  # (sin 2t, cos 2t) on the unit circle
        return torch.cat([cx, cy, axes, angle], dim=1)

    @torch.no_grad()
    def fuse(self) -> "EllipseRegressor":
        _fuse_children(self)
        return self


def build_ellipse_model(variant: str = "tiny") -> EllipseRegressor:
    if variant not in ELLIPSE_VARIANTS:
        raise ValueError(f"unknown ellipse variant {variant!r}; choose one of {sorted(ELLIPSE_VARIANTS)}")
    return EllipseRegressor(ELLIPSE_VARIANTS[variant])
