"""The one inference path: load a model (ONNX file, training checkpoint, state_dict or the shipped "pretrained"),
prepare a frame (training.preprocess: gamma + CLAHE at the frame's size, letterbox to the model input), run it and
map the prediction back onto the frame. evaluate, predict, quantize and the benchmarks all go through here.

    predictor = load_predictor("best_efficientvit_model.onnx")
    probability = predict_frame(predictor, frame)   # (H, W) pupil probability on the frame's own grid
    mask = pupil_mask(probability)                  # 1 = pupil: the ellipse fitted to the strongest region

    predictor = load_predictor("pretrained", flips=True)   # test-time augmentation: the mean over the frame's 4 flips
    predictor = load_predictor("pretrained", zoom=ZOOM_DIAMETERS)  # a second look at the pupil found, at the scales the model knows
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from training import preprocess
from training.preprocess import HEIGHT, WIDTH


@dataclass
class Predictor:
    """A loaded model: run(batch float32 (B, 1, H, W)) -> logits (B, 2, H, W); onnx_bytes for latency; views: how many
    model inputs each run of one input costs (4 when flip-averaged); zoom: the pupil diameters of predict_frame's
    second look (zoomed), none for one look."""

    run: Callable[[np.ndarray], np.ndarray]
    input_height: int
    input_width: int
    onnx_bytes: bytes
    source: str
    views: int = 1
    zoom: tuple[float, ...] = ()

    @property
    def looks(self) -> int:
        """How many times predict_frame runs the model on one frame: the first look and one per zoom diameter (each of
        `views` inputs)."""
        return 1 + len(self.zoom)


class ModelLoadError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


def load_predictor(path: str | os.PathLike, threads: int = 0, flips: bool = False, zoom: tuple[float, ...] = ()) -> Predictor:
    """An .onnx file (ONNX Runtime), a .pt checkpoint / state_dict (rebuilt, exported to ONNX in memory), or
    "pretrained": the weights shipped in training/weights/. `flips`: flip_averaged (test-time augmentation);
    `zoom`: zoomed (a second look at the pupil at these diameters)."""
    from training.export import ort_session
    from training.models import pretrained_onnx_path

    path = pretrained_onnx_path() if str(path) == "pretrained" else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        data = path.read_bytes()
    elif path.suffix in {".pt", ".pth"}:
        try:
            data = _onnx_from_checkpoint(path)
        except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as error:  # torch.load / load_state_dict failures
            raise ModelLoadError(f"{path}: not a loadable checkpoint of a known model ({str(error).splitlines()[0]})") from error
    else:
        raise ModelLoadError(f"{path}: expected an .onnx model or a .pt checkpoint")
    try:
        session = ort_session(data, threads)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ModelLoadError(f"{path}: not a valid ONNX model ({str(error).splitlines()[0][:200]})") from error
    shape = session.get_inputs()[0].shape
    height, width = (shape[2], shape[3]) if all(isinstance(s, int) for s in shape[2:]) else (HEIGHT, WIDTH)
    name = session.get_inputs()[0].name
    predictor = Predictor(lambda batch: session.run(None, {name: batch})[0], height, width, data, str(path))
    predictor = flip_averaged(predictor) if flips else predictor
    return zoomed(predictor, zoom) if zoom else predictor


FLIPS = ((), (3,), (2,), (2, 3))  # axes of a (B, 1, H, W) batch: as is, mirrored left-right, upside down, both


def flip_averaged(predictor: Predictor) -> Predictor:
    """Test-time augmentation: the model sees each input and its three flips as one batch (4x the work), each pupil
    probability is flipped back and the four are averaged. Returns logits (0, log p/(1-p)) whose softmax is that mean,
    so everything downstream (pupil_probability, pupil_mask) is unchanged. Measured on both real dev sets (README,
    "Score a model on your own frames"): higher pupil IoU on both in each of seven models."""
    if predictor.views != 1:
        raise ValueError(f"{predictor.source}: already flip-averaged")

    def run(batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        views = np.ascontiguousarray(np.concatenate([np.flip(batch, axes) for axes in FLIPS]))
        probability = preprocess.pupil_probability(predictor.run(views)).astype(np.float64)  # (4B, H, W)
        mean = sum(np.flip(probability[k * count:(k + 1) * count], tuple(axis - 1 for axis in axes)) for k, axes in enumerate(FLIPS)) / len(FLIPS)
        mean = np.clip(mean, 1e-12, 1 - 1e-12)
        logits = np.zeros((count, 2, *mean.shape[1:]), np.float32)
        logits[:, 1] = np.log(mean) - np.log1p(-mean)
        return logits

    return dataclasses.replace(predictor, run=run, views=len(FLIPS))


# The pupil diameters (px of the model input) of zoomed's second look: the middle of the generator's pupil sizes (the
# synthetic test split's pupils: median 52 px, quartiles 25 and 93). Measured on both real dev sets and synthetic test
# (README, "Score a model on your own frames").
ZOOM_DIAMETERS = (60.0, 100.0)
MAX_ZOOM = 4.0  # the second look magnifies the frame at most 4x more than the letterbox does


def zoomed(predictor: Predictor, diameters: tuple[float, ...] = ZOOM_DIAMETERS) -> Predictor:
    """Test-time scale: predict_frame looks at the frame once (letterboxed), then again, centred on the pupil found
    (as far as the frame reaches: preprocess.zoom_window), at each scale that makes that pupil `diameters` px across in
    the model input (never smaller than the letterbox makes it, at most MAX_ZOOM times larger), and returns the mean
    of the second looks' probabilities (0 outside their windows). A pupil the letterbox makes small (a wide view) or
    large is seen at the sizes the model was trained on, and each edge is drawn at several resolutions. No pupil in the
    first look: the first look stands."""
    diameters = tuple(float(d) for d in diameters)
    if not diameters or min(diameters) <= 0:
        raise ValueError(f"zoom diameters must be positive numbers, not {diameters!r}")
    if predictor.zoom:
        raise ValueError(f"{predictor.source}: already zoomed")
    return dataclasses.replace(predictor, zoom=diameters)


def model_from_checkpoint(path: str | os.PathLike):
    """The torch model of a .pt training checkpoint (its inference weights: the EMA's when it kept one) or bare
    state_dict (its variant recognised by its shapes)."""
    import torch

    from training.checkpoint import inference_weights
    from training.models import build_model

    state = torch.load(path, map_location="cpu", weights_only=True)
    weights = inference_weights(state) if "model" in state else state
    variant = state.get("config", {}).get("model_variant", "tiny") if "model" in state else _guess_variant(weights)
    model = build_model(variant)
    model.load_state_dict(weights)
    return model


def _onnx_from_checkpoint(path: Path) -> bytes:
    from training.export import export_bytes, strip_debug_metadata

    return strip_debug_metadata(export_bytes(model_from_checkpoint(path).eval().fuse()))


def _guess_variant(weights: dict) -> str:
    from training.models import VARIANTS, build_model

    for name in VARIANTS:
        if {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()} == {k: tuple(v.shape) for k, v in weights.items()}:
            return name
    raise ValueError("state_dict matches no known model variant; pass a checkpoint with its config")


def predict_frame(predictor: Predictor, frame: np.ndarray, preprocessed: bool = False) -> np.ndarray:
    """Pupil probability (H, W) on the frame's own grid (zoomed predictors: the mean of the second looks)."""
    image = preprocess.frame_image(frame, preprocessed)  # kept for the zoomed looks
    batch, box = preprocess.prepare_frame(image, predictor.input_height, predictor.input_width, preprocessed=True)
    probability = preprocess.unletterbox(preprocess.pupil_probability(predictor.run(batch))[0], box)
    if not predictor.zoom:
        return probability
    found = pupil_mask(probability)
    area = int(np.count_nonzero(found))
    if area == 0:
        return probability
    ys, xs = np.nonzero(found)
    centre, diameter = (float(xs.mean()), float(ys.mean())), 2.0 * math.sqrt(area / math.pi)
    windows = [preprocess.zoom_window(image, centre, max(box.scale, min(MAX_ZOOM * box.scale, target / diameter)),
                                      predictor.input_height, predictor.input_width) for target in predictor.zoom]
    batch = np.concatenate([preprocess.to_model_input(window) for window, _ in windows])
    looks = preprocess.pupil_probability(predictor.run(batch))
    return sum(preprocess.unzoom(look, transform, image.shape) for look, (_, transform) in zip(looks, windows)) / len(windows)


POSTPROCESS = ("ellipse", "region", "hull", "none")
# The default mask of evaluate and predict, chosen on both real dev sets (README, "Score a model on your own frames"):
# the ellipse fitted to the one region raised pupil IoU on both sets in each of four models (MEYE +0.005 to +0.009,
# face-camera val +0.002 to +0.006 over the region itself); the hull raised the face-camera set (+0.014 on average
# over 7 models) but lowered MEYE in every one (-0.018): a wash on the pair. The region is the one with the most pupil
# probability, not the one with the most pixels: over five models MEYE +0.000 to +0.013, the face-camera set +0.000 to
# +0.016, synthetic test +0.001 (never lower). The ellipse most of the contour lies on (pupil_ellipse) over the plain
# fit, in three models: MEYE +0.001 to +0.003, face-camera +0.005 to +0.016, synthetic test +0.000 to +0.001.
DEFAULT_POSTPROCESS = "ellipse"


def pupil_mask(probability: np.ndarray, postprocess: str = DEFAULT_POSTPROCESS, threshold: float = 0.5) -> np.ndarray:
    """Binary pupil mask (uint8, 1 = pupil) from a probability plane.

    "none": every pixel above `threshold`. "region": only the 8-connected region above `threshold` with the most
    pupil probability (its probabilities summed: one pupil per frame, so stray blobs elsewhere go, and a wide region of
    doubtful iris loses to a smaller one of confident pupil). "ellipse" (the default of evaluate and predict): that region's ellipse
    (pupil_ellipse: the ellipse most of its contour lies on), filled; a pupil is an ellipse, so a glint's notch is put
    back, a ragged edge smoothed without the hull's outward bias, and a pupil whose top a lid or lashes cut off is
    completed. "hull": that region's convex hull, filled (README, "Score a model on your own frames", has what each does
    on real frames).
    """
    if postprocess not in POSTPROCESS:
        raise ValueError(f"postprocess must be one of {', '.join(POSTPROCESS)}, not {postprocess!r}")
    mask = (probability > threshold).astype(np.uint8)
    if postprocess == "none" or not mask.any():
        return mask
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count > 2:
        mass = np.bincount(labels.ravel(), weights=probability.ravel(), minlength=count)[1:]  # summed in float64
        mask = (labels == 1 + int(np.argmax(mass))).astype(np.uint8)
    if postprocess == "hull":
        cv2.fillConvexPoly(mask, cv2.convexHull(cv2.findNonZero(mask)), 1)
    elif postprocess == "ellipse":
        fit = pupil_ellipse(mask)
        mask = np.zeros_like(mask)
        cv2.ellipse(mask, ((fit.cx, fit.cy), (2 * fit.rx, 2 * fit.ry), fit.angle), 1, thickness=cv2.FILLED)
    return mask


# pupil_ellipse: a contour point lies on an ellipse within ARC_TOLERANCE of its mean radius (at least 1 px); the plain
# fit stands when ARC_GATE of the points lie on it; arcs of ARC_SHARES of the contour are tried from ARC_STARTS points;
# an arc's ellipse may leave ARC_OUTSIDE of the points outside it and grow the plain fit's area ARC_GROWTH times at most.
ARC_TOLERANCE, ARC_GATE, ARC_SHARES, ARC_STARTS, ARC_OUTSIDE, ARC_GROWTH = 0.06, 0.9, (0.5, 0.6, 0.7, 0.8, 0.9), 16, 0.03, 1.3


def pupil_ellipse(mask: np.ndarray) -> preprocess.Ellipse | None:
    """The pupil ellipse of a predicted region (the largest of `mask`): the ellipse most of its contour lies on.

    training.preprocess.fit_ellipse fits every contour point, so where a lid, lashes or a glint cut a stretch off the
    pupil, that stretch pulls the ellipse in. Here, when fewer than ARC_GATE of the points lie on that fit, ellipses
    through arcs of the contour (half of it to nine tenths, from 16 starting points) are tried, and the one that the
    most points lie on, with all but ARC_OUTSIDE of them inside it and no more than ARC_GROWTH times the plain fit's
    area, is refitted to the points on it. The cut stretch lies inside that ellipse: the pupil is completed, as
    annotators and classical detectors draw it. Measured on both real dev sets (README, "Score a model on your own
    frames"); the same ellipse as fit_ellipse on a region that is already one."""
    contour = preprocess.largest_contour(mask)
    if contour is None:
        return None
    plain = preprocess.fit_contour(contour)  # = preprocess.fit_ellipse(mask)
    points = contour[:, 0].astype(np.float32)
    if len(points) < 12 or min(plain.rx, plain.ry) < 1:
        return plain

    def on_ellipse(fit: preprocess.Ellipse) -> tuple[np.ndarray, float]:
        """(which points lie on it, the share lying outside it)"""
        cos_a, sin_a = math.cos(math.radians(fit.angle)), math.sin(math.radians(fit.angle))
        dx, dy = points[:, 0] - fit.cx, points[:, 1] - fit.cy
        radius = 0.5 * (fit.rx + fit.ry)
        off = (np.hypot((dx * cos_a + dy * sin_a) / fit.rx, (dy * cos_a - dx * sin_a) / fit.ry) - 1.0) * radius  # ~px
        tolerance = max(1.0, ARC_TOLERANCE * radius)
        return np.abs(off) < tolerance, float(np.mean(off > tolerance))

    def fitted(subset: np.ndarray) -> preprocess.Ellipse | None:
        try:
            fit = preprocess.points_ellipse(subset)
        except cv2.error:  # points cv2 cannot fit (a straight run): that arc gives no ellipse
            return None
        return fit if preprocess.well_posed(fit) and fit.rx * fit.ry <= ARC_GROWTH * plain.rx * plain.ry else None

    on_plain = int(on_ellipse(plain)[0].sum())
    if on_plain >= ARC_GATE * len(points):
        return plain
    best, best_on, best_points = plain, on_plain, None
    for share in ARC_SHARES:
        length = int(round(share * len(points)))
        for start in range(ARC_STARTS):
            arc = fitted(points[(start * len(points) // ARC_STARTS + np.arange(length)) % len(points)])
            if arc is None:
                continue
            on, outside = on_ellipse(arc)
            count = int(on.sum())
            if outside <= ARC_OUTSIDE and count > best_on:
                best, best_on, best_points = arc, count, on
    if best_points is None or best_on < 6:
        return best
    return fitted(points[best_points]) or best


def add_postprocess_option(parser) -> None:
    """The `--postprocess` (pupil_mask), `--flips` (flip_averaged) and `--zoom` / `--no-zoom` (zoomed) flags of evaluate
    and predict (an argparse parser)."""
    parser.add_argument("--postprocess", choices=POSTPROCESS, default=DEFAULT_POSTPROCESS,
                        help="predicted mask: the ellipse fitted to the region above 0.5 with the most pupil probability (default), that region, its convex hull, or every pixel above 0.5")
    parser.add_argument("--flips", action="store_true",
                        help="test-time augmentation: average the pupil probability over the frame and its 3 flips (4x the model's work; more accurate on real frames)")
    parser.add_argument("--zoom", type=float, nargs="+", default=list(ZOOM_DIAMETERS), metavar="PX",
                        help=f"second looks centred on the pupil the first look found, zoomed so that it is PX across in the model input; their mean "
                             f"is the prediction (default: {' '.join(f'{d:g}' for d in ZOOM_DIAMETERS)}; 3 looks a frame)")
    parser.add_argument("--no-zoom", dest="zoom", action="store_const", const=[],
                        help="one look: the letterboxed frame only (what the exported ONNX model does on its own; 1/3 of the work)")


def latency_ms(onnx_bytes: bytes, threads: int, height: int = HEIGHT, width: int = WIDTH, repeats: int = 30, frame: np.ndarray | None = None) -> float:
    """Median ONNX Runtime latency. Pass a real frame (1, 1, H, W): a trained model's speed depends on its input
    (uniform noise made the trained base model 2x slower than real frames: 13.3 vs 6.3 ms)."""
    from training.export import ort_session

    session = ort_session(onnx_bytes, threads)
    name = session.get_inputs()[0].name
    if frame is None:
        frame = np.random.default_rng(0).random((1, 1, height, width), dtype=np.float32)
    for _ in range(3):
        session.run(None, {name: frame})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: frame})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
