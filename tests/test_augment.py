"""Batched augmentation on the training device: synchronized image/label warps, analytic ellipse targets,
photometric steps that leave the label alone, and per-sample randomness that depends on (seed, epoch, index) only."""

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from training import preprocess
from training.augment import AugmentConfig, BatchAugmenter, apply, gaussian_blur, jpeg_like, sample_params
from training.data import IMAGE_AND_LABEL, TrainingDataset, open_split
from training.targets import label_targets


@pytest.fixture(scope="module")
def train_batch(precomputed):
    dataset = TrainingDataset(open_split(str(precomputed), "train", columns=IMAGE_AND_LABEL))
    items = [dataset[i] for i in range(8)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _one(batch, i):
    return {key: value[i : i + 1] for key, value in batch.items()}


@pytest.mark.parametrize("step, axis", [("flip_p", -1), ("vflip_p", -2)], ids=["left-right", "upside-down"])
def test_flip_mirrors_image_label_and_ellipse_exactly(train_batch, step, axis):
    """Scenario: Augmentation keeps targets in sync (left-right always; upside-down with --vflip)"""
    out = BatchAugmenter(AugmentConfig.only(**{step: 1.0}))(train_batch, epoch=0)
    assert torch.equal(out["image"], train_batch["image"].flip(axis))
    assert torch.equal(out["label"], train_batch["label"].flip(axis))
    for i in range(len(out["label"])):
        expected = preprocess.ellipse_columns(out["label"][i].numpy())
        assert out["ellipse"][i, 0].item() == pytest.approx(expected["cx"], abs=1e-3)
        assert out["ellipse"][i, 1].item() == pytest.approx(expected["cy"], abs=1e-3)
        assert out["angle"][i].item() == pytest.approx((180.0 - train_batch["angle"][i].item()) % 180.0, abs=1e-3)
        assert torch.equal(out["ellipse"][i, 2:], train_batch["ellipse"][i, 2:])
    if step == "vflip_p":
        half = BatchAugmenter(AugmentConfig(vflip_p=0.5), seed=5).params(train_batch, epoch=1)  # every step on, vflip 0.5
        assert 0 < sum(p.matrix is not None and p.matrix[1, 1] < 0 for p in half) < len(half)  # some upside down, not all
        # off (0, the default) it draws nothing: a probability too small to ever flip still takes a draw, which shifts
        # every later draw; were 0 drawing too, the two would match
        off, tiny = (BatchAugmenter(AugmentConfig(vflip_p=v), seed=5).params(train_batch, epoch=1) for v in (0.0, 1e-12))
        assert not any(p.matrix is not None and p.matrix[1, 1] < 0 for p in off + tiny)
        assert any((a.matrix is None) != (b.matrix is None) or (a.matrix is not None and not np.allclose(a.matrix, b.matrix)) or a.blur_sigma != b.blur_sigma
                   for a, b in zip(off, tiny))


def test_affine_warp_matches_opencv_and_moves_every_target(train_batch):
    """Scenario: Augmentation keeps targets in sync"""
    cfg = AugmentConfig.only(affine_p=1.0)
    augmenter = BatchAugmenter(cfg, seed=3)
    out = augmenter(train_batch, epoch=0)
    params = augmenter.params(train_batch, epoch=0)
    checked = 0
    for i, p in enumerate(params):
        image, label = train_batch["image"][i, 0].numpy(), train_batch["label"][i].numpy()
        assert p.matrix is not None
        if p.pad_mode != "border" or p.scale < 0.7:  # cv2's replicate border and no low-pass: the like-for-like case
            continue
        expected_label = cv2.warpAffine(label, p.matrix, (640, 400), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        expected_image = cv2.warpAffine(image, p.matrix, (640, 400), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert (out["label"][i].numpy() != expected_label).mean() < 0.002
        assert np.abs(out["image"][i, 0].numpy().astype(int) - expected_image).mean() < 1.0
        if expected_label.any():  # the ellipse moved analytically with the warp
            fitted = preprocess.ellipse_columns(out["label"][i].numpy())
            assert abs(out["ellipse"][i, 0].item() - fitted["cx"]) * 640 < 2.0 and abs(out["ellipse"][i, 1].item() - fitted["cy"]) * 400 < 2.0
            ours = sorted([out["ellipse"][i, 2].item() * 640, out["ellipse"][i, 3].item() * 400])
            theirs = sorted([fitted["rx"] * 640, fitted["ry"] * 400])
            assert ours == pytest.approx(theirs, rel=0.15, abs=1.0)
        else:
            assert torch.isnan(out["ellipse"][i]).all()
        checked += 1
    assert checked >= 2


def test_randomness_depends_on_seed_epoch_and_index_only(train_batch):
    """Scenario: Augmentation keeps targets in sync (any worker/rank layout sees the same samples)"""
    augmenter = BatchAugmenter(AugmentConfig(), seed=1)
    whole = augmenter(train_batch, epoch=3)
    reordered = {key: value.flip(0) for key, value in train_batch.items()}
    out = augmenter(reordered, epoch=3)
    for i in range(8):  # the same sample in another batch position, or alone, comes out the same
        assert torch.equal(out["image"][7 - i], whole["image"][i]) and torch.equal(out["label"][7 - i], whole["label"][i])
    alone = augmenter(_one(train_batch, 5), epoch=3)
    assert torch.equal(alone["image"][0], whole["image"][5])
    other_epoch = augmenter(train_batch, epoch=4)
    assert any(not torch.equal(other_epoch["image"][i], whole["image"][i]) for i in range(8))


def test_zoom_out_pads_like_a_letterbox(train_batch):
    """Scenario: Sim-to-real augmentation"""
    cfg = dataclasses.replace(AugmentConfig.only(affine_p=1.0), scale_range=(0.3, 0.31), max_rotation=0.0, max_shift=0.0)
    out = BatchAugmenter(cfg, seed=5)(train_batch, epoch=0)
    for i in range(8):
        before, after = train_batch["label"][i].sum().item(), out["label"][i].sum().item()
        if before > 200:
            assert 0.3**2 * 0.8 < after / before < 0.31**2 * 1.25  # the pupil area scales with the frame
        rows, cols = np.nonzero(out["label"][i].numpy())
        assert rows.size == 0 or (np.ptp(rows) < 0.31 * 400 and np.ptp(cols) < 0.31 * 640)


def test_crops_hold_the_pupil(train_batch):
    """Scenario: Sim-to-real augmentation"""
    out = BatchAugmenter(AugmentConfig(crop=(192, 320)), seed=0)(train_batch, epoch=0)
    assert out["image"].shape == (8, 1, 192, 320) and out["label"].shape == (8, 192, 320)
    assert sum(int(out["label"][i].any()) for i in range(8)) >= 5  # most crops are placed around the pupil (0.8)
    maps = label_targets(out["label"])
    assert maps["dist_map"].shape == (8, 2, 192, 320)


def test_every_photometric_step_changes_only_the_image(train_batch):
    """Scenario: Sim-to-real augmentation"""
    for step in ("photometric_p", "curve_p", "cutout_p", "blur_p", "lowres_p", "noise_p", "jpeg_p"):
        out = BatchAugmenter(AugmentConfig.only(**{step: 1.0}), seed=1)(train_batch, epoch=0)
        assert torch.equal(out["label"], train_batch["label"]), step
        assert out["image"].dtype == torch.uint8 and out["image"].shape == train_batch["image"].shape, step
        assert all(not torch.equal(out["image"][i], train_batch["image"][i]) for i in range(8)), step


def test_cutout_never_hides_the_pupil_centre(train_batch):
    """Scenario: Sim-to-real augmentation"""
    for seed in range(6):
        out = BatchAugmenter(AugmentConfig.only(cutout_p=1.0), seed=seed)(train_batch, epoch=0)
        for i in range(8):
            ys, xs = np.nonzero(train_batch["label"][i].numpy())
            if xs.size:
                cy, cx = int(round(ys.mean())), int(round(xs.mean()))
                assert out["image"][i, 0, cy, cx] == train_batch["image"][i, 0, cy, cx]


def test_device_blur_and_jpeg_match_opencv():
    """The on-device blur is cv2.GaussianBlur; the JPEG step is JPEG's own lossy step (DCT quantization)."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (96, 128)).astype(np.uint8), (0, 0), 2.0)
    image = cv2.addWeighted(image, 1.0, (rng.random((96, 128)) * 40).astype(np.uint8), 1.0, 0)
    tensor = torch.from_numpy(image).float()[None]
    blurred = gaussian_blur(tensor, [1.5])[0].numpy()
    assert np.abs(blurred - cv2.GaussianBlur(image, (0, 0), 1.5).astype(np.float32)).max() < 1.01
    for quality in (15, 50, 80):
        ours = jpeg_like(tensor, [quality])[0].numpy()
        theirs = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE).astype(np.float32)
        assert np.abs(ours - theirs).mean() < 1.0, quality  # cv2 differs only by its integer DCT and rounding
        assert np.abs(ours - image).mean() > 0.5, quality  # and it is lossy


def test_parameters_are_host_numbers_drawn_per_sample():
    cfg = AugmentConfig()
    a = sample_params(np.random.default_rng([0, 1, 2]), cfg, (400, 640), (400, 640), (320.0, 200.0))
    b = sample_params(np.random.default_rng([0, 1, 2]), cfg, (400, 640), (400, 640), (320.0, 200.0))
    assert (a.matrix is None and b.matrix is None) or np.array_equal(a.matrix, b.matrix)
    assert a.noise == b.noise and a.jpeg_quality == b.jpeg_quality and a.cutouts == b.cutouts
    assert math.isfinite(a.scale)


def test_noise_is_seeded_per_sample(train_batch):
    cfg = AugmentConfig.only(noise_p=1.0)
    params = BatchAugmenter(cfg, seed=2).params(train_batch, epoch=0)
    first, second = apply(train_batch, params), apply(train_batch, params)
    assert torch.equal(first["image"], second["image"])
