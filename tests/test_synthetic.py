"""The synthetic generator: layout, determinism, the OpenEDS-calibrated family, domain randomization across camera
families, and a contact sheet to look at."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from training import synthetic
from training.synthetic import FAMILIES, frame_plan, generate, render_frame, subject_traits
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


def test_families_subset_and_unknown_family(tmp_path):
    """Scenario: Deterministic per seed"""
    generate(tmp_path / "face", 12, seed=1, workers=1, families=["face"])
    widths = []
    for path in (tmp_path / "face").rglob("*.npy"):
        ys, xs = np.nonzero(np.load(path) == 3)
        if xs.size:
            widths.append(xs.max() - xs.min() + 1)
    assert widths and max(widths) <= 40  # face cameras only: small pupils
    with pytest.raises(ValueError, match="unknown families"):
        generate(tmp_path / "x", 3, families=["webcam"])


def test_closed_share_shuts_the_lids_of_its_own_frames_only(tmp_path):
    """Scenario: Closed eyes on demand"""
    generate(tmp_path / "plain", 16, seed=5, workers=1)
    generate(tmp_path / "closed", 16, seed=5, workers=1, closed_share=0.5)
    chosen = {index for split, index, _ in frame_plan(16, 5) if split == "train" and synthetic.is_closed(5, index, 0.5)}
    assert 0 < len(chosen) < 12 and any(synthetic.is_closed(5, index, 0.5) for split, index, _ in frame_plan(16, 5) if split != "train")
    shut, opened = 0, 0
    for path in (tmp_path / "plain").rglob("*.npy"):
        twin = tmp_path / "closed" / path.relative_to(tmp_path / "plain")
        image, twin_image = (p.parent.parent / "images" / f"{p.stem}.png" for p in (path, twin))
        if int(path.stem.split("_")[1]) in chosen:  # S<subject>_<frame index>
            assert not (np.load(twin) == 3).any()  # no pupil: the eye is shut
            shut, opened = shut + 1, opened + (np.load(path) == 3).any()
        else:  # every other frame as it was, image and label (validation and test frames too)
            assert twin.read_bytes() == path.read_bytes() and twin_image.read_bytes() == image.read_bytes()
    assert shut == len(chosen) and opened > 0  # pupils that the plain frames showed are gone
    with pytest.raises(ValueError, match="closed_share"):
        generate(tmp_path / "x", 3, closed_share=1.5)


def _region_stats(frames):
    stats = {c: [] for c in range(4)}
    for image, label in frames:
        for c in range(4):
            values = image[label == c]
            if values.size > 50:
                stats[c].append(np.median(values))
    return {c: float(np.median(v)) for c, v in stats.items()}


def test_openeds_family_is_calibrated_to_real_openeds():
    """Scenario: Calibrated to real frames"""
    plan = frame_plan(24, seed=11)
    frames = [render_frame(11, index, subject, family="openeds") for _, index, subject in plan]
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


def _pupil_width(label):
    xs = np.nonzero((label == 3).any(axis=0))[0]
    return int(xs.max() - xs.min() + 1) if xs.size else 0


@pytest.fixture(scope="module")
def family_frames():
    """24 frames of each family (3 subjects x 8 frames), seed 7."""
    return {family: [render_frame(7, 1000 * k + i, 100 * k + i // 8, family=family) for i in range(24)] for k, family in enumerate(FAMILIES)}


def test_each_family_has_its_documented_framing(family_frames):
    """Scenario: Camera families"""
    expected = {"openeds": (20, 110), "closeup": (50, 200), "offaxis": (14, 70), "face": (8, 22)}  # pupil across, px (module docstring)
    for family, frames in family_frames.items():
        widths = [_pupil_width(label) for _, label in frames if (label == 3).sum() > 20]
        assert len(widths) >= 12, family
        low, high = expected[family]
        assert low * 0.7 <= np.median(widths) <= high * 1.15, (family, np.median(widths))
    # iris radius (module docstring), drawn per subject across the whole documented range
    iris = {"openeds": (80, 125), "closeup": (130, 230), "offaxis": (30, 80), "face": (12, 30)}
    for family, (low, high) in iris.items():
        radii = [subject_traits(7, subject, family).iris_radius for subject in range(300)]
        assert low <= min(radii) < low * 1.1 and high * 0.9 < max(radii) <= high, (family, min(radii), max(radii))
    # face cameras: small pupils off-centre; some frames are portrait/square sensors letterboxed top-left
    face = family_frames["face"]
    centres = [np.argwhere(label == 3).mean(axis=0) for _, label in face if (label == 3).any()]
    assert np.std([c[1] for c in centres]) > 60
    letterboxed = [subject_traits(7, 300 + s, "face").content_shape != (400, 640) for s in range(3)] + \
                  [subject_traits(7, 200 + s, "offaxis").content_shape != (400, 640) for s in range(3)]
    assert any(letterboxed)


def test_letterboxed_frames_have_no_label_in_the_padding():
    """Scenario: Camera families"""
    for subject in range(200):
        traits = subject_traits(3, subject)
        if traits.content_shape != (400, 640):
            break
    image, label = render_frame(3, 5, subject)
    h, w = traits.content_shape
    assert not label[h:, :].any() and not label[:, w:].any()
    if traits.pad_mode == "replicate" and w < 640:
        assert np.array_equal(image[:h, w:], np.repeat(image[:h, w - 1 : w], 640 - w, axis=1))


def test_photometry_spans_the_documented_ranges(family_frames):
    """Scenario: Photometric breadth"""
    frames = [frame for family in ("closeup", "offaxis", "face") for frame in family_frames[family]]
    frames += [render_frame(9, i, 500 + i) for i in range(60)]  # one frame per subject: many appearances
    pupil, iris = [], []
    for image, label in frames:
        if (label == 3).sum() > 30 and (label == 2).sum() > 30:
            pupil.append(np.median(image[label == 3]))
            iris.append(np.median(image[label == 2]))
    pupil, delta = np.array(pupil), np.array(iris) - np.array(pupil)
    assert pupil.min() < 25 and pupil.max() > 80  # near black to mid-gray
    assert np.percentile(delta, 10) < 12 and delta.max() > 50  # iris barely above the pupil up to bright


def test_washed_out_frames_lift_the_pupil_to_mid_gray(monkeypatch):
    """Scenario: Washed-out frames"""
    def pupil_medians() -> np.ndarray:
        medians = []
        for i in range(36):
            image, label = render_frame(11, i, 700 + i, family=("closeup", "offaxis", "face")[i % 3])
            if (label == 3).sum() > 30:
                medians.append(np.median(image[label == 3]))
        return np.array(medians)

    monkeypatch.setattr(synthetic, "VEIL_P", 0.0)
    plain = pupil_medians()
    monkeypatch.setattr(synthetic, "VEIL_P", 1.0)
    washed = pupil_medians()
    assert washed.min() >= synthetic.VEIL_LIFT[0] - 5 > plain.min()  # the least lift, less what noise, resampling and JPEG after it move
    assert np.median(washed) > np.median(plain) + 20 and (washed > 100).sum() > (plain > 100).sum()
    openeds = render_frame(11, 0, 0, family="openeds")[0]
    monkeypatch.setattr(synthetic, "VEIL_P", 0.0)
    assert np.array_equal(render_frame(11, 0, 0, family="openeds")[0], openeds)  # OpenEDS-like frames never are


def test_glints_inside_the_pupil_stay_labelled_pupil():
    """Scenario: Photometric breadth"""
    covered = 0
    for i in range(80):
        image, label = render_frame(4, i, i // 2, family="openeds")
        pupil = label == 3
        covered += int(((image >= 200) & pupil).sum() > 0)
    assert covered >= 5  # a glint on the pupil is not a hole in the label


def test_dark_distractors_outside_the_pupil(family_frames):
    """Scenario: Dark distractors"""
    darker_elsewhere = 0
    frames = [frame for family in ("offaxis", "face") for frame in family_frames[family]]
    for image, label in frames:
        pupil = label == 3
        if pupil.sum() < 20:
            continue
        level = np.percentile(image[pupil], 50)
        outside = (~pupil) & (label != 2)
        darker_elsewhere += int((image[outside] < level).sum() > pupil.sum())
    assert darker_elsewhere >= len(frames) // 4  # "the darkest region" is not the answer


def test_some_frames_have_closed_eyes(raw_dir):
    """Scenario: Closed eyes exercise empty-mask skipping"""
    empty = [p for p in raw_dir.rglob("*.npy") if not (np.load(p) == 3).any()]
    assert 1 <= len(empty) <= 6


def test_contact_sheet(tmp_path, family_frames):
    """Scenario: Contact sheet"""
    rows = []
    for family, frames in family_frames.items():
        tiles = []
        for image, label in frames[::4][:6]:
            tile = outline(image, [(label == 3, LABEL_COLOR)])
            # the outline is drawn exactly on the pupil label's border
            drawn = np.all(tile == LABEL_COLOR, axis=2)
            assert drawn.any() == (label == 3).any()
            assert not (drawn & (cv2.erode((label == 3).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)).any()
            tiles.append(cv2.resize(tile, (320, 200), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    out = Path(os.environ.get("VISIONASSIST_CONTACT_SHEET", tmp_path / "contact_sheet.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(out), sheet)
    assert cv2.imread(str(out)).shape == (200 * len(FAMILIES), 1920, 3)


def test_pupillary_zone_and_rim_glints(monkeypatch):
    """Scenario: Pupillary zone and rim glints"""
    import cv2

    def render(zone: float, rim: float) -> list[tuple[np.ndarray, np.ndarray]]:
        monkeypatch.setattr(synthetic, "PUPILLARY_ZONE_P", zone)
        monkeypatch.setattr(synthetic, "RIM_GLINT_P", rim)
        return [render_frame(9, i, 300 + i, family=("closeup", "offaxis")[i % 2]) for i in range(24)]

    def profile(image: np.ndarray, label: np.ndarray) -> tuple[float, float] | None:
        """(iris just outside the pupil - iris further out, brightest pixel just outside the pupil - the iris there)"""
        pupil = (label == 3).astype(np.uint8)
        if pupil.sum() < 200:
            return None
        radius = np.sqrt(pupil.sum() / np.pi)
        distance = cv2.distanceTransform(1 - pupil, cv2.DIST_L2, 3)
        iris = label == 2
        near, far = iris & (distance >= 1) & (distance <= max(2.0, 0.15 * radius)), iris & (distance >= 0.6 * radius) & (distance <= 1.0 * radius)
        ring = iris & (distance >= 1) & (distance <= 0.6 * radius)
        if near.sum() < 20 or far.sum() < 20:
            return None
        return float(np.median(image[far]) - np.median(image[near])), float(image[ring].max() - np.median(image[ring]))

    plain, added = render(0.0, 0.0), render(1.0, 1.0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(plain, added))  # the label is the pupil either way
    pairs = [(profile(*a), profile(*b)) for a, b in zip(plain, added)]
    pairs = [(a, b) for a, b in pairs if a and b]
    assert len(pairs) >= 8
    darker = np.array([b[0] - a[0] for a, b in pairs])
    brighter = np.array([b[1] - a[1] for a, b in pairs])
    assert np.median(darker) > 1 and (darker > 0).mean() > 0.7  # the iris next to the pupil is darker than further out
    assert (brighter > 0).mean() > 0.8 and (brighter > 20).mean() >= 0.25  # bright glints just outside the labelled pupil
    openeds = render_frame(9, 0, 0, family="openeds")[0]
    render(0.0, 0.0)
    assert np.array_equal(render_frame(9, 0, 0, family="openeds")[0], openeds)  # OpenEDS-like frames never get them
