"""Synthetic near-infrared eye frames with pupil labels, written in the exact layout of the Kaggle OpenEDS download.

    python -m training.synthetic --output-dir D --num-images N --seed S [--workers W] [--families openeds,face] [--closed-share P]

writes D/{train,validation,test}/images/*.png (640x400, 8-bit grayscale) and D/{...}/labels/*.npy (uint8
400x640: 0 background, 1 sclera, 2 iris, 3 pupil), so that `precompute.py --skip-download --output-dir D`
processes it like a real download. File names are `S<subject>_<frame>`: splits are by subject (each subject
appears in one split), as in OpenEDS. Deterministic per (seed, frame index, subject) whatever the workers.

Domain randomization: a model trained on these frames must learn what a pupil is (a dark, round, smooth-edged
blob inside an iris, often with a glint), not "the darkest region" nor one camera's look. Each subject is seen
through one camera of a *family* (framing), and every frame draws its photometry, distractors and optics:

| family (share) | framing | iris radius | pupil across |
|---|---|---|---|
| `openeds` (0.30) | head-mounted VR camera, eye centred, calibrated to shared/reference/openeds-frame-stats.md | 80-125 px | 20-110 px |
| `closeup` (0.15) | the eye fills the frame, often cut by the frame edge | 130-230 px | 50-200 px |
| `offaxis` (0.30) | near-eye camera below or beside the eye: eye anywhere in the frame, skin around it | 30-80 px | 14-70 px |
| `face` (0.25) | face/remote camera: eye small and off-centre, eyebrow above | 12-30 px | 8-22 px |

Every family: landscape or portrait sensors (portrait 3:4, square, 4:3 content letterboxed into 640x400 like
`training.evaluate` does: top-left, padding replicated or constant), eyes cut by the frame edge (~10%), soft
upscaled frames from low-resolution sensors (x1.5-4, ~25%).

| appearance | range |
|---|---|
| pupil level | 8-140 gray (mostly dark; openeds 30-38) |
| iris above pupil | 3-120 gray levels (log-uniform); smooth (30%) or radially textured; darker limbal ring |
| sclera | from 15 below the iris to 80 above it; skin 25-230 (darker than the iris up to washed out) |
| glints | 0-12 in a ring around the cornea, radius 0.5-6% of the iris, some on the pupil edge or inside it (half of those with a radius of 10-40% of the pupil radius); a large saturated blob (15%) inside the pupil or on its rim; the pupil label covers them |
| eyeglasses (15%) | 1-3 large soft reflections (opacity 0.1-0.5), a lens rim arc |
| dark distractors | lashes (0-120 strands, clumped, darker than the pupil possible), eyeliner/mascara (25%), eyebrow (face 70%, offaxis 30%), shadowed eye corners (40%), skin folds (30%), round dark blobs of pupil size outside the eye (30%) |
| washed out (35%, not openeds) | black level lifted 20-130 gray, contrast compressed to match (ambient light, flare): pupil mid-gray, skin bright |
| optics and sensor | defocus blur sigma 0.3-3.5 px, motion blur (15%), Gaussian noise sigma 0.5-12, shot noise, JPEG quality 15-90 (30%), vignetting (50%), Fresnel rings (openeds 80%, others 10%), gain 0.6-1.5 and offset |
| eye state | gaze +-0.8 rad (pupil and iris foreshortened), eye roll +-15 deg, 4% closed (no pupil), 8% nearly closed |

`--closed-share P` (default 0) shuts the lids of a further share P of the training split's frames, chosen from a
stream of their own ([seed, 5, index]): such a frame is drawn with the eye closed (no pupil; the same subject and
camera, its other draws following from there); every other frame, and the validation and test splits, are unchanged.
Training data with frames without a pupil teaches a model not to find one in a blink (precompute keeps them with
`--keep-empty train`; `training.pretrain --closed-share`).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.preprocess import HEIGHT, WIDTH  # the output frame

SPLITS = (("train", 0.7), ("validation", 0.15), ("test", 0.15))
FRAMES_PER_SUBJECT = 8  # many people, few frames each: diversity over repetition
FAMILIES = {"openeds": 0.30, "closeup": 0.15, "offaxis": 0.30, "face": 0.25}  # share of subjects
IRIS_RADIUS = {"openeds": (80, 125), "closeup": (130, 230), "offaxis": (30, 80), "face": (12, 30)}  # px in the 640x400 frame
CONTENT_SHAPES = ((HEIGHT, WIDTH), (HEIGHT, 300), (HEIGHT, HEIGHT), (HEIGHT, 533), (360, WIDTH))  # landscape, portrait 3:4, square, 4:3, 16:9
VEIL_P, VEIL_LIFT = 0.35, (20.0, 130.0)  # share of non-OpenEDS frames whose black level is lifted, and by how much (gray)
# Drawn from a second stream per frame ([seed, 4, index]), so that the first stream and every frame without them stay as
# they were: a darker pupillary zone of the iris, and glints just outside the pupil's rim (not pupil in the label).
PUPILLARY_ZONE_P = 0.5  # share of non-OpenEDS frames whose iris darkens toward the pupil
PUPILLARY_ZONE_DEPTH = (0.15, 0.6)  # darkening at the pupil's edge, as a share of the iris-pupil contrast
PUPILLARY_ZONE_WIDTH = (0.1, 0.5)  # 1/e width, as a share of the iris ring (iris radius - pupil radius)
RIM_GLINT_P = 0.35  # share of non-OpenEDS frames with 1-2 glints just outside the pupil's rim
CLOSED_P = 0.04  # share of frames drawn with the lids shut (the blink draw below it); --closed-share adds more
CLOSED_STREAM = 5  # [seed, 5, index] picks the frames that --closed-share shuts
SUBPIXEL = 4  # fixed-point bits for cv2 drawing
ONE = 1 << SUBPIXEL


@dataclass(frozen=True)
class Subject:
    """What stays the same for one person in front of one camera."""

    family: str
    content_shape: tuple[int, int]  # (h, w) of the camera frame inside the 400x640 output (letterboxed top-left)
    pad_mode: str  # replicate | black | gray
    lowres: float  # sensor downscale factor (1: sharp)
    iris_radius: float  # px
    eye_width: float  # half-width of the palpebral opening / iris radius
    lid_open: float  # half-height of the open eye / iris radius
    skin: float
    pupil_gray: float
    iris_delta: float  # iris level above the pupil
    iris_texture: float  # 0: smooth
    sclera_delta: float  # sclera level above the iris
    lash_density: float
    eyeliner: bool
    eyebrow: bool
    glasses: bool


def _family(seed: int, subject: int) -> str:
    u = np.random.default_rng([seed, 3, subject]).random()
    for name, share in FAMILIES.items():
        u -= share
        if u < 0:
            return name
    return name


@functools.lru_cache(maxsize=1024)
def subject_traits(seed: int, subject: int, family: str | None = None) -> Subject:
    family = family or _family(seed, subject)
    rng = np.random.default_rng([seed, 1, subject])
    openeds = family == "openeds"
    if openeds:
        shape, pad_mode, lowres = (HEIGHT, WIDTH), "replicate", 1.0
    else:
        shape = CONTENT_SHAPES[int(rng.choice(len(CONTENT_SHAPES), p=[0.4, 0.3, 0.1, 0.1, 0.1]))]
        pad_mode = str(rng.choice(["replicate", "black", "gray"], p=[0.6, 0.2, 0.2]))
        lowres = float(rng.uniform(1.5, 4.0)) if rng.random() < 0.25 else 1.0
    low, high = IRIS_RADIUS[family]
    radius = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if openeds:  # the reference: pupil ~34 (std 3), iris 10-32 above, sclera barely brighter, skin 70-105
        pupil, iris_delta, texture = rng.normal(33.5, 1.8), rng.uniform(10, 32), rng.uniform(1.0, 3.0) if rng.random() < 0.35 else rng.uniform(4.0, 10.0)
        sclera_delta, skin = rng.uniform(4, 16), rng.uniform(70, 105)
    else:
        pupil = 8 + 132 * rng.beta(1.3, 2.6)  # mostly dark, up to mid-gray
        iris_delta = math.exp(rng.uniform(math.log(3), math.log(120)))
        texture = 0.0 if rng.random() < 0.3 else rng.uniform(0.05, 0.4) * iris_delta + rng.uniform(0, 4)
        sclera_delta, skin = rng.uniform(-15, 80), rng.uniform(25, 230)
    return Subject(
        family=family, content_shape=shape, pad_mode=pad_mode, lowres=lowres, iris_radius=radius,
        eye_width=rng.uniform(1.9, 2.4), lid_open=rng.uniform(0.55, 0.85), skin=float(skin), pupil_gray=float(pupil),
        iris_delta=float(iris_delta), iris_texture=float(texture), sclera_delta=float(sclera_delta),
        lash_density=float(rng.uniform(0.2, 1.0) if openeds else rng.uniform(0.0, 1.0)),
        eyeliner=bool(rng.random() < (0.05 if openeds else 0.25)), eyebrow=bool(rng.random() < {"face": 0.7, "offaxis": 0.3}.get(family, 0.0)),
        glasses=bool(rng.random() < (0.0 if openeds else 0.15)),
    )


# ----------------------------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy.setflags(write=False), xx.setflags(write=False)
    return yy, xx


def _smooth_field(rng: np.random.Generator, grid: tuple[int, int], amplitude: float, shape: tuple[int, int], cubic: bool = True) -> np.ndarray:
    coarse = rng.normal(0.0, amplitude, grid).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * ONE).astype(np.int32)


def _soft(shape: tuple[int, int], draw, sigma: float, factor: int = 4, full: tuple[int, int] | None = None) -> np.ndarray:
    """A float layer drawn at 1/factor resolution, blurred and upscaled: wide soft shapes at low cost. With
    `full` (the frame's shape), `shape` is already the small layer's shape and it is returned unscaled."""
    small = np.zeros(shape if full else (max(1, shape[0] // factor), max(1, shape[1] // factor)), np.float32)
    draw(small, 1.0 / factor)
    if sigma > 0:
        small = cv2.GaussianBlur(small, (0, 0), max(0.3, sigma / factor))
    return small if full else cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _ellipse(canvas, center, axes, angle, value, thickness=-1, line=cv2.LINE_AA):
    cv2.ellipse(canvas, (int(round(center[0] * ONE)), int(round(center[1] * ONE))), (max(0, int(round(axes[0] * ONE))), max(0, int(round(axes[1] * ONE)))),
                float(angle), 0, 360, value, thickness, line, SUBPIXEL)


def _draw_strands(canvas: np.ndarray, strands: np.ndarray, rng: np.random.Generator) -> None:
    """Anti-aliased polylines (n, points, 2) in a few intensity/thickness groups (one cv2 call per group)."""
    groups = rng.integers(0, 6, len(strands))
    for group in range(6):
        chosen = strands[groups == group]
        if len(chosen):
            cv2.polylines(canvas, list(_fixed(chosen)), False, 0.5 + 0.1 * (group % 3), 1 + group // 3, cv2.LINE_AA, SUBPIXEL)


def _blend(image: np.ndarray, alpha: np.ndarray, level) -> np.ndarray:
    return image + alpha * (level - image)


def _blend_sparse(image: np.ndarray, alpha: np.ndarray, level: float) -> np.ndarray:
    """_blend in place, limited to the bounding box of a mostly empty alpha layer (lashes, glints)."""
    rows, cols = np.flatnonzero(alpha.max(axis=1) > 1e-4), np.flatnonzero(alpha.max(axis=0) > 1e-4)
    if rows.size:
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        image[box] = _blend(image[box], alpha[box], level)
    return image


# ----------------------------------------------------------------------------------------------- render
# A frame is drawn in stages, each a function of the subject's traits and the frame's random stream (drawn in this
# order): geometry and label, photometry (gray levels, skin, the eye), distractors, optics, sensor. A family's ranges
# sit in the stage they shape.
@dataclass
class Eye:
    """One frame's eye geometry in content pixels (the frame before letterboxing)."""

    height: int
    width: int
    centre: tuple[float, float]  # eye (palpebral opening) centre
    roll: float  # radians
    gaze: list[float]  # horizontal, vertical (radians-like, +-0.8)
    r_iris: float
    half_width: float  # of the opening
    lid_open: float  # half-height of the open eye
    openness: float  # 0: closed
    us: np.ndarray  # (33,) lid sample positions, -1..1
    inside: np.ndarray  # 1 - us^2, clipped
    canthus: np.ndarray  # (33,) corner height offsets
    upper_v: np.ndarray  # lid curves in eye coordinates (v down)
    lower_v: np.ndarray
    upper: np.ndarray  # (33, 2) x, y in content pixels
    lower: np.ndarray
    polygon: np.ndarray  # the opening's outline
    iris: tuple[float, float]  # centre
    angle: float  # degrees: the foreshortening axis of iris and pupil
    pupil_radius: float
    pupil: tuple[float, float]  # centre
    iris_axes: tuple[float, float]
    pupil_axes: tuple[float, float]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1: the opening's bounding box (clipped)

    def to_frame(self, u, v):
        """Eye frame (u right, v down) -> content pixels."""
        cos_r, sin_r = math.cos(self.roll), math.sin(self.roll)
        return self.centre[0] + u * cos_r - v * sin_r, self.centre[1] + u * sin_r + v * cos_r

    @property
    def is_open(self) -> bool:
        x0, y0, x1, y1 = self.box
        return self.openness > 0 and x1 > x0 and y1 > y0


@dataclass(frozen=True)
class Levels:
    """One frame's gray levels before optics and sensor."""

    pupil: float
    iris: float
    sclera: float
    skin: float


def render_frame(seed: int, index: int, subject: int, family: str | None = None, closed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label) pair, both uint8 HEIGHT x WIDTH; a pure function of (seed, index, subject[, family, closed]).
    closed=True draws the frame with the lids shut (an empty label; the same subject and camera)."""
    traits = subject_traits(seed, subject, family)
    rng = np.random.default_rng([seed, 2, index])
    extra = np.random.default_rng([seed, 4, index])  # appearance added later (PUPILLARY_ZONE_P, RIM_GLINT_P)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # cv2.randn (sensor and pupil noise) is seeded per frame too
    eye = draw_geometry(traits, rng, closed)
    label = draw_label(eye)
    levels = draw_levels(traits, rng)
    image = paint_skin(eye, levels, traits, rng)
    image = paint_eye(image, eye, levels, traits, rng, extra)
    image, shading = add_distractors(image, eye, levels, traits, rng)
    image = apply_optics(image, shading, eye, traits, rng, extra)
    image = apply_sensor(image, traits, rng)
    return _letterbox(image, label, traits, rng)


def draw_geometry(traits: Subject, rng: np.random.Generator, closed: bool = False) -> Eye:
    """Where the eye is, how open, where it looks: lids, iris and pupil ellipses (gaze foreshortens both). closed=True
    shuts the lids (the draw that decides how open they are falls in the closed range; the stream is not shifted)."""
    h, w = traits.content_shape
    openeds = traits.family == "openeds"
    r_iris = traits.iris_radius * rng.uniform(0.95, 1.05)
    half_width, lid_open = traits.eye_width * r_iris, traits.lid_open * r_iris
    if traits.family in ("openeds", "closeup"):
        eye_x, eye_y = w / 2 + rng.normal(0, 30 if openeds else 0.12 * w), h / 2 + rng.normal(0, 20 if openeds else 0.1 * h)
    else:
        eye_x, eye_y = rng.uniform(0.12, 0.88) * w, rng.uniform(0.12, 0.88) * h
    if not openeds and rng.random() < 0.1:  # cut by the frame edge
        side = int(rng.integers(4))
        if side == 0:
            eye_x = rng.uniform(-0.6, 0.1) * half_width
        elif side == 1:
            eye_x = w + rng.uniform(-0.1, 0.6) * half_width
        elif side == 2:
            eye_y = rng.uniform(-0.8, 0.2) * lid_open
        else:
            eye_y = h + rng.uniform(-0.2, 0.8) * lid_open
    roll = math.radians(rng.normal(0, 3 if openeds else 7))
    cos_r, sin_r = math.cos(roll), math.sin(roll)
    gaze = [float(g) for g in rng.normal(0, 0.35, 2).clip(-0.8, 0.8)]

    def to_frame(u, v):
        return eye_x + u * cos_r - v * sin_r, eye_y + u * sin_r + v * cos_r

    blink = rng.random() * (CLOSED_P if closed else 1.0)
    openness = 0.0 if blink < CLOSED_P else (rng.uniform(0.08, 0.45) if blink < 0.12 else rng.uniform(0.75, 1.1))
    lid_shift = gaze[1] * lid_open * 0.35
    us = np.linspace(-1.0, 1.0, 33)
    inside = np.clip(1 - us * us, 0, None)
    canthus = rng.normal(0, 0.08) * lid_open * us  # inner and outer corner at different heights
    upper_v = lid_shift - lid_open * max(openness, 0.02) * 1.15 * inside ** 0.8 + canthus + rng.normal(0, 0.03 * lid_open)
    lower_v = lid_shift + lid_open * max(openness, 0.02) * 0.85 * inside ** 0.9 + canthus + rng.normal(0, 0.03 * lid_open)
    upper = np.stack(to_frame(us * half_width, upper_v), axis=1)  # (33, 2) x, y
    lower = np.stack(to_frame(us * half_width, lower_v), axis=1)
    polygon = np.concatenate([upper, lower[::-1]])

    iris_u, iris_v = gaze[0] * half_width * 0.5, gaze[1] * lid_open * 0.6
    iris_x, iris_y = to_frame(iris_u, iris_v)
    tilt = math.hypot(*gaze)
    angle = math.degrees(math.atan2(gaze[1], gaze[0]) + roll) if tilt > 1e-3 else math.degrees(roll)
    pupil_radius = float(np.clip(r_iris * rng.uniform(0.2, 0.68), 3.5, 0.72 * r_iris))
    px, py = iris_x + rng.normal(0, 0.03 * r_iris), iris_y + rng.normal(0, 0.03 * r_iris)
    iris_axes = (r_iris, r_iris * math.cos(min(tilt, 1.0) * 0.5))
    pupil_axes = (pupil_radius, pupil_radius * math.cos(min(tilt, 1.0) * 0.9))
    x0, y0, bw, bh = cv2.boundingRect(np.round(polygon).astype(np.int32))
    box = (max(0, x0 - 2), max(0, y0 - 2), min(w, x0 + bw + 3), min(h, y0 + bh + 3))
    return Eye(h, w, (eye_x, eye_y), roll, gaze, r_iris, half_width, lid_open, openness, us, inside, canthus, upper_v, lower_v, upper, lower,
               polygon, (iris_x, iris_y), angle, pupil_radius, (px, py), iris_axes, pupil_axes, box)


def draw_label(eye: Eye) -> np.ndarray:
    """OpenEDS classes from the geometry alone (hard masks): sclera 1, iris 2, pupil 3 where the lids leave the eye
    open. The pupil is its ellipse, whatever is drawn over it later (glints on it stay pupil)."""
    label = np.zeros((eye.height, eye.width), np.uint8)
    if eye.is_open:
        x0, y0, x1, y1 = eye.box
        opening = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(opening, [_fixed(eye.polygon - np.array([x0, y0]))], 1, cv2.LINE_8, SUBPIXEL)
        classes = opening.copy()
        _ellipse(classes, (eye.iris[0] - x0, eye.iris[1] - y0), eye.iris_axes, eye.angle, 2, line=cv2.LINE_8)
        _ellipse(classes, (eye.pupil[0] - x0, eye.pupil[1] - y0), eye.pupil_axes, eye.angle, 3, line=cv2.LINE_8)
        label[y0:y1, x0:x1] = classes * opening
    return label


def draw_levels(traits: Subject, rng: np.random.Generator) -> Levels:
    """This frame's gray levels around the subject's own (pupil, iris above it, sclera, skin)."""
    openeds = traits.family == "openeds"
    pupil_gray = traits.pupil_gray + rng.normal(0, 1.0 if openeds else 4.0)
    iris_gray = min(pupil_gray + traits.iris_delta * rng.uniform(0.9, 1.1), 240.0)
    sclera_gray = float(np.clip(iris_gray + traits.sclera_delta, pupil_gray + 3, 245)) if not openeds else max(iris_gray + traits.sclera_delta, float(rng.uniform(62, 74)))
    skin_gray = traits.skin + rng.normal(0, 4)
    return Levels(pupil_gray, iris_gray, sclera_gray, skin_gray)


def paint_skin(eye: Eye, levels: Levels, traits: Subject, rng: np.random.Generator) -> np.ndarray:
    """The face around the eye: shading, lid fold highlight and crease (wide soft shapes drawn at quarter
    resolution), pores and texture. float32 (h, w)."""
    h, w = eye.height, eye.width
    openeds = traits.family == "openeds"
    quarter = (max(1, h // 4), max(1, w // 4))
    qy, qx = _grid(*quarter)
    low = levels.skin + _smooth_field(rng, (5, 8), rng.uniform(6, 16), quarter)  # everything smooth, at quarter resolution
    if not openeds and rng.random() < 0.5:  # light falls off across the face
        direction = rng.uniform(0, 2 * math.pi)
        low += rng.uniform(10, 50) * ((qx / quarter[1] - 0.5) * math.cos(direction) + (qy / quarter[0] - 0.5) * math.sin(direction))
    fold_v = eye.upper_v - eye.lid_open * rng.uniform(0.5, 0.9)
    fold_pts = np.stack(eye.to_frame(eye.us * eye.half_width * 1.1, fold_v), axis=1)
    fold_gain = rng.uniform(25, 70) if openeds else rng.uniform(-20, 60)
    low += fold_gain * _soft(quarter, lambda c, f: cv2.polylines(c, [_fixed(fold_pts * f)], False, 1.0, max(1, int(eye.lid_open * f * 0.5)), cv2.LINE_AA, SUBPIXEL),
                             eye.lid_open * 0.35, factor=4, full=(h, w))
    crease = rng.uniform(15, 35)
    low -= crease * _soft(quarter, lambda c, f: cv2.polylines(c, [_fixed(eye.upper * f)], False, 1.0, max(1, int(eye.lid_open * f * 0.12)), cv2.LINE_AA, SUBPIXEL),
                          eye.lid_open * 0.1, factor=4, full=(h, w))
    image = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    image += _smooth_field(rng, (h // 10, w // 10), rng.uniform(1.0, 6.0), (h, w), cubic=False)  # pores and skin texture
    return image


def paint_eye(image: np.ndarray, eye: Eye, levels: Levels, traits: Subject, rng: np.random.Generator, extra: np.random.Generator | None = None) -> np.ndarray:
    """Sclera, iris (limbal ring, texture, often a darker pupillary zone) and pupil composed inside the opening's
    bounding box; the upper lid shades the top of the eye.

    The pupillary zone: real irises are often darker near the pupil than further out, so the dark region around a
    pupil is larger than the pupil and its outer edge is soft. The label stays the pupil's ellipse: the pupil is the
    dark core with the sharp edge, not everything dark."""
    if not eye.is_open:
        return image
    openeds = traits.family == "openeds"
    yy, xx = _grid(eye.height, eye.width)
    x0, y0, x1, y1 = eye.box
    (eye_x, eye_y), (iris_x, iris_y), (px, py), r_iris = eye.centre, eye.iris, eye.pupil, eye.r_iris
    box = (slice(y0, y1), slice(x0, x1))
    bx, by = xx[box], yy[box]
    alpha_open = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(alpha_open, [_fixed(eye.polygon - (x0, y0))], 255, cv2.LINE_AA, SUBPIXEL)
    alpha_open = alpha_open.astype(np.float32) / 255
    u_rel = ((bx - eye_x) * math.cos(eye.roll) + (by - eye_y) * math.sin(eye.roll)) / eye.half_width
    sclera = levels.sclera - rng.uniform(6, 20) * u_rel * u_rel + _smooth_field(rng, (4, 6), 3.0, (y1 - y0, x1 - x0))
    region = _blend(image[box], alpha_open, sclera)
    # iris and pupil inside the iris's own box (the pupil lies within the iris)
    ix0, iy0 = max(x0, int(iris_x - r_iris) - 3), max(y0, int(iris_y - r_iris) - 3)
    ix1, iy1 = min(x1, int(iris_x + r_iris) + 4), min(y1, int(iris_y + r_iris) + 4)
    if ix1 > ix0 and iy1 > iy0:
        ibox = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
        ix, iy = xx[iy0:iy1, ix0:ix1] - iris_x, yy[iy0:iy1, ix0:ix1] - iris_y
        inner_open = alpha_open[ibox]
        alpha_iris = np.zeros_like(inner_open)
        _ellipse(alpha_iris, (iris_x - ix0, iris_y - iy0), eye.iris_axes, eye.angle, 1.0)
        rad = np.sqrt(ix * ix + iy * iy) * (1.0 / r_iris)
        iris = levels.iris - rng.uniform(0.2, 0.6) * traits.iris_delta * np.clip((rad - 0.82) * (1 / 0.18), 0, 1) ** 2  # limbal ring
        if traits.iris_texture > 0:
            theta = cv2.phase(ix, iy)  # radians, 4x faster than np.arctan2
            spokes = sum(np.sin(theta * k + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.3, 1.0) for k in (23, 37, 61))
            iris += traits.iris_texture * 0.5 * spokes * (0.5 + np.minimum(rad, 1.2)) + _smooth_field(rng, (12, 12), traits.iris_texture * 0.4, inner_open.shape)
        if extra is not None and not openeds and extra.random() < PUPILLARY_ZONE_P:
            iris = iris - _pupillary_zone(eye, levels, xx[iy0:iy1, ix0:ix1], yy[iy0:iy1, ix0:ix1], extra)
        inner = _blend(region[ibox], alpha_iris * inner_open, iris)
        alpha_pupil = np.zeros_like(inner_open)
        _ellipse(alpha_pupil, (px - ix0, py - iy0), eye.pupil_axes, eye.angle, 1.0)
        edge_sigma = rng.uniform(0.3, 1.5) * (1.0 if openeds else max(1.0, eye.pupil_radius / 25))
        alpha_pupil = cv2.GaussianBlur(alpha_pupil, (0, 0), edge_sigma)
        pupil = np.empty_like(inner_open)
        cv2.randn(pupil, levels.pupil, 1.0 if openeds else float(rng.uniform(0.5, 3.0)))
        region[ibox] = _blend(inner, alpha_pupil * inner_open, pupil)
    # the upper lid shades the top of the eye
    small = cv2.resize(1.0 - alpha_open, ((x1 - x0 + 3) // 4, (y1 - y0 + 3) // 4), interpolation=cv2.INTER_AREA)
    shade = cv2.resize(cv2.GaussianBlur(small, (0, 0), max(0.5, eye.lid_open * 0.03)), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    region *= 1.0 - rng.uniform(0.1, 0.45) * shade * alpha_open
    image[box] = region
    return image


def _pupillary_zone(eye: Eye, levels: Levels, xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How much darker the iris is at (xs, ys): depth x (iris - pupil) at the pupil's edge, falling off outward as
    exp(-distance / width)."""
    (px, py), (a, b) = eye.pupil, eye.pupil_axes
    cos_a, sin_a = math.cos(math.radians(eye.angle)), math.sin(math.radians(eye.angle))
    dx, dy = xs - px, ys - py
    q = np.sqrt(((dx * cos_a + dy * sin_a) / a) ** 2 + ((dy * cos_a - dx * sin_a) / b) ** 2)  # 1 on the pupil's edge
    outside = np.maximum(q - 1.0, 0.0) * (0.5 * (a + b))  # ~px beyond the pupil's edge
    depth = rng.uniform(*PUPILLARY_ZONE_DEPTH) * (levels.iris - levels.pupil)
    width = max(1.5, rng.uniform(*PUPILLARY_ZONE_WIDTH) * (eye.r_iris - eye.pupil_radius))
    return (depth * np.exp(-outside / width)).astype(np.float32)


def add_distractors(image: np.ndarray, eye: Eye, levels: Levels, traits: Subject, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dark things that are not the pupil: lashes (clumped, darker than the pupil possible), eyeliner, eyebrow, round
    blobs on the skin; and the multiplicative shading (shadowed corners, skin folds, vignetting) at quarter
    resolution, which apply_optics multiplies in. Returns (image, shading)."""
    h, w = eye.height, eye.width
    openeds = traits.family == "openeds"
    to_frame, half_width, lid_open, r_iris, roll = eye.to_frame, eye.half_width, eye.lid_open, eye.r_iris, eye.roll
    us, upper_v, lower_v, upper, lower, canthus, inside = eye.us, eye.upper_v, eye.lower_v, eye.upper, eye.lower, eye.canthus, eye.inside
    pupil_gray, skin_gray, pupil_radius = levels.pupil, levels.skin, eye.pupil_radius
    quarter = (max(1, h // 4), max(1, w // 4))
    qy, qx = _grid(*quarter)
    lashes = np.zeros((h, w), np.float32)
    n_lashes = int(rng.integers(15, 60) if openeds else 120 * traits.lash_density * rng.uniform(0.5, 1.0))
    lash_len = lid_open * (1.0 if openeds else rng.uniform(0.4, 1.1))
    clump_dir = rng.uniform(-0.5, 0.5)
    if n_lashes:
        t = rng.uniform(-1.0, 1.0, n_lashes)
        lower_lash = rng.random(n_lashes) < 0.25
        anchor = np.stack(to_frame(t * half_width, np.where(lower_lash, np.interp(t, us, lower_v), np.interp(t, us, upper_v))), axis=1)  # (n, 2)
        length = rng.uniform(0.25, 1.0, n_lashes) * lash_len * np.where(lower_lash, 0.5, 1.0)
        into_eye = (rng.random(n_lashes) < 0.45) != lower_lash  # most upper lashes point up, most lower ones down
        direction = np.where(rng.random(n_lashes) < 0.5, clump_dir, rng.uniform(-0.5, 0.5, n_lashes)) + np.where(into_eye, math.pi / 2, -math.pi / 2) + roll
        bend = rng.uniform(-0.6, 0.6, n_lashes) / np.maximum(length, 1.0)
        ts = np.linspace(0.0, 1.0, 6)
        angles = direction[:, None] + bend[:, None] * ts * length[:, None]  # (n, 6)
        strands = anchor[:, None, :] + np.stack([np.cos(angles), np.sin(angles)], axis=2) * (ts * length[:, None])[..., None]
        _draw_strands(lashes, strands, rng)
    lash_gray = rng.uniform(10, 30) if openeds else min(rng.uniform(0, 70), skin_gray)
    if traits.eyeliner:
        thickness = max(1, int(r_iris * rng.uniform(0.04, 0.12)))
        cv2.polylines(lashes, [_fixed(upper)], False, 1.0, thickness, cv2.LINE_AA, SUBPIXEL)
        if rng.random() < 0.4:
            cv2.polylines(lashes, [_fixed(lower)], False, 0.8, max(1, thickness // 2), cv2.LINE_AA, SUBPIXEL)
    if traits.eyebrow:
        brow_v = upper_v.min() - lid_open * rng.uniform(1.2, 2.4)
        n_hairs = int(rng.integers(60, 160))
        t = rng.uniform(-1.1, 1.1, n_hairs)
        start = np.stack(to_frame(t * half_width, brow_v + lid_open * (0.25 * t * t + rng.normal(0, 0.12, n_hairs))), axis=1)
        angles = roll - math.pi / 2 * 0.2 * np.sign(t) + rng.normal(0, 0.3, n_hairs)
        end = start + (rng.uniform(0.1, 0.35, n_hairs) * lid_open)[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        _draw_strands(lashes, np.stack([start, end], axis=1), rng)
    image = _blend_sparse(image, 0.8 * np.clip(lashes, 0, 1), lash_gray)
    shading = np.ones(quarter, np.float32)  # multiplicative, at quarter resolution: corners, folds, vignetting
    if rng.random() < 0.4:  # shadowed eye corners
        corners = [to_frame(-half_width, canthus[0]), to_frame(half_width, canthus[-1])]
        dark = _soft(quarter, lambda c, f: [_ellipse(c, (cx_ * f, cy_ * f), (lid_open * 0.5 * f, lid_open * 0.35 * f), math.degrees(roll), 1.0) for cx_, cy_ in corners],
                     lid_open * 0.3, full=(h, w))
        shading *= 1.0 - rng.uniform(0.2, 0.6) * np.clip(dark, 0, 1)
    if not openeds and rng.random() < 0.3:  # skin folds below or above the eye
        folds = [np.stack(to_frame(us * half_width * rng.uniform(0.6, 1.4), rng.choice([-1, 1]) * lid_open * rng.uniform(1.2, 3.0) + rng.normal(0, 0.15) * lid_open * inside), axis=1)
                 for _ in range(int(rng.integers(1, 4)))]
        dark = _soft(quarter, lambda c, f: cv2.polylines(c, [_fixed(fold * f) for fold in folds], False, 1.0, 1, cv2.LINE_AA, SUBPIXEL), max(2.0, lid_open * 0.08), full=(h, w))
        shading *= 1.0 - rng.uniform(0.2, 0.5) * np.clip(dark / max(float(dark.max()), 1e-6), 0, 1)
    if openeds or rng.random() < 0.5:  # vignetting
        corner = ((qx - quarter[1] / 2) / (quarter[1] / 2)) ** 2 + ((qy - quarter[0] / 2) / (quarter[0] / 2)) ** 2
        shading *= np.clip(1.0 - rng.uniform(0.25, 0.6) * corner / 2.0 * (1 + 0.6 * corner), 0.15, 1.0)
    if not openeds and rng.random() < 0.3:  # dark round blobs of pupil size on the skin (moles, nostrils, shadows)
        blobs = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            bu, bv = rng.uniform(-2.5, 2.5) * half_width, rng.choice([-1, 1]) * rng.uniform(1.2, 3.5) * lid_open
            size = pupil_radius * rng.uniform(0.5, 1.5)
            _ellipse(blobs, to_frame(bu, bv), (size, size * rng.uniform(0.6, 1.0)), rng.uniform(0, 180), 1.0)
        blobs = cv2.GaussianBlur(blobs, (0, 0), max(0.5, pupil_radius * 0.1))
        image = _blend(image, blobs, pupil_gray + rng.uniform(-15, 15))

    return image, shading


def apply_optics(image: np.ndarray, shading: np.ndarray, eye: Eye, traits: Subject, rng: np.random.Generator, extra: np.random.Generator | None = None) -> np.ndarray:
    """Fresnel rings (VR lenses), the shading, eyeglass reflections and rims, defocus and motion blur, then glints
    (corneal reflections of the light: a ring of them, some on the pupil's rim or inside it, a large saturated one,
    and often 1-2 just outside the rim: the label is the pupil's ellipse, so they are not pupil)."""
    h, w = eye.height, eye.width
    openeds = traits.family == "openeds"
    half_width, lid_open, r_iris, roll = eye.half_width, eye.lid_open, eye.r_iris, eye.roll
    yy, xx = _grid(h, w)
    (eye_x, eye_y), (iris_x, iris_y), (px, py) = eye.centre, eye.iris, eye.pupil
    gaze, openness, pupil_radius, pupil_axes = eye.gaze, eye.openness, eye.pupil_radius, eye.pupil_axes
    if rng.random() < (0.8 if openeds else 0.1):
        ring_r = np.sqrt((xx - w / 2 - rng.normal(0, 60)) ** 2 + (yy - h / 2 - rng.normal(0, 40)) ** 2)
        image += rng.uniform(1.5, 5.0) * np.sin(ring_r * (2 * np.pi / rng.uniform(9, 22)))
    image *= cv2.resize(shading, (w, h), interpolation=cv2.INTER_LINEAR)
    if traits.glasses:
        glare = _soft((h, w), lambda c, f: [_ellipse(c, (rng.uniform(0, w) * f, rng.uniform(0, h) * f), (rng.uniform(0.1, 0.4) * w * f, rng.uniform(0.05, 0.25) * h * f),
                                                     rng.uniform(0, 180), 1.0) for _ in range(int(rng.integers(1, 4)))], 0.05 * w)
        image = _blend(image, rng.uniform(0.1, 0.5) * np.clip(glare, 0, 1), 250.0)
        if rng.random() < 0.5:  # lens rim
            rim = np.zeros((h, w), np.float32)
            _ellipse(rim, (eye_x + rng.normal(0, half_width * 0.3), eye_y + rng.normal(0, lid_open)), (half_width * rng.uniform(1.4, 2.2), lid_open * rng.uniform(2.5, 4.0)),
                     math.degrees(roll), 1.0, thickness=max(1, int(r_iris * 0.08)))
            image = _blend(image, cv2.GaussianBlur(rim, (0, 0), 1.5), rng.choice([rng.uniform(0, 40), rng.uniform(180, 255)]))
    if openeds:
        sigma = rng.uniform(0.6, 1.4) if rng.random() < 0.75 else rng.uniform(1.8, 3.2)
    else:
        sigma = rng.uniform(0.3, 1.5) if rng.random() < 0.7 else rng.uniform(1.5, 3.5)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    if not openeds and rng.random() < 0.15:  # motion blur
        length = int(rng.integers(3, 12))
        kernel = np.zeros((length, length), np.float32)
        cv2.line(kernel, (0, int(rng.integers(length))), (length - 1, int(rng.integers(length))), 1.0, 1)
        image = cv2.filter2D(image, -1, kernel / kernel.sum())
    if openness > 0:
        glints = np.zeros((h, w), np.float32)
        n_glints = int(rng.integers(6, 13)) if openeds else int(rng.integers(0, 13))
        ring = r_iris * rng.uniform(0.35, 0.9)
        phase = rng.uniform(0, 2 * np.pi)
        for k in range(n_glints):
            a = phase + 2 * np.pi * k / max(n_glints, 1) + rng.normal(0, 0.12)
            gx, gy = iris_x + gaze[0] * r_iris * 0.25 + ring * math.cos(a), iris_y + gaze[1] * r_iris * 0.15 + ring * 0.8 * math.sin(a)
            on_pupil = k == 0 and rng.random() < 0.5  # a glint on the pupil edge or inside it
            if on_pupil:
                inner = 1.0 if openeds else rng.uniform(0.0, 1.1)
                gx, gy = px + inner * pupil_axes[0] * math.cos(a), py + inner * pupil_axes[1] * math.sin(a)
            radius = rng.uniform(1.2, 3.2) if openeds else max(0.6, r_iris * rng.uniform(0.005, 0.06))
            if on_pupil and not openeds and rng.random() < 0.5:  # the light's reflection up to 40 % of the pupil radius
                radius = max(radius, pupil_radius * rng.uniform(0.1, 0.4))
            _ellipse(glints, (gx, gy), (radius, radius * rng.uniform(0.7, 1.0)), rng.uniform(0, 180), 1.0)
        if rng.random() < 0.15:  # a large saturated glint, often on or inside the pupil
            spread = 0.6 if openeds else 1.0  # others: up to the pupil's rim
            bx_, by_ = px + rng.uniform(-spread, spread) * pupil_axes[0], py + rng.uniform(-spread, spread) * pupil_axes[1]
            size = rng.uniform(8, 16) if openeds else pupil_radius * rng.uniform(0.2, 0.6)
            _ellipse(glints, (bx_, by_), (size / 2, size / 2 * rng.uniform(0.7, 1.0)), rng.uniform(0, 180), 1.0)
        if extra is not None and not openeds and extra.random() < RIM_GLINT_P:  # just outside the rim, touching it or nearly
            for _ in range(int(extra.integers(1, 3))):
                a, radius = extra.uniform(0, 2 * np.pi), max(0.8, pupil_radius * extra.uniform(0.08, 0.35))
                out = 1.0 + radius * extra.uniform(0.3, 1.3) / pupil_radius  # the glint's centre, in pupil radii
                _ellipse(glints, (px + out * pupil_axes[0] * math.cos(a), py + out * pupil_axes[1] * math.sin(a)), (radius, radius * extra.uniform(0.7, 1.0)),
                         extra.uniform(0, 180), 1.0)
        glints = cv2.GaussianBlur(glints, (0, 0), 0.8)
        image = _blend_sparse(image, np.clip(glints, 0, 1), rng.uniform(215, 255) if openeds else rng.uniform(150, 255))

    return image


def apply_sensor(image: np.ndarray, traits: Subject, rng: np.random.Generator) -> np.ndarray:
    """Exposure (gain, contrast, offset; a lifted black level for washed-out frames), noise, a low-resolution
    sensor upscaled, JPEG. Returns uint8."""
    h, w = image.shape
    openeds = traits.family == "openeds"
    gain, contrast = (rng.uniform(0.8, 1.2) if openeds else rng.uniform(0.6, 1.5)), rng.uniform(0.85, 1.2)
    offset = 0.0 if openeds else rng.uniform(-20, 20)
    # washed out: ambient light or flare lifts the black level (pupil mid-gray) and compresses the contrast to match
    lift = rng.uniform(*VEIL_LIFT) if not openeds and rng.random() < VEIL_P else 0.0
    image *= gain * contrast * (1.0 - lift / 255.0)  # (((image - 60) * contrast + 60) * gain + offset) * (1 - lift / 255) + lift
    image += (60.0 * (1 - contrast) * gain + offset) * (1.0 - lift / 255.0) + lift + 0.5  # + 0.5: rounding before the cast
    noise = np.empty((h, w), np.float32)
    sigma = float(rng.uniform(1.5, 4.0) if openeds else rng.uniform(0.5, 12.0))
    cv2.randn(noise, 0.0, sigma)
    if openeds:  # shot noise grows with the signal
        shot = np.sqrt(np.maximum(image, 0))
        shot *= 0.25 / sigma
        shot += 1.0
        noise *= shot
    image += noise
    image = np.clip(image, 0, 255, out=image).astype(np.uint8)
    if traits.lowres > 1:
        small = cv2.resize(image, (max(8, int(w / traits.lowres)), max(8, int(h / traits.lowres))), interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR)
    if not openeds and rng.random() < 0.3:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 91))])
        image = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return image


def _letterbox(image: np.ndarray, label: np.ndarray, traits: Subject, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Content frame -> 400x640 output, top-left as training.evaluate letterboxes (padding replicated or constant)."""
    h, w = image.shape
    if (h, w) == (HEIGHT, WIDTH):
        return image, label
    pad = (0, HEIGHT - h, 0, WIDTH - w)
    if traits.pad_mode == "replicate":
        out = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE)
    else:
        value = 0 if traits.pad_mode == "black" else int(rng.integers(60, 200))
        out = cv2.copyMakeBorder(image, *pad, cv2.BORDER_CONSTANT, value=value)
    return out, cv2.copyMakeBorder(label, *pad, cv2.BORDER_CONSTANT, value=0)


# ------------------------------------------------------------------------------------------------ layout
def frame_plan(num_images: int, seed: int) -> list[tuple[str, int, int]]:
    """(split, frame index, subject) for every frame: 70/15/15 % of frames, each subject in exactly one split."""
    n_val = max(1, round(0.15 * num_images)) if num_images >= 3 else 0
    n_test = max(1, round(0.15 * num_images)) if num_images >= 3 else 0
    sizes = {"train": num_images - n_val - n_test, "validation": n_val, "test": n_test}
    plan, next_subject = [], 0
    order = np.random.default_rng([seed, 0]).permutation(num_images)  # frame indices, shuffled over splits
    position = 0
    for split, _ in SPLITS:
        n_subjects = max(1, math.ceil(sizes[split] / FRAMES_PER_SUBJECT))
        for k in range(sizes[split]):
            plan.append((split, int(order[position]), next_subject + k % n_subjects))
            position += 1
        next_subject += n_subjects
    return sorted(plan, key=lambda item: item[1])


def is_closed(seed: int, index: int, share: float) -> bool:
    """Whether --closed-share `share` shuts the lids of frame `index` (its own stream: other frames stay as they are)."""
    return share > 0 and bool(np.random.default_rng([seed, CLOSED_STREAM, index]).random() < share)


def _write_one(args: tuple[str, str, int, int, int, str | None, bool]) -> None:
    output_dir, split, index, subject, seed, family, closed = args
    image, label = render_frame(seed, index, subject, family, closed)
    stem = f"S{subject:03d}_{index:06d}"
    root = Path(output_dir) / split
    if not cv2.imwrite(str(root / "images" / f"{stem}.png"), image):
        raise OSError(f"could not write {root / 'images' / f'{stem}.png'}")
    np.save(root / "labels" / f"{stem}.npy", label)


def generate(output_dir: str | Path, num_images: int, seed: int = 0, workers: int = 0, families: list[str] | None = None,
             closed_share: float = 0.0) -> dict[str, int]:
    """Writes `num_images` frames; returns the count per split. workers=0 uses every core. `families` limits the
    camera families (each subject then draws one of them, in proportion to FAMILIES); `closed_share` shuts the lids of
    that share of the training frames besides those the generator closes itself (is_closed)."""
    output_dir = Path(output_dir)
    unknown = sorted(set(families or ()) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")
    if not 0.0 <= closed_share <= 1.0:
        raise ValueError(f"closed_share {closed_share} is not a share between 0 and 1")
    plan = frame_plan(num_images, seed)
    for split, _ in SPLITS:
        (output_dir / split / "images").mkdir(parents=True, exist_ok=True)
        (output_dir / split / "labels").mkdir(parents=True, exist_ok=True)
    jobs = [(str(output_dir), split, index, subject, seed, _pick_family(seed, subject, families),
             split == "train" and is_closed(seed, index, closed_share))
            for split, index, subject in plan]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_one(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=8))
    return {split: sum(1 for s, _, _ in plan if s == split) for split, _ in SPLITS}


def _pick_family(seed: int, subject: int, families: list[str] | None) -> str | None:
    if not families or set(families) == set(FAMILIES):
        return None
    shares = np.array([FAMILIES[name] for name in families])
    return families[int(np.random.default_rng([seed, 3, subject]).choice(len(families), p=shares / shares.sum()))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    parser.add_argument("--families", default="", help=f"comma-separated subset of {','.join(FAMILIES)} (default: all)")
    parser.add_argument("--closed-share", type=float, default=0.0, help="shut the lids of this share of the training frames as well (0-1)")
    args = parser.parse_args(argv)
    families = [name.strip() for name in args.families.split(",") if name.strip()] or None
    counts = generate(args.output_dir, args.num_images, args.seed, args.workers, families, args.closed_share)
    print(f"wrote {sum(counts.values())} synthetic frames to {args.output_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
