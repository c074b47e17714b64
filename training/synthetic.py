"""OpenEDS-like synthetic near-eye infrared frames, written in the exact layout of the Kaggle download.

    python -m training.synthetic --output-dir D --num-images N --seed S [--workers W]

writes D/{train,validation,test}/images/*.png (640x400, 8-bit grayscale) and D/{...}/labels/*.npy (uint8
(400, 640): 0 background, 1 sclera, 2 iris, 3 pupil), so that `precompute.py --skip-download --output-dir D`
processes it like a real download. File names are `S<subject>_<frame>`: splits are by subject (each subject
appears in one split), as in OpenEDS.

Calibrated against shared/reference/openeds-frame-stats.md: pupil ~34 gray (std ~3), iris 10-25 levels above
it, sclera barely brighter than the iris, background 20-150 with bright lid folds and dark corners; eyelids
that always cut the iris, lashes crossing the opening, 6-12 glints in a ring (some on the pupil edge,
sometimes one large saturated blob), faint Fresnel rings, vignetting, blur, sensor noise, exposure changes.
Per subject: skin tone, iris darkness/texture, eye size (camera distance), lid shape. Per frame: gaze (pupil
position, foreshortening and rotation), pupil size, blink (a few closed or nearly closed eyes), lashes,
glints, optics. Deterministic per (seed, frame index) whatever the number of workers.
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH = 400, 640
SPLITS = (("train", 0.7), ("validation", 0.15), ("test", 0.15))
FRAMES_PER_SUBJECT = 8  # many people, few frames each: diversity over repetition


@dataclass(frozen=True)
class Subject:
    skin: float  # mean skin gray before exposure
    iris_gray: float  # iris level (dark irises sit 10-20 above the pupil)
    iris_texture: float  # radial texture contrast
    iris_radius: float  # pixels (OpenEDS: ~97 px; camera distance varies it)
    eye_width: float  # half-width of the palpebral opening, pixels
    lid_open: float  # half-height of the fully open eye, pixels
    sclera_gray: float


def subject_traits(seed: int, subject: int) -> Subject:
    rng = np.random.default_rng([seed, 1, subject])
    scale = float(np.clip(rng.lognormal(0.0, 0.22), 0.55, 1.8))  # eye fills the frame vs small in it
    dark_iris = rng.random() < 0.35
    iris_gray = rng.uniform(44, 52) if dark_iris else rng.uniform(53, 66)
    return Subject(
        skin=rng.uniform(70, 105),
        iris_gray=iris_gray,
        iris_texture=rng.uniform(1.0, 3.0) if dark_iris else rng.uniform(4.0, 10.0),
        iris_radius=97.0 * scale * rng.uniform(0.93, 1.07),
        eye_width=205.0 * scale * rng.uniform(0.9, 1.12),
        lid_open=62.0 * scale * rng.uniform(0.85, 1.15),
        sclera_gray=max(iris_gray + rng.uniform(4, 16), rng.uniform(62, 74)),
    )


def _smooth_field(rng: np.random.Generator, grid: tuple[int, int], amplitude: float) -> np.ndarray:
    coarse = rng.normal(0.0, amplitude, grid).astype(np.float32)
    return cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


def render_frame(seed: int, index: int, subject: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 (400, 640), label uint8 (400, 640)) pair; pure function of (seed, index, subject)."""
    traits = subject_traits(seed, subject)
    rng = np.random.default_rng([seed, 2, index])
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)

    # Eye placement and gaze.
    eye_x = WIDTH / 2 + rng.normal(0, 30)
    eye_y = HEIGHT / 2 + rng.normal(0, 20)
    gaze = rng.normal(0, 0.35, 2).clip(-0.8, 0.8)  # radians-ish, horizontal / vertical
    iris_x = eye_x + gaze[0] * traits.eye_width * 0.55
    iris_y = eye_y + gaze[1] * traits.lid_open * 0.6
    r_iris = traits.iris_radius

    # Eyelids: upper and lower arcs; blink state closes them (some frames fully closed: no pupil).
    blink = rng.random()
    openness = 0.0 if blink < 0.04 else (rng.uniform(0.08, 0.45) if blink < 0.12 else rng.uniform(0.75, 1.1))
    u = (xx - eye_x) / traits.eye_width
    inside_width = np.clip(1.0 - u * u, 0.0, None)
    lid_shift = gaze[1] * traits.lid_open * 0.35  # lids follow vertical gaze
    upper = eye_y + lid_shift - traits.lid_open * openness * 1.15 * inside_width ** 0.8 + rng.normal(0, 3)
    lower = eye_y + lid_shift + traits.lid_open * openness * 0.85 * inside_width ** 0.9 + rng.normal(0, 3)
    opening = (yy > upper) & (yy < lower) & (np.abs(u) < 1.0)

    # Geometry of iris and pupil (pupil foreshortened and rotated with gaze).
    pupil_radius = float(np.clip(rng.lognormal(math.log(28 * r_iris / 97.0), 0.3), 10, 65))
    pupil_radius = min(pupil_radius, 0.72 * r_iris)
    tilt = float(np.hypot(*gaze))
    minor = pupil_radius * math.cos(min(tilt, 1.0) * 0.9)
    angle = math.degrees(math.atan2(gaze[1], gaze[0])) if tilt > 1e-3 else 0.0
    px = iris_x + rng.normal(0, 2.5)
    py = iris_y + rng.normal(0, 2.5)
    iris_disk = ((xx - iris_x) ** 2 + (yy - iris_y) ** 2) <= r_iris ** 2
    pupil_mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(pupil_mask, ((px, py), (2 * pupil_radius, 2 * minor), angle), 1, -1, cv2.LINE_8)
    pupil_disk = pupil_mask.astype(bool)

    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[opening] = 1
    label[opening & iris_disk] = 2
    label[opening & pupil_disk] = 3

    # Skin: low-frequency shading, bright lid folds above the upper lid, darker crease.
    skin = traits.skin + _smooth_field(rng, (5, 8), 14.0)
    fold = np.exp(-((yy - (upper - traits.lid_open * rng.uniform(0.5, 0.9))) ** 2) / (2 * (18 + 10 * rng.random()) ** 2))
    fold_extent = np.exp(-np.clip(np.abs(u) - 0.7, 0, None) ** 2 / 0.08)  # fades out past the eye corners
    skin += fold * rng.uniform(25, 70) * fold_extent + _smooth_field(rng, (40, 64), 6.0)
    crease = np.exp(-((yy - upper) ** 2) / (2 * 5.0 ** 2)) * (np.abs(u) < 1.1)
    skin -= crease * rng.uniform(15, 35)
    image = skin

    # Sclera: slightly shaded, darker towards the corners of the eye.
    sclera = traits.sclera_gray + _smooth_field(rng, (6, 10), 5.0) - 14.0 * np.abs(u) ** 2
    image = np.where(opening, sclera, image)

    # Iris: radial texture, darker limbal ring, darker collarette near the pupil.
    theta = np.arctan2(yy - iris_y, xx - iris_x)
    rad = np.sqrt((xx - iris_x) ** 2 + (yy - iris_y) ** 2) / r_iris
    spokes = sum(np.sin(theta * k + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.3, 1.0) for k in (23, 37, 61, 89))
    iris = traits.iris_gray + traits.iris_texture * (spokes / 2.0) * (0.5 + rad) + _smooth_field(rng, (20, 32), traits.iris_texture * 0.6)
    iris -= rng.uniform(6, 16) * np.clip((rad - 0.82) / 0.18, 0, 1) ** 2  # limbal ring
    image = np.where(opening & iris_disk, iris, image)
    # soft limbus: blend a 2-px band
    pupil_gray = rng.normal(33.5, 1.8)
    pupil = pupil_gray + rng.normal(0, 1.0, (HEIGHT, WIDTH)).astype(np.float32)
    image = np.where(opening & pupil_disk, pupil, image)

    # Eyelashes: dark curved strands from the upper lid, crossing into the opening.
    overlay = np.zeros((HEIGHT, WIDTH), np.float32)
    for _ in range(int(rng.integers(15, 60))):
        x0 = eye_x + rng.uniform(-1.0, 1.0) * traits.eye_width
        col = int(np.clip(x0, 0, WIDTH - 1))
        y0 = float(upper[0, col] if upper.ndim == 2 else upper)
        length = rng.uniform(15, 60) * traits.lid_open / 62.0
        direction = rng.uniform(-0.5, 0.5) + (np.pi / 2 if rng.random() < 0.45 else -np.pi / 2)
        bend = rng.uniform(-0.02, 0.02)
        pts = []
        for t in np.linspace(0, 1, 8):
            a = direction + bend * t * length
            pts.append((x0 + math.cos(a) * t * length, y0 + math.sin(a) * t * length))
        cv2.polylines(overlay, [np.array(pts, np.int32)], False, float(rng.uniform(0.5, 1.0)), int(rng.integers(1, 3)), cv2.LINE_AA)
    image = image * (1 - 0.65 * overlay) + 18.0 * 0.65 * overlay

    # Fresnel lens rings across the whole frame.
    ring_cx, ring_cy = WIDTH / 2 + rng.normal(0, 60), HEIGHT / 2 + rng.normal(0, 40)
    ring_r = np.sqrt((xx - ring_cx) ** 2 + (yy - ring_cy) ** 2)
    image += rng.uniform(1.5, 5.0) * np.sin(2 * np.pi * ring_r / rng.uniform(9, 22))

    # Vignetting: deep shadows near the corners.
    corner = ((xx - WIDTH / 2) / (WIDTH / 2)) ** 2 + ((yy - HEIGHT / 2) / (HEIGHT / 2)) ** 2
    image *= np.clip(1.0 - rng.uniform(0.25, 0.6) * corner / 2.0 * (1 + 0.6 * corner), 0.15, 1.0)

    # Optics: defocus blur, then glints (sharper, saturated), then exposure and sensor noise.
    sigma = rng.uniform(0.6, 1.4) if rng.random() < 0.75 else rng.uniform(1.8, 3.2)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    glints = np.zeros((HEIGHT, WIDTH), np.float32)
    if openness > 0:
        n_glints = int(rng.integers(6, 13))
        ring = r_iris * rng.uniform(0.35, 0.75)
        phase = rng.uniform(0, 2 * np.pi)
        for k in range(n_glints):
            a = phase + 2 * np.pi * k / n_glints + rng.normal(0, 0.12)
            gx, gy = iris_x + gaze[0] * 25 + ring * math.cos(a), iris_y + gaze[1] * 15 + ring * 0.8 * math.sin(a)
            if k == 0 and rng.random() < 0.5:  # a glint on the pupil edge
                gx, gy = px + pupil_radius * math.cos(a), py + minor * math.sin(a)
            radius = rng.uniform(1.2, 3.2)
            cv2.circle(glints, (int(gx), int(gy)), int(max(1, radius)), 1.0, -1, cv2.LINE_AA)
        if rng.random() < 0.15:  # a large saturated glint, often on or inside the pupil
            bx = px + rng.uniform(-0.6, 0.6) * pupil_radius
            by = py + rng.uniform(-0.6, 0.6) * minor
            cv2.ellipse(glints, ((bx, by), (rng.uniform(8, 16), rng.uniform(8, 14)), rng.uniform(0, 180)), 1.0, -1, cv2.LINE_AA)
        glints = cv2.GaussianBlur(glints, (0, 0), 0.8)
        glints *= (opening | (np.abs(u) < 1.0)).astype(np.float32)
    image = image * (1 - np.clip(glints, 0, 1)) + np.clip(glints, 0, 1) * rng.uniform(215, 255)

    gain = rng.uniform(0.8, 1.2)
    image = (image - 60.0) * rng.uniform(0.85, 1.2) + 60.0
    image = image * gain
    image += rng.normal(0, rng.uniform(1.5, 4.0), (HEIGHT, WIDTH))
    image += np.sqrt(np.clip(image, 0, None)) * rng.normal(0, 0.25, (HEIGHT, WIDTH))  # shot noise
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label


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


def _write_one(args: tuple[str, str, int, int, int]) -> None:
    output_dir, split, index, subject, seed = args
    image, label = render_frame(seed, index, subject)
    stem = f"S{subject:03d}_{index:06d}"
    root = Path(output_dir) / split
    if not cv2.imwrite(str(root / "images" / f"{stem}.png"), image):
        raise OSError(f"could not write {root / 'images' / f'{stem}.png'}")
    np.save(root / "labels" / f"{stem}.npy", label)


def generate(output_dir: str | Path, num_images: int, seed: int = 0, workers: int = 0) -> dict[str, int]:
    """Writes `num_images` frames; returns the count per split. workers=0 uses every core."""
    output_dir = Path(output_dir)
    plan = frame_plan(num_images, seed)
    for split, _ in SPLITS:
        (output_dir / split / "images").mkdir(parents=True, exist_ok=True)
        (output_dir / split / "labels").mkdir(parents=True, exist_ok=True)
    jobs = [(str(output_dir), split, index, subject, seed) for split, index, subject in plan]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_one(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=4))
    return {split: sum(1 for s, _, _ in plan if s == split) for split, _ in SPLITS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    args = parser.parse_args(argv)
    counts = generate(args.output_dir, args.num_images, args.seed, args.workers)
    print(f"wrote {sum(counts.values())} synthetic frames to {args.output_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
