"""The synthetic OpenEDS-like generator: layout, determinism, realism statistics, and a contact sheet to look at."""

import os
from pathlib import Path

import cv2
import numpy as np

from training.synthetic import frame_plan, generate, render_frame
from training.visualize import LABEL_COLOR, outline


def test_layout_matches_the_kaggle_download(raw_dir):
    """Scenario: Kaggle layout"""
    for split in ("train", "validation", "test"):
        images = sorted((raw_dir / split / "images").glob("*.png"))
        labels = sorted((raw_dir / split / "labels").glob("*.npy"))
        assert images and [p.stem for p in images] == [p.stem for p in labels]
        image = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
        label = np.load(labels[0])
        assert image.shape == (400, 640) and image.dtype == np.uint8
        assert label.shape == (400, 640) and label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2, 3}


def test_splits_are_by_subject():
    """Scenario: Kaggle layout"""
    plan = frame_plan(100, seed=3)
    subjects = {}
    for split, _, subject in plan:
        subjects.setdefault(subject, set()).add(split)
    assert all(len(s) == 1 for s in subjects.values())
    counts = {s: sum(1 for p in plan if p[0] == s) for s in ("train", "validation", "test")}
    assert counts == {"train": 70, "validation": 15, "test": 15}


def test_deterministic_per_seed_whatever_the_workers(tmp_path):
    """Scenario: Deterministic per seed"""
    generate(tmp_path / "a", 6, seed=5, workers=1)
    generate(tmp_path / "b", 6, seed=5, workers=2)
    generate(tmp_path / "c", 6, seed=6, workers=1)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    image_a = next((tmp_path / "a").rglob("*.png"))
    assert not all(
        (tmp_path / "c" / p.relative_to(tmp_path / "a")).exists()
        and (tmp_path / "c" / p.relative_to(tmp_path / "a")).read_bytes() == p.read_bytes()
        for p in (tmp_path / "a").rglob("*.png")
    ), image_a


def _region_stats(frames):
    stats = {c: [] for c in range(4)}
    for image, label in frames:
        for c in range(4):
            values = image[label == c]
            if values.size > 50:
                stats[c].append(np.median(values))
    return {c: float(np.median(v)) for c, v in stats.items()}


def test_gray_levels_are_calibrated_to_real_openeds():
    """Scenario: Calibrated to real frames"""
    plan = frame_plan(24, seed=11)
    frames = [render_frame(11, index, subject) for _, index, subject in plan]
    medians = _region_stats(frames)
    # shared/reference/openeds-frame-stats.md: pupil ~34, iris 55-58, sclera 64-73, background 74-78 (mean)
    assert 28 <= medians[3] <= 42
    assert medians[3] + 8 <= medians[2] <= 72
    assert medians[2] <= medians[1] + 2 and medians[1] <= 85
    pupil_std = np.median([image[label == 3].std() for image, label in frames if (label == 3).sum() > 50])
    assert pupil_std < 12  # uniform pupil (glints and lashes may cross it)
    shares = np.mean([[np.mean(label == c) for c in range(4)] for _, label in frames], axis=0)
    assert 0.8 < shares[0] < 0.97 and 0.002 < shares[3] < 0.04
    # glints: saturated spots in most open-eye frames; wide background range with dark corners
    assert np.mean([(image >= 200).sum() > 5 for image, label in frames if (label == 3).any()]) > 0.7
    backgrounds = np.concatenate([image[label == 0] for image, label in frames])
    assert np.percentile(backgrounds, 5) < 40 and np.percentile(backgrounds, 95) > 110


def test_some_frames_have_closed_eyes(raw_dir):
    """Scenario: Closed eyes exercise empty-mask skipping"""
    empty = [p for p in raw_dir.rglob("*.npy") if not (np.load(p) == 3).any()]
    assert 1 <= len(empty) <= 6


def test_contact_sheet(tmp_path):
    """Scenario: Contact sheet"""
    plan = frame_plan(64, seed=0)[:16]
    tiles = []
    for _, index, subject in plan:
        image, label = render_frame(0, index, subject)
        tile = outline(image, [(label == 3, LABEL_COLOR)])
        tiles.append(cv2.resize(tile, (320, 200), interpolation=cv2.INTER_AREA))
    sheet = np.vstack([np.hstack(tiles[r * 4 : r * 4 + 4]) for r in range(4)])
    out = Path(os.environ.get("VISIONASSIST_CONTACT_SHEET", tmp_path / "contact_sheet.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(out), sheet)
    assert cv2.imread(str(out)).shape == (800, 1280, 3)
