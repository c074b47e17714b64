"""The one preprocessing module: precompute, the runtime loader, evaluate and predict all call these functions.

Pure numpy/cv2, no project imports. Conventions:
- images are uint8 (H, W) grayscale; labels are OpenEDS uint8 (H, W) with 0 background, 1 sclera, 2 iris, 3 pupil;
- masks are uint8 (H, W) with pupil = 1;
- ellipses are in pixels (cx, cy, rx, ry, angle in degrees as cv2.fitEllipse reports it), and normalized by
  dividing x-quantities by W and y-quantities by H.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

HEIGHT, WIDTH = 400, 640  # the OpenEDS frame and the model input: the one place this size is written
PUPIL_CLASS = 3  # OpenEDS label value of the pupil
NUM_OPENEDS_CLASSES = 4
GAMMA = 0.8
CLAHE_CLIP_LIMIT = 1.5
CLAHE_TILE_GRID = (8, 8)
BOUNDARY_WEIGHT = 10.0  # spatial weight of pixels on the pupil boundary band (CE is weighted by 1 + this)
DIST_MAP_BITS = 16  # significant bits the dataset keeps of a distance (of float32's 24): relative error <= 2^-16


@dataclass(frozen=True)
class Ellipse:
    cx: float  # centre x, pixels
    cy: float  # centre y, pixels
    rx: float  # semi-axis along the ellipse's first axis (cv2 width / 2), pixels
    ry: float  # semi-axis along the second axis (cv2 height / 2), pixels
    angle: float  # rotation of the first axis, degrees in [0, 180)

    def normalized(self, height: int, width: int) -> tuple[float, float, float, float]:
        return self.cx / width, self.cy / height, self.rx / width, self.ry / height


def binarize(label: np.ndarray, pupil_class: int = PUPIL_CLASS) -> np.ndarray:
    """OpenEDS 4-class label -> uint8 mask with pupil = 1, everything else 0."""
    return (label == pupil_class).astype(np.uint8)


@lru_cache(maxsize=8)
def gamma_lut(gamma: float = GAMMA) -> np.ndarray:
    return np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)


def apply_gamma(image: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """Gamma correction through a 256-entry lookup table (gamma < 1 lifts the dark pupil/iris range)."""
    return cv2.LUT(_as_gray_uint8(image), gamma_lut(gamma))


def apply_clahe(image: np.ndarray, clip_limit: float = CLAHE_CLIP_LIMIT, tile_grid: tuple[int, int] = CLAHE_TILE_GRID) -> np.ndarray:
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid).apply(_as_gray_uint8(image))


def preprocess_image(image: np.ndarray) -> np.ndarray:
    """The image transform of the dataset: gamma 0.8 then CLAHE (clip 1.5, 8x8 tiles). uint8 in, uint8 out."""
    return apply_clahe(apply_gamma(image))


def to_model_input(image: np.ndarray) -> np.ndarray:
    """Preprocessed uint8 (H, W) -> float32 (1, 1, H, W) in [0, 1], the layout the models and ONNX files take."""
    return (image.astype(np.float32) / 255.0)[None, None]


def fit_ellipse(mask: np.ndarray) -> Ellipse | None:
    """Pupil ellipse of the largest connected region of `mask` (non-zero = pupil); None for an empty mask.

    cv2.fitEllipse on the largest external contour; fallbacks for regions it cannot fit (fewer than 5 contour
    points, or a degenerate/non-finite fit far from the region): second moments of the region, and for a
    single pixel a circle of radius 0.5.
    """
    largest = largest_contour(mask)
    return None if largest is None else fit_contour(largest)


def largest_contour(mask: np.ndarray) -> np.ndarray | None:
    """The largest external contour ((N, 1, 2) int32, every boundary pixel) of `mask`'s non-zero pixels; None if empty."""
    contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=lambda c: (cv2.contourArea(c), len(c))) if contours else None


def fit_contour(contour: np.ndarray) -> Ellipse:
    """fit_ellipse for one external contour: cv2.fitEllipse, or the moments of the region it encloses."""
    x, y, w, h = cv2.boundingRect(contour)  # the region is drawn and measured inside its bounding box only
    region = np.zeros((h, w), np.uint8)
    cv2.drawContours(region, [contour], -1, 1, thickness=cv2.FILLED, offset=(-x, -y))
    moment_fit = _moment_ellipse(region, x, y)
    if len(contour) >= 5:
        fitted = points_ellipse(contour)
        if well_posed(fitted) and _plausible(fitted, moment_fit, w, h):
            return fitted
    return moment_fit


def points_ellipse(points: np.ndarray) -> Ellipse:
    """cv2.fitEllipse of 5 or more points, as an Ellipse (semi-axes; angle in [0, 180))."""
    (cx, cy), (width, height), angle = cv2.fitEllipse(points)
    return Ellipse(float(cx), float(cy), float(width) / 2, float(height) / 2, float(angle) % 180.0)


def well_posed(fit: Ellipse) -> bool:
    """Finite, with a minor semi-axis of at least 0.5 px: a sub-pixel minor axis (a line, a 1-px sliver) makes cv2's
    fit numerically unstable."""
    return bool(np.isfinite([fit.cx, fit.cy, fit.rx, fit.ry]).all()) and min(fit.rx, fit.ry) >= 0.5


def _plausible(fit: Ellipse, moments: Ellipse, width: int, height: int) -> bool:
    """A well-posed contour fit is kept when it is no larger than the region's extent (its bounding box, width x
    height) and centred on it; degenerate fits (cv2 extrapolating a huge or offset ellipse from a few points) fall
    back to the moments."""
    extent = np.hypot(width, height)
    offset = np.hypot(fit.cx - moments.cx, fit.cy - moments.cy)
    return 2 * max(fit.rx, fit.ry) <= 1.5 * extent + 2 and offset <= 0.25 * max(moments.rx, moments.ry) + 1.0


def _moment_ellipse(region: np.ndarray, x0: int = 0, y0: int = 0) -> Ellipse:
    """The ellipse with the region's centroid and second moments; region pixels at (x0 + column, y0 + row)."""
    m = cv2.moments(region, binaryImage=True)
    cx, cy = m["m10"] / m["m00"] + x0, m["m01"] / m["m00"] + y0
    if m["m00"] == 1:
        return Ellipse(float(cx), float(cy), 0.5, 0.5, 0.0)
    # population moments + the pixel's own area (1/12 per axis)
    cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / m["m00"] + np.eye(2) / 12.0
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    major = eigenvectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0]))) % 180.0
    # A uniform ellipse has variance r^2 / 4 along each axis.
    return Ellipse(float(cx), float(cy), 2.0 * float(np.sqrt(eigenvalues[1])), 2.0 * float(np.sqrt(eigenvalues[0])), angle)


def pupil_box(pupil: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Rows and columns holding every pupil pixel of a boolean (H, W) mask, grown by `margin` and clipped to the
    frame; None without a pupil. Outside it every pixel is background, so the label targets are a fill there."""
    rows, cols = np.flatnonzero(pupil.any(axis=1)), np.flatnonzero(pupil.any(axis=0))
    if rows.size == 0:
        return None
    height, width = pupil.shape
    return (slice(max(0, rows[0] - margin), min(height, rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(width, cols[-1] + 1 + margin)))


def spatial_weights(mask: np.ndarray, boundary_weight: float = BOUNDARY_WEIGHT) -> np.ndarray:
    """float32 (H, W): boundary_weight on the pupil boundary band (3x3 morphological gradient), 0 elsewhere.
    The band lies within one pixel of the pupil: it is computed on the pupil's bounding box grown by two."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    weights = np.zeros(binary.shape, np.float32)
    box = pupil_box(binary > 0, 2)
    if box is not None:
        band = cv2.morphologyEx(binary[box], cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        np.multiply(band, np.float32(boundary_weight), out=weights[box], dtype=np.float32)
    return weights


def signed_distance(region: np.ndarray) -> np.ndarray:
    """Signed Euclidean distance to the region's boundary, normalized by the image diagonal (as in RITnet).

    >= 0 outside the region (distance to the nearest region pixel), <= 0 inside (minus the distance to the
    nearest outside pixel, less one, so the region's edge pixels are 0). All zeros for an empty or full region.
    """
    return distance_maps(region)[1]


def distance_maps(mask: np.ndarray) -> np.ndarray:
    """float32 (2, H, W): signed distance maps of the background (channel 0) and pupil (channel 1) classes.

    Two exact distance transforms serve both classes: the distance from a pupil pixel to the background is
    the pupil's inside distance and the background's outside distance, and vice versa. The inside one runs on the
    pupil's bounding box grown by one: its ring is background, and any background pixel beyond the ring is
    farther from a pupil pixel than a ring pixel on the way, so the values are those of the whole frame.
    """
    pupil = np.asarray(mask) > 0
    height, width = pupil.shape
    maps = np.zeros((2, height, width), np.float32)
    if pupil.any() and not pupil.all():
        inside = pupil.astype(np.uint8)
        box = pupil_box(pupil, 1)
        to_pupil = exact_distance(1 - inside)  # at background pixels (0 inside)
        to_background = exact_distance(inside[box])  # at pupil pixels of the box (0 outside)
        # channel 1: 1 - to_background inside, to_pupil outside; channel 0 = 1 - channel 1 (the two are never both > 0)
        np.add(to_pupil, inside, out=maps[1])
        maps[1][box] -= to_background
        np.subtract(1.0, maps[1], out=maps[0])
        maps *= np.float32(1.0 / np.hypot(height - 1, width - 1))
    return maps


def exact_distance(image: np.ndarray) -> np.ndarray:
    """float32 Euclidean distance of every non-zero pixel to the nearest zero pixel (cv2, DIST_MASK_PRECISE).

    OpenCV's own implementation, with Intel IPP's switched off for the call (the switch is per thread and restored):
    IPP's results depend on the image size and on how many threads share the work, so a forked precompute worker
    and the main process, or a box and the whole frame, disagreed in the last bits. OpenCV's are the same
    whatever the threading, on a box as on the whole frame, and as fast.
    """
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        return cv2.distanceTransform(np.ascontiguousarray(image), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    finally:
        cv2.ipp.setUseIPP(use_ipp)


def ellipse_columns(mask: np.ndarray) -> dict[str, np.float32]:
    """The dataset's ellipse columns for a binary mask: cx, cy, rx, ry normalized, angle in degrees (NaN if empty)."""
    height, width = mask.shape
    ellipse = fit_ellipse(mask)
    cx, cy, rx, ry = ellipse.normalized(height, width) if ellipse else (np.nan,) * 4
    angle = ellipse.angle if ellipse else np.nan
    return {"cx": np.float32(cx), "cy": np.float32(cy), "rx": np.float32(rx), "ry": np.float32(ry), "angle": np.float32(angle)}


def round_significand(values: np.ndarray, bits: int) -> np.ndarray:
    """float32 values rounded (half away from zero) to `bits` significant bits, in place: relative error <= 2^-bits.

    The dropped low bits are zero, which parquet's byte-stream split then compresses to almost nothing."""
    drop = 24 - bits  # float32 carries 24 significant bits
    raw = values.view(np.uint32)  # sign, exponent, significand: adding half a step rounds the magnitude
    raw += np.uint32(1 << (drop - 1))
    raw &= np.uint32((0xFFFFFFFF >> drop) << drop)
    return values


def label_targets(mask: np.ndarray) -> dict[str, np.ndarray | float]:
    """Everything derived from a binary pupil mask, as the dataset stores it: weights, distance maps (DIST_MAP_BITS
    significant bits: within 2^-16 of the exact ones, < 0.006 px at 400x640), normalized ellipse (NaN when empty)."""
    return {"spatial_weights": spatial_weights(mask), "dist_map": round_significand(distance_maps(mask), DIST_MAP_BITS),
            **ellipse_columns(mask)}


def preprocess_sample(image: np.ndarray, label: np.ndarray, maps: bool = True) -> dict[str, np.ndarray | float]:
    """Raw OpenEDS frame and 4-class label -> every column of the precomputed dataset except filename; maps=False
    leaves out the spatial weights and distance maps (what training derives on its device)."""
    mask = binarize(label)
    targets = label_targets(mask) if maps else ellipse_columns(mask)
    return {"image": preprocess_image(image), "label": mask, **targets, "preprocessed": True}


def frame_sample(image: np.ndarray, mask: np.ndarray, maps: bool = True) -> dict[str, np.ndarray | float]:
    """A frame of any size and its pupil mask (non-zero = pupil, the frame's size) -> the dataset's columns at the
    model input (HEIGHT x WIDTH), the way evaluate and predict see that frame: gamma + CLAHE at the frame's own size,
    then letterboxed (letterbox), the mask with it (letterbox_mask). A HEIGHT x WIDTH frame gives preprocess_sample's
    row for the same pupil."""
    image = _as_gray_uint8(image)
    if np.asarray(mask).shape != image.shape:
        raise ValueError(f"mask shape {np.asarray(mask).shape} does not match the image {image.shape}")
    boxed, _ = letterbox(preprocess_image(image))
    label = letterbox_mask(mask)
    targets = label_targets(label) if maps else ellipse_columns(label)
    return {"image": boxed, "label": label, **targets, "preprocessed": True}


def letterbox_mask(mask: np.ndarray, input_height: int = HEIGHT, input_width: int = WIDTH) -> np.ndarray:
    """A pupil mask (non-zero = pupil) fitted into the model input as letterbox fits its frame: the same scale and
    top-left placement, resized as coverage (linear) and cut at one half, no pupil in the padding. uint8, pupil = 1."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    scale, new_h, new_w = fitted_size(*binary.shape, input_height, input_width)
    if (new_h, new_w) != binary.shape:
        coverage = cv2.resize(binary.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        binary = (coverage > 0.5).astype(np.uint8)
    return cv2.copyMakeBorder(binary, 0, input_height - new_h, 0, input_width - new_w, cv2.BORDER_CONSTANT, value=0)


def _as_gray_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    return np.ascontiguousarray(image)


# ------------------------------------------------------------------------------------------- inference
@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the model input: scale, then padding at the right and bottom."""

    height: int  # original frame
    width: int
    scale: float
    input_height: int  # model input
    input_width: int


def fitted_size(height: int, width: int, input_height: int = HEIGHT, input_width: int = WIDTH) -> tuple[float, int, int]:
    """(scale, height, width) of a height x width frame resized, aspect kept, to fit the model input."""
    scale = min(input_height / height, input_width / width)
    return scale, min(input_height, max(1, round(height * scale))), min(input_width, max(1, round(width * scale)))


def letterbox(image: np.ndarray, input_height: int = HEIGHT, input_width: int = WIDTH) -> tuple[np.ndarray, Letterbox]:
    """Resizes (aspect kept) and pads a uint8 frame to the model input; edge pixels are replicated into the pad."""
    height, width = image.shape[:2]
    scale, new_h, new_w = fitted_size(height, width, input_height, input_width)
    resized = image if (new_h, new_w) == (height, width) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(resized, 0, input_height - new_h, 0, input_width - new_w, cv2.BORDER_REPLICATE)
    return padded, Letterbox(height, width, scale, input_height, input_width)


def unletterbox(plane: np.ndarray, box: Letterbox) -> np.ndarray:
    """Maps a model-resolution float plane (e.g. pupil probability) back onto the original frame."""
    _, new_h, new_w = fitted_size(box.height, box.width, box.input_height, box.input_width)
    crop = np.ascontiguousarray(plane[:new_h, :new_w])
    if (new_h, new_w) == (box.height, box.width):
        return crop
    return cv2.resize(crop, (box.width, box.height), interpolation=cv2.INTER_LINEAR)


def prepare_frame(frame: np.ndarray, input_height: int = HEIGHT, input_width: int = WIDTH, preprocessed: bool = False) -> tuple[np.ndarray, Letterbox]:
    """Any raw frame (gray or BGR uint8) -> model input float32 (1, 1, H, W) and its letterbox.

    The dataset's image transform (gamma + CLAHE) runs at the frame's own size, then the frame is letterboxed:
    the same code path for evaluate and predict as for precompute and training.
    """
    boxed, box = letterbox(frame_image(frame, preprocessed), input_height, input_width)
    return to_model_input(boxed), box


def frame_image(frame: np.ndarray, preprocessed: bool = False) -> np.ndarray:
    """Any raw frame (gray or BGR uint8) -> the gray uint8 frame the model sees, at the frame's own size: the
    dataset's image transform (gamma + CLAHE), unless `preprocessed` already."""
    image = _as_gray_uint8(frame)
    return image if preprocessed else preprocess_image(image)


@dataclass(frozen=True)
class ZoomWindow:
    """How zoom_window placed a frame in the model input: input pixel u = sx * (x + 0.5) - 0.5 - x0 (y alike)."""

    sx: float
    sy: float
    x0: float
    y0: float

    @property
    def matrix(self) -> np.ndarray:
        """The 2x3 affine map from frame pixels to model-input pixels."""
        return np.array([[self.sx, 0.0, 0.5 * self.sx - 0.5 - self.x0], [0.0, self.sy, 0.5 * self.sy - 0.5 - self.y0]])


def zoom_window(image: np.ndarray, centre: tuple[float, float], scale: float, input_height: int = HEIGHT,
                input_width: int = WIDTH) -> tuple[np.ndarray, ZoomWindow]:
    """The model input seen through a window on a (preprocessed, uint8) frame: the frame scaled by `scale` and placed
    so that `centre` (x, y in frame pixels) falls in the middle, moved the least that keeps padding out of the window
    where the scaled frame can fill it (a pupil at the frame's edge stays at the window's edge, as the frame shows it,
    not beside replicated stripes; a scaled frame smaller than the window lies wholly inside it), edge pixels
    replicated beyond it as letterbox does. Resampled as letterbox does (area when shrinking, linear when enlarging).
    Returns the window and its ZoomWindow (for unzoom)."""
    height, width = image.shape[:2]
    if scale < 1:  # shrink with area averaging as letterbox does, then shift
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = new_w / width, new_h / height
        x0 = round(_placed(sx * (centre[0] + 0.5) - input_width / 2, new_w, input_width))
        y0 = round(_placed(sy * (centre[1] + 0.5) - input_height / 2, new_h, input_height))
        box = ZoomWindow(sx, sy, float(x0), float(y0))
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
    else:
        box = ZoomWindow(scale, scale, _placed(scale * (centre[0] + 0.5) - input_width / 2, scale * width, input_width),
                         _placed(scale * (centre[1] + 0.5) - input_height / 2, scale * height, input_height))
        shift = box.matrix
    window = cv2.warpAffine(image, shift, (input_width, input_height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return window, box


def _placed(offset: float, extent: float, window: int) -> float:
    """A window's offset along one axis (scaled-frame pixels), moved the least from `offset` so that the window lies
    inside a scaled frame of `extent` pixels, or, when the window is the larger, the frame inside the window."""
    low, high = sorted((0.0, extent - window))
    return min(max(offset, low), high)


def unzoom(plane: np.ndarray, box: ZoomWindow, shape: tuple[int, ...]) -> np.ndarray:
    """Maps a model-input float plane seen through zoom_window back onto the frame (of `shape`); 0 outside the window."""
    return cv2.warpAffine(np.asarray(plane, np.float32), box.matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def pupil_probability(logits: np.ndarray) -> np.ndarray:
    """(B, 2, H, W) logits -> (B, H, W) pupil probability (softmax of the two classes)."""
    return 1.0 / (1.0 + np.exp(np.clip(logits[:, 0] - logits[:, 1], -60, 60)))
