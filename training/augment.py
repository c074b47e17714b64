"""Training-time augmentation, applied per batch with torch ops on the device the model trains on.

Loader workers decode uint8 image + label only. The engine then calls

    batch = BatchAugmenter(AugmentConfig(), seed=cfg.seed)(batch, epoch)   # batch["index"]: dataset indices

Each sample's parameters are drawn on the host from `np.random.default_rng([seed, epoch, index])` (and the
pupil centre of its label), so they are a function of (seed, epoch, index): any worker or rank layout and a
resumed run see the same samples. The pixel work runs on the batch's device, in this order:

1. flip + affine (rotation, log-uniform zoom x0.3-2 with letterbox-like padding, shift) + crop: ONE warp per
   sample (`affine_grid` + `grid_sample`: bilinear for the image, nearest for the label; a plain flip is an
   exact `torch.flip`); zoom-outs below x0.5 sample a 2x2-averaged copy (anti-aliasing, like cv2's INTER_AREA);
2. a per-sample 256-entry lookup table: brightness/contrast/gamma and a strong monotone curve;
3. cutout rectangles (never over the pupil centre); 4. Gaussian blur; 5. downscale -> upscale;
6. Gaussian noise (one torch generator per sample, seeded from its parameters);
7. JPEG-like compression: 8x8 block DCT quantized with the IJG luminance table at quality 15-80.

The image stays on the uint8 grid between steps (rounded and clamped), as the CPU pipeline it replaces did. The
ellipse columns are transformed analytically with the warp (NaN when the pupil left the frame); the other
label-derived targets are recomputed from the final label by `training.targets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from training.targets import pupil_boxes


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation: each `*_p` is the probability of one step. Defaults are the sim-to-real recipe
    (a model trained on synthetic frames must survive other cameras: framing, contrast, sensor, compression)."""

    flip_p: float = 0.5  # horizontal flip
    vflip_p: float = 0.0  # upside-down flip (0: off and not drawn, so the other steps' draws stay as without the field)
    affine_p: float = 0.6  # rotation/scale/translation (zoom: eye scale x0.3-2, letterbox-like padding)
    max_rotation: float = 20.0  # degrees
    scale_range: tuple[float, float] = (0.3, 2.0)  # log-uniform; < 1 shrinks the frame inside padding
    max_shift: float = 0.2  # fraction of width/height (plus the room a shrunken frame leaves)
    photometric_p: float = 0.8  # brightness/contrast/gamma
    curve_p: float = 0.4  # a strong random monotone contrast curve
    blur_p: float = 0.3  # Gaussian blur sigma 0.5-3
    noise_p: float = 0.3  # Gaussian noise sigma 2-12
    cutout_p: float = 0.3  # 1-3 rectangles of random gray that do not cover the pupil centre
    lowres_p: float = 0.2  # downscale x1.5-4, then upscale back (soft low-resolution sensor)
    jpeg_p: float = 0.2  # JPEG quality 15-80
    crop: tuple[int, int] | None = None  # (height, width): train on random crops at full pixel scale (None: whole frames)
    crop_pupil_p: float = 0.8  # share of crops placed so that they hold the pupil centre

    @classmethod
    def only(cls, **probabilities: float) -> "AugmentConfig":
        """Every step off except those given, e.g. AugmentConfig.only(flip_p=1.0)."""
        off = {f.name: 0.0 for f in fields(cls) if f.name.endswith("_p")}
        return cls(**{**off, **probabilities})


PAD_MODES = ("border", "zeros", "reflection")  # replicate, constant (any gray), reflect: grid_sample's names


@dataclass
class SampleParams:
    """One sample's draw: everything the batch ops need, in plain numbers (host side)."""

    matrix: np.ndarray | None = None  # 2x3 forward warp (input pixel -> output pixel), flip and crop included
    flip_only: bool = False  # the warp is a plain horizontal flip (done as an exact torch.flip)
    scale: float = 1.0
    pad_mode: str = "border"
    pad_value: float = 0.0
    lut: np.ndarray | None = None  # (256,) uint8
    cutouts: list[tuple[int, int, int, int, int]] = ()  # (y, x, h, w, gray)
    blur_sigma: float = 0.0
    lowres_factor: float = 0.0
    noise: tuple[float, int] | None = None  # (sigma, generator seed)
    jpeg_quality: int = 0


def sample_params(rng: np.random.Generator, cfg: AugmentConfig, in_shape: tuple[int, int], out_shape: tuple[int, int],
                  pupil_centre: tuple[float, float] | None) -> SampleParams:
    """Draws one sample's parameters. pupil_centre: (x, y) of the label's pupil in input pixels, None if empty."""
    height, width = in_shape
    out_h, out_w = out_shape
    p = SampleParams()
    matrix = np.eye(3)
    geometric = False
    if rng.random() < cfg.flip_p:
        matrix = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        geometric = True
    if cfg.vflip_p > 0 and rng.random() < cfg.vflip_p:
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]]) @ matrix
        geometric = True
    if rng.random() < cfg.affine_p:
        p.scale = math.exp(rng.uniform(*np.log(cfg.scale_range)))
        room = max(0.0, 1.0 - p.scale) / 2  # a shrunken frame may sit anywhere inside the padding
        angle = math.radians(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        alpha, beta = p.scale * math.cos(angle), p.scale * math.sin(angle)
        cx, cy = width / 2, height / 2  # cv2.getRotationMatrix2D's convention (positive angle: counter-clockwise)
        affine = np.array([[alpha, beta, (1 - alpha) * cx - beta * cy], [-beta, alpha, beta * cx + (1 - alpha) * cy], [0.0, 0.0, 1.0]])
        affine[0, 2] += rng.uniform(-1, 1) * (cfg.max_shift + room) * width
        affine[1, 2] += rng.uniform(-1, 1) * (cfg.max_shift + room) * height
        matrix = affine @ matrix
        p.pad_mode = PAD_MODES[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        p.pad_value = float(rng.integers(0, 256)) if rng.random() < 0.5 else 0.0
        geometric = True
    if cfg.crop is not None:  # the crop is one more translation of the same warp: only the crop is computed
        high = np.array([width - out_w, height - out_h], np.float64)
        if pupil_centre is not None and rng.random() < cfg.crop_pupil_p:
            centre = matrix[:2] @ np.array([pupil_centre[0], pupil_centre[1], 1.0])
            origin = np.clip(centre - rng.uniform(0.15, 0.85, 2) * np.array([out_w, out_h]), np.minimum(0, high), np.maximum(0, high)).round()
        else:
            origin = (rng.uniform(0, 1, 2) * high).round()
        matrix = np.array([[1.0, 0.0, -origin[0]], [0.0, 1.0, -origin[1]], [0.0, 0.0, 1.0]]) @ matrix
        geometric = True
    p.matrix = matrix[:2] if geometric else None
    p.flip_only = geometric and p.scale == 1.0 and cfg.crop is None and matrix[0, 0] == -1.0 and matrix[1, 1] == 1.0 and matrix[0, 1] == 0.0
    lut = None
    if rng.random() < cfg.photometric_p:
        table = np.arange(256, dtype=np.float32) / 255.0
        table = table ** rng.uniform(0.6, 1.6)
        table = (table - 0.5) * rng.uniform(0.5, 1.4) + 0.5 + rng.uniform(-0.2, 0.2)
        lut = np.clip(table * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < cfg.curve_p:  # a random monotone curve through 6 knots
        knots = np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 1.0, 5))])
        curve = np.clip(np.interp(np.arange(256), np.linspace(0, 255, 6), knots / knots[-1] * rng.uniform(150, 255) + rng.uniform(0, 60)), 0, 255).astype(np.uint8)
        lut = curve if lut is None else curve[lut]
    p.lut = lut
    if rng.random() < cfg.cutout_p:
        centre = None if pupil_centre is None else (p.matrix @ np.array([*pupil_centre, 1.0]) if p.matrix is not None else np.array(pupil_centre))
        rects = []
        for _ in range(int(rng.integers(1, 4))):
            h, w = int(rng.uniform(0.05, 0.25) * out_h), int(rng.uniform(0.05, 0.25) * out_w)
            y, x = int(rng.integers(0, out_h - h)), int(rng.integers(0, out_w - w))
            gray = int(rng.integers(0, 256))
            if centre is None or not (x <= centre[0] < x + w and y <= centre[1] < y + h):
                rects.append((y, x, h, w, gray))
        p.cutouts = rects
    if rng.random() < cfg.blur_p:
        p.blur_sigma = float(rng.uniform(0.5, 3.0))
    if rng.random() < cfg.lowres_p:
        p.lowres_factor = float(rng.uniform(1.5, 4.0))
    if rng.random() < cfg.noise_p:
        p.noise = (float(rng.uniform(2, 12)), int(rng.integers(2**31)))
    if rng.random() < cfg.jpeg_p:
        p.jpeg_quality = int(rng.integers(15, 81))
    return p


class BatchAugmenter:
    """Augments a batch on its own device. Input: image (B, 1, H, W) uint8, label (B, H, W) uint8, index (B,),
    and optionally ellipse (B, 4) normalized cx, cy, rx, ry + angle (B,) degrees. Output: the same keys, image
    uint8 (B, 1, h, w) and label (B, h, w) at the output size (the crop, or H x W)."""

    def __init__(self, cfg: AugmentConfig = AugmentConfig(), seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed

    def params(self, batch: dict[str, torch.Tensor], epoch: int) -> list[SampleParams]:
        label = batch["label"]
        in_shape = tuple(label.shape[-2:])
        out_shape = tuple(self.cfg.crop) if self.cfg.crop is not None else in_shape
        centres = pupil_centres(label)
        return [sample_params(np.random.default_rng([self.seed, epoch, int(index)]), self.cfg, in_shape, out_shape, centre)
                for index, centre in zip(batch["index"].tolist(), centres)]

    def __call__(self, batch: dict[str, torch.Tensor], epoch: int, unit_float: bool = False) -> dict[str, torch.Tensor]:
        """unit_float: return the image as float32 in [0, 1] (the model's input) instead of uint8."""
        return apply(batch, self.params(batch, epoch), tuple(self.cfg.crop) if self.cfg.crop is not None else None, unit_float)


def pupil_centres(label: torch.Tensor) -> list[tuple[float, float] | None]:
    """(x, y) centroid of each label's pupil pixels, None where the label is empty. Sums run over each pupil's
    bounding box only (two host transfers: the boxes, then the sums)."""
    boxes = pupil_boxes(label)
    sums = [label.new_zeros(3, dtype=torch.int64)] * len(boxes)
    for b, box in enumerate(boxes):
        if box is not None:
            y0, y1, x0, x1 = box
            window = (label[b, y0:y1, x0:x1] > 0).to(torch.int32)
            columns, rows = window.sum(dim=0), window.sum(dim=1)  # pixel counts per column / row of the box
            xs = torch.arange(x0, x1, device=label.device)
            ys = torch.arange(y0, y1, device=label.device)
            sums[b] = torch.stack([columns.sum(), (columns * xs).sum(), (rows * ys).sum()])
    values = torch.stack(sums).cpu().double().numpy() if sums else np.zeros((0, 3))
    return [(sx / a, sy / a) if a > 0 else None for a, sx, sy in values]


def apply(batch: dict[str, torch.Tensor], params: list[SampleParams], out_shape: tuple[int, int] | None = None,
          unit_float: bool = False) -> dict[str, torch.Tensor]:
    """Applies drawn parameters to a batch (see BatchAugmenter)."""
    image = batch["image"][:, 0].float()  # (B, H, W) on the uint8 grid
    label = batch["label"]
    device = image.device
    in_shape = tuple(label.shape[-2:])
    out_shape = out_shape or in_shape
    out = dict(batch)
    flipped = [i for i, p in enumerate(params) if p.flip_only]
    if flipped:  # image is already this function's own copy
        label = label.clone()
        image[flipped], label[flipped] = image[flipped].flip(-1), label[flipped].flip(-1)
    warped = [i for i, p in enumerate(params) if p.matrix is not None and not p.flip_only]
    if out_shape != in_shape and len(warped) != len(params):
        raise ValueError("a crop warps every sample")
    if warped:
        image, label = _warp(image, label, [params[i] for i in warped], warped, out_shape)
    if "ellipse" in batch and (warped or flipped):
        out["ellipse"], out["angle"] = _warp_ellipses(batch["ellipse"], batch["angle"], params, in_shape, out_shape, label)
    if any(p.lut is not None for p in params):  # one flat table, each sample indexing its own 256 entries (identity if none)
        identity = np.arange(256, dtype=np.uint8)
        tables = torch.from_numpy(np.concatenate([identity if p.lut is None else p.lut for p in params])).to(device).float()
        offsets = torch.arange(len(params), device=device, dtype=torch.int32).view(-1, 1, 1) * 256
        image = tables.index_select(0, image.to(torch.int32).add_(offsets).view(-1)).view(image.shape)  # int32 indices: no int64 copy
    cut = [(i, r) for i, p in enumerate(params) for r in p.cutouts]
    for i, (y, x, h, w, gray) in cut:
        image[i, y : y + h, x : x + w] = float(gray)
    blurred = [i for i, p in enumerate(params) if p.blur_sigma > 0]
    if blurred:
        image[blurred] = gaussian_blur(image[blurred], [params[i].blur_sigma for i in blurred]).round()
    for i, p in enumerate(params):
        if p.lowres_factor > 0:
            h, w = image.shape[-2:]
            small = F.interpolate(image[i][None, None], size=(int(h / p.lowres_factor), int(w / p.lowres_factor)), mode="area")
            image[i] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0, 0].round()
        if p.noise is not None:
            generator = torch.Generator(device=device)
            generator.manual_seed(p.noise[1])
            noise = torch.randn(image.shape[-2:], generator=generator, device=device).mul_(p.noise[0])
            image[i].add_(noise).clamp_(0, 255).round_()
    compressed = [i for i, p in enumerate(params) if p.jpeg_quality > 0]
    if compressed:
        image[compressed] = jpeg_like(image[compressed], [params[i].jpeg_quality for i in compressed])
    # every step above leaves whole gray levels in 0-255
    out["image"] = image.div_(255.0)[:, None] if unit_float else image.to(torch.uint8)[:, None]
    out["label"] = label
    return out


def _normalized_theta(forward: np.ndarray, in_shape: tuple[int, int], out_shape: tuple[int, int]) -> np.ndarray:
    """(n, 3, 3) forward pixel warps (input -> output) -> (n, 2, 3) affine_grid thetas (output -> input, in the
    [-1, 1] coordinates of align_corners=False: x_norm = (2 x + 1) / W - 1)."""
    def to_norm(height: int, width: int) -> np.ndarray:
        return np.array([[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0], [0.0, 0.0, 1.0]])

    return (to_norm(*in_shape) @ np.linalg.inv(forward) @ np.linalg.inv(to_norm(*out_shape)))[:, :2]


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, (n, 1, height, width), align_corners=False), built by broadcasting (2.5x faster on CPU)."""
    xs = (2 * torch.arange(width, device=theta.device, dtype=torch.float32) + 1) / width - 1
    ys = ((2 * torch.arange(height, device=theta.device, dtype=torch.float32) + 1) / height - 1)[:, None]
    grid = torch.empty((theta.shape[0], height, width, 2), device=theta.device)
    for axis in range(2):
        a, b, c = (theta[:, axis, k, None, None] for k in range(3))
        torch.add(a * xs, b * ys + c, out=grid[..., axis])  # (n, 1, W) + (n, H, 1): one pass over the grid
    return grid


def _warp(image: torch.Tensor, label: torch.Tensor, params: list[SampleParams], rows: list[int], out_shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One grid per warped sample (`affine_grid` + `grid_sample`); rows not warped are kept (only without a crop).
    Zoom-outs below x0.5 sample a 2x2-averaged copy of the frame (a mip level: the anti-aliasing of cv2's
    INTER_AREA at a quarter of the cost); normalized grid coordinates are the same at both resolutions. Samples are
    warped in groups of one padding mode and mip level, each group's frames and grids gathered or built once."""
    in_shape = tuple(image.shape[-2:])
    out_h, out_w = out_shape
    device = image.device
    forward = np.stack([np.vstack([p.matrix, [0.0, 0.0, 1.0]]) for p in params])
    theta = torch.from_numpy(_normalized_theta(forward, in_shape, out_shape)).to(device=device, dtype=torch.float32)
    same = (out_h, out_w) == in_shape
    # without a crop the warped rows are written back into `image` (the caller's own copy) after every group is read
    new_image = image if same else image.new_empty((image.shape[0], out_h, out_w))
    new_label = label.clone() if same and len(rows) != label.shape[0] else label.new_empty((label.shape[0], out_h, out_w))
    sampled_rows = []
    for mode in PAD_MODES:
        for half in (False, True):
            chosen = [k for k, p in enumerate(params) if p.pad_mode == mode and (p.scale < 0.5) == half]
            if not chosen:
                continue
            target = torch.tensor([rows[k] for k in chosen], device=device)
            every = len(chosen) == image.shape[0]  # the whole batch in one group: no gather
            grid = _affine_grid(theta if every else theta[chosen], out_h, out_w)
            frames = (image if every else image.index_select(0, target))[:, None]
            if half:
                frames = F.avg_pool2d(frames, 2, ceil_mode=True)
            if mode == "zeros":  # a constant gray pad: sample (frame - gray) with zero padding, add the gray back
                values = torch.tensor([params[k].pad_value for k in chosen], device=device).view(-1, 1, 1, 1)
                sampled = F.grid_sample(frames - values, grid, mode="bilinear", padding_mode=mode, align_corners=False).add_(values)
            else:
                sampled = F.grid_sample(frames, grid, mode="bilinear", padding_mode=mode, align_corners=False)
            sampled_rows.append((target, sampled[:, 0].round_().clamp_(0, 255)))
            labels = (label if every else label.index_select(0, target))[:, None].float()
            warped = F.grid_sample(labels, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].to(label.dtype)
            new_label.index_copy_(0, target, warped)
    for target, sampled in sampled_rows:  # after every read of `image`
        new_image.index_copy_(0, target, sampled)
    return new_image, new_label


def _warp_ellipses(ellipse: torch.Tensor, angle: torch.Tensor, params: list[SampleParams], in_shape, out_shape, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored ellipse (cx, cy, rx, ry normalized by the input size; angle in degrees, cv2's convention) mapped
    through each warp (a similarity: flip, rotation, uniform scale, shift) and normalized by the output size; NaN
    where the final label holds no pupil."""
    height, width = in_shape
    out_h, out_w = out_shape
    values = ellipse.detach().double().cpu().numpy().copy()
    angles = angle.detach().double().cpu().numpy().copy()
    empty = (label.flatten(1).amax(dim=1) == 0).cpu().numpy()
    for i, p in enumerate(params):
        cx, cy, rx, ry = values[i] * [width, height, width, height]
        a = angles[i]
        if p.matrix is not None:
            linear = p.matrix[:, :2]
            scale = math.sqrt(abs(np.linalg.det(linear)))
            cx, cy = p.matrix @ np.array([cx, cy, 1.0])
            direction = linear @ np.array([math.cos(math.radians(a)), math.sin(math.radians(a))])
            a = math.degrees(math.atan2(direction[1], direction[0])) % 180.0
            rx, ry = rx * scale, ry * scale
        values[i] = [cx / out_w, cy / out_h, rx / out_w, ry / out_h]
        angles[i] = a
        if empty[i]:
            values[i], angles[i] = np.nan, np.nan
    return torch.from_numpy(values).to(ellipse), torch.from_numpy(angles).to(angle)


def gaussian_blur(images: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """(n, H, W) float, one sigma per image: separable Gaussian (radius 3 sigma), reflected borders as cv2's default.
    One image at a time, each pass a sum of shifted slices (3x faster on CPU than a one-channel convolution)."""
    out = torch.empty_like(images)
    height, width = images.shape[-2:]
    for i, sigma in enumerate(sigmas):
        radius = max(1, int(math.ceil(3 * sigma)))
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = (kernel / kernel.sum()).astype(np.float32).tolist()
        x = F.pad(images[i][None, None], (radius, radius, radius, radius), mode="reflect")[0, 0]
        rows = x[:, :width] * kernel[0]
        for t in range(1, 2 * radius + 1):
            rows.add_(x[:, t : t + width], alpha=kernel[t])
        blurred = rows[:height] * kernel[0]
        for t in range(1, 2 * radius + 1):
            blurred.add_(rows[t : t + height], alpha=kernel[t])
        out[i] = blurred
    return out


_LUMINANCE = torch.tensor([  # the IJG/JPEG standard luminance quantization table (quality 50)
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32).view(8, 8)


def _dct_matrix(device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.to(device=device, dtype=torch.float32)


def jpeg_like(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """(n, H, W) on the 0-255 grid -> the same after grayscale baseline JPEG's lossy step: 8x8 block DCT, quantized
    with the IJG luminance table scaled to each quality (the entropy coding JPEG adds is lossless)."""
    n, height, width = images.shape
    pad_h, pad_w = -height % 8, -width % 8
    x = F.pad(images[:, None], (0, pad_w, 0, pad_h), mode="replicate")[:, 0] if pad_h or pad_w else images
    H, W = x.shape[-2:]
    quality = torch.tensor(qualities, device=images.device, dtype=torch.float32).view(-1, 1, 1)
    scale = torch.where(quality < 50, 5000.0 / quality, 200.0 - 2.0 * quality)
    table = ((_LUMINANCE.to(images.device)[None] * scale + 50) / 100).floor().clamp(1, 255).view(n, 1, 8, 1, 8)
    dct = _dct_matrix(images.device)
    blocks = (x - 128.0).view(n, H // 8, 8, W // 8, 8)
    coefficients = torch.einsum("ij,nbjck,lk->nbicl", dct, blocks, dct)
    coefficients = (coefficients / table).round() * table
    restored = torch.einsum("ji,nbjck,kl->nbicl", dct, coefficients, dct).reshape(n, H, W) + 128.0
    return restored[:, :height, :width].round().clamp(0, 255)


__all__ = ["AugmentConfig", "BatchAugmenter", "SampleParams", "apply", "gaussian_blur", "jpeg_like", "pupil_centres", "sample_params"]
