"""Label-derived training targets computed per batch on the training device, from the final (augmented) labels.

- spatial weights: the 3x3 morphological gradient of the pupil mask (pixels whose 3x3 neighbourhood holds both
  classes, counted by two shifted sums) times BOUNDARY_WEIGHT: exactly `preprocess.spatial_weights`;
- signed distance maps, with `preprocess.distance_maps`' conventions (channel 0 background, 1 pupil; <= 0 inside,
  >= 0 outside, region edge pixels 0, / the frame diagonal): an exact Euclidean distance transform (a row pass,
  then a column pass over the rows that can hold the nearest feature), run on a grid `factor` times coarser than
  the frame and interpolated back. factor=1 is exact (as cv2's DIST_MASK_PRECISE); the default factor 4 is within
  DISTANCE_ERROR_BOUND_PX pixels of it on pupil masks (tests/test_targets.py measures it on generator masks).

Both read the label at full resolution only inside each pupil's bounding box (`pupil_boxes`: two max-reductions
and one host transfer per batch); outside it every pixel is background, so the rest of the frame is a fill.

The ellipse columns are not recomputed here: `training.augment` maps them through the warp analytically.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from training.preprocess import BOUNDARY_WEIGHT

DISTANCE_FACTOR = 4  # coarse grid of the distance transform (1: exact)
DISTANCE_ERROR_BOUND_PX = 4.25  # |approximate - exact| at factor 4 in frame pixels, every pixel: about (4 - 1) * sqrt(2), a cell centre vs a pixel
_FAR = 1e6


Box = tuple[int, int, int, int]  # (y0, y1, x0, x1): rows y0..y1-1 and columns x0..x1-1 hold every pupil pixel


def pupil_boxes(mask: torch.Tensor) -> list[Box | None]:
    """(B, H, W) mask (non-zero = pupil) -> each image's pupil bounding box, None where it has no pupil. Two
    max-reductions and one host transfer: every full-frame pass the targets need after this is a fill or a copy."""
    rows, cols = mask.amax(dim=2) > 0, mask.amax(dim=1) > 0  # (B, H), (B, W)
    has = rows.any(dim=1)
    height, width = rows.shape[1], cols.shape[1]
    r = torch.arange(height, device=mask.device)
    c = torch.arange(width, device=mask.device)
    extents = torch.stack([torch.where(rows, r, height).amin(dim=1), torch.where(rows, r, -1).amax(dim=1) + 1,
                           torch.where(cols, c, width).amin(dim=1), torch.where(cols, c, -1).amax(dim=1) + 1, has.long()], dim=1).cpu().tolist()
    return [tuple(e[:4]) if e[4] else None for e in extents]


def _grow(box: Box, margin: int, height: int, width: int) -> Box:
    y0, y1, x0, x1 = box
    return max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)


def spatial_weights(mask: torch.Tensor, boundary_weight: float = BOUNDARY_WEIGHT, boxes: list[Box | None] | None = None) -> torch.Tensor:
    """(B, H, W) pupil mask (non-zero = pupil) -> float32 (B, H, W) boundary band weights: pixels whose 3x3
    neighbourhood inside the frame holds both classes (cv2's morphological gradient ignores outside pixels too).
    The band lies within one pixel of the pupil, so it is computed on each pupil's bounding box grown by one."""
    height, width = mask.shape[1:]
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for b, box in enumerate(pupil_boxes(mask) if boxes is None else boxes):
        if box is None:
            continue
        y0, y1, x0, x1 = _grow(box, 1, height, width)
        pupil = mask[b, y0:y1, x0:x1] > 0
        # 3x3 dilation (any) and erosion (all), one axis at a time, each from a copy of the previous pass; a pixel on
        # the window's edge just lacks that neighbour, which is how cv2 treats pixels outside the frame (and inside
        # the frame the window's edge pixels are background anyway)
        grown, shrunk = pupil.clone(), pupil.clone()
        for dim in (1, 0):
            n = pupil.shape[dim]
            if n < 2:
                continue
            before_grown, before_shrunk = grown.clone(), shrunk.clone()
            grown.narrow(dim, 1, n - 1).logical_or_(before_grown.narrow(dim, 0, n - 1))
            grown.narrow(dim, 0, n - 1).logical_or_(before_grown.narrow(dim, 1, n - 1))
            shrunk.narrow(dim, 1, n - 1).logical_and_(before_shrunk.narrow(dim, 0, n - 1))
            shrunk.narrow(dim, 0, n - 1).logical_and_(before_shrunk.narrow(dim, 1, n - 1))
        out[b, y0:y1, x0:x1].masked_fill_(grown & ~shrunk, boundary_weight)
    return out


def _distance_to(feature: torch.Tensor, rows: torch.Tensor, spacing: float) -> torch.Tensor:
    """Euclidean distance (in frame pixels; cells are `spacing` apart) from every cell to the nearest True cell of
    `feature` (B, h, w), where the nearest feature always lies in the rows selected by `rows` (B, K) (indices,
    -1 = unused). _FAR where an image has no feature."""
    batch, height, width = feature.shape
    columns = torch.arange(width, device=feature.device, dtype=torch.float32)
    far = torch.full_like(columns, -_FAR)
    left = torch.cummax(torch.where(feature, columns, far), dim=-1).values
    right = -torch.flip(torch.cummax(torch.flip(torch.where(feature, -columns, far), [-1]), dim=-1).values, [-1])
    horizontal = torch.minimum(columns - left, right - columns)  # cells to the nearest feature in the same row
    valid = rows >= 0
    gathered = torch.gather(horizontal, 1, rows.clamp_min(0)[:, :, None].expand(-1, -1, width))  # (B, K, w)
    gathered = torch.where(valid[:, :, None], gathered.square(), torch.full_like(gathered, _FAR))
    ys = torch.arange(height, device=feature.device, dtype=torch.float32)
    vertical = (ys[None, None, :] - rows.clamp_min(0).float()[:, :, None]).square()  # (B, K, h)
    squared = torch.full((batch, height, width), _FAR, device=feature.device)
    for k in range(rows.shape[1]):  # running minimum over the window's rows: no (B, K, h, w) temporary
        torch.minimum(squared, gathered[:, k, None, :] + vertical[:, k, :, None], out=squared)
    return squared.sqrt_().mul_(spacing)


def _windows(pupil: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, K) indices along `dim` (1: rows, 2: columns) from one before the first pupil cell to one after the
    last (-1 padded; all -1 for an image without pupil)."""
    size = pupil.shape[dim]
    has = pupil.any(dim=3 - dim)  # (B, size)
    index = torch.arange(size, device=pupil.device)
    first = torch.where(has, index, size).amin(dim=1)
    last = torch.where(has, index, -1).amax(dim=1)
    start, stop = (first - 1).clamp_min(0), (last + 1).clamp_max(size - 1)
    count = int((stop - start + 1).clamp_min(1).max()) if pupil.shape[0] else 1
    window = start[:, None] + torch.arange(count, device=pupil.device)[None]
    return torch.where((window <= stop[:, None]) & has.any(dim=1)[:, None], window, torch.full_like(window, -1))


def _distance_inside(background: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, spacing: float) -> torch.Tensor:
    """Distance from every pupil cell to the nearest background cell, computed on the pupil's bounding window only
    (one cell of margin: a row or column outside holds no pupil, so the nearest background always lies inside);
    other cells get 0 (they are background, or interpolation neighbours that the window also covers)."""
    batch = background.shape[0]
    b = torch.arange(batch, device=background.device)[:, None, None]
    r, c = rows.clamp_min(0)[:, :, None], cols.clamp_min(0)[:, None, :]
    inside = (rows >= 0)[:, :, None] & (cols >= 0)[:, None, :]
    window = background[b, r, c] & inside  # (B, K, Kc); padding counts as no feature
    local_rows = torch.where(rows >= 0, torch.arange(rows.shape[1], device=rows.device)[None], torch.full_like(rows, -1))
    distance = _distance_to(window, local_rows, spacing)
    height, width = background.shape[1:]
    out = torch.zeros((batch, height + 1, width + 1), device=background.device)  # padding entries land in the extra row
    r_out = torch.where(inside, r.expand_as(window), height)
    c_out = torch.where(inside, c.expand_as(window), width)
    out[b.expand_as(window), r_out, c_out] = distance
    return out[:, :height, :width]


def distance_maps(mask: torch.Tensor, factor: int = DISTANCE_FACTOR, boxes: list[Box | None] | None = None) -> torch.Tensor:
    """(B, H, W) pupil mask -> float32 (B, 2, H, W) signed distance maps (see the module docstring). Only each
    pupil's bounding box is read at full resolution: outside it every pixel is background."""
    batch, height, width = mask.shape
    boxes = pupil_boxes(mask) if boxes is None else boxes
    # a coarse cell is pupil (background) if any of its pixels is; the frame is replicate-padded to whole cells
    h, w = -(-height // factor), -(-width // factor)
    coarse_pupil = torch.zeros((batch, h, w), dtype=torch.bool, device=mask.device)
    coarse_background = torch.ones((batch, h, w), dtype=torch.bool, device=mask.device)
    for b, box in enumerate(boxes):
        if box is None:
            continue
        y0, y1, x0, x1 = box[0] // factor, -(-box[1] // factor), box[2] // factor, -(-box[3] // factor)
        rows = torch.arange(y0 * factor, y1 * factor, device=mask.device).clamp_max_(height - 1)
        cols = torch.arange(x0 * factor, x1 * factor, device=mask.device).clamp_max_(width - 1)
        window = mask[b].index_select(0, rows).index_select(1, cols) > 0
        count = window.view(y1 - y0, factor, x1 - x0, factor).sum(dim=(1, 3), dtype=torch.int32)  # pupil pixels per cell
        coarse_pupil[b, y0:y1, x0:x1] = count > 0
        coarse_background[b, y0:y1, x0:x1] = count < factor * factor
    rows, cols = _windows(coarse_pupil, 1), _windows(coarse_pupil, 2)
    # one signed coarse field: distance to the pupil outside it, minus the distance to the background inside it,
    # already divided by the diagonal (k); images with an empty or full mask get k = 0: all-zero maps
    some = coarse_pupil.flatten(1).any(dim=1) & coarse_background.flatten(1).any(dim=1)
    k = some.float().div_(math.hypot(height - 1, width - 1)).view(-1, 1, 1)
    signed = (_distance_to(coarse_pupil, rows, float(factor)) - _distance_inside(coarse_background, rows, cols, float(factor))).mul_(k)
    if factor > 1:
        signed = F.interpolate(signed[:, None], scale_factor=factor, mode="bilinear", align_corners=False)[:, 0, :height, :width]
    # channel 1 (pupil): (1 - distance to the background (>= 1)) k inside, distance to the pupil (>= 1) k outside;
    # channel 0 = k - channel 1. Outside the pupil's box every pixel is background: max(signed, k) there, and the
    # box gets the per-pixel rule
    maps = torch.empty((batch, 2, height, width), device=mask.device)
    torch.maximum(signed, k, out=maps[:, 1])
    for b, box in enumerate(boxes):
        if box is None:
            continue
        y0, y1, x0, x1 = box
        region, kb = signed[b, y0:y1, x0:x1], k[b]
        maps[b, 1, y0:y1, x0:x1] = torch.where(mask[b, y0:y1, x0:x1] > 0, torch.minimum(region + kb, torch.zeros_like(kb)), torch.maximum(region, kb))
    torch.sub(k, maps[:, 1], out=maps[:, 0])
    return maps


def label_targets(label: torch.Tensor, factor: int = DISTANCE_FACTOR) -> dict[str, torch.Tensor]:
    """Everything the segmentation loss derives from a (B, H, W) pupil mask, on its device."""
    boxes = pupil_boxes(label)
    return {"spatial_weights": spatial_weights(label, boxes=boxes), "dist_map": distance_maps(label, factor, boxes)}


__all__ = ["DISTANCE_ERROR_BOUND_PX", "DISTANCE_FACTOR", "distance_maps", "label_targets", "pupil_boxes", "spatial_weights"]
