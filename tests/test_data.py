"""Dataset loading: every source, compact dtypes, runtime preprocessing and synchronized augmentation."""

import dataclasses

import numpy as np
import pytest
import torch

from training import preprocess
from training.data import AugmentConfig, TrainingDataset, augment, open_split, resolve_source


def test_every_source_kind_gives_the_same_sample(precomputed):
    """Scenario: Dataset sources"""
    from_output = open_split(str(precomputed), "validation")
    from_dataset_dir = open_split(str(precomputed / "dataset"), "validation")
    assert resolve_source(str(precomputed / "train" / "..")) == ("parquet", precomputed / "train" / ".." / "dataset")
    sample = from_output[0]
    assert from_dataset_dir[0]["filename"] == sample["filename"]
    # a raw folder (no dataset/ beside it) is preprocessed at load time with the same functions
    import shutil, tempfile
    from pathlib import Path

    raw_only = Path(tempfile.mkdtemp())
    shutil.copytree(precomputed / "validation", raw_only / "validation")
    raw = open_split(str(raw_only), "validation")
    assert resolve_source(str(raw_only))[0] == "raw"
    raw_sample = next(raw[i] for i in range(len(raw)) if raw[i]["filename"] == sample["filename"])
    for key in ("image", "label", "spatial_weights", "dist_map"):
        assert np.array_equal(raw_sample[key], sample[key]), key
    assert len(raw) == len(from_output)  # empty-pupil frames are skipped at load time too


def test_unknown_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a precompute output"):
        open_split(str(tmp_path), "train")


def test_tensors_keep_compact_dtypes(precomputed):
    """Scenario: Compact tensors"""
    dataset = TrainingDataset(open_split(str(precomputed), "train"))
    item = dataset[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (1, 400, 640)
    assert item["label"].dtype == torch.uint8 and item["label"].shape == (400, 640)
    assert item["spatial_weights"].dtype == torch.float32 and item["dist_map"].shape == (2, 400, 640)
    assert item["ellipse"].shape == (4,)


def test_unpreprocessed_rows_get_gamma_and_clahe_at_load_time(precomputed):
    """Scenario: Dataset sources"""
    from training.data import finish_sample

    raw_image = np.random.default_rng(0).integers(0, 255, (400, 640), dtype=np.uint8)
    done = finish_sample({"image": raw_image, "preprocessed": False})
    assert np.array_equal(done["image"], preprocess.preprocess_image(raw_image)) and done["preprocessed"]
    kept = finish_sample({"image": raw_image, "preprocessed": True})
    assert kept["image"] is raw_image


def test_flipped_sample_targets_equal_recomputation_from_the_flipped_label(precomputed):
    """Scenario: Augmentation keeps targets in sync"""
    sample = open_split(str(precomputed), "validation")[0]
    flip_only = AugmentConfig.only(flip_p=1.0)
    flipped = augment(sample, np.random.default_rng(0), flip_only)
    assert np.array_equal(flipped["image"], sample["image"][:, ::-1])
    assert np.array_equal(flipped["label"], sample["label"][:, ::-1])
    expected = preprocess.label_targets(sample["label"][:, ::-1])
    assert np.array_equal(flipped["dist_map"], expected["dist_map"])
    assert np.array_equal(flipped["spatial_weights"], expected["spatial_weights"])
    assert flipped["cx"] == expected["cx"]
    # and the maps really moved: mirrored, not copied
    assert np.allclose(flipped["dist_map"], sample["dist_map"][:, :, ::-1], atol=1e-6)
    assert flipped["cx"] == pytest.approx((639 / 640) - sample["cx"], abs=2e-3)


def test_affine_augmentation_keeps_every_target_consistent(precomputed):
    """Scenario: Augmentation keeps targets in sync"""
    sample = open_split(str(precomputed), "train")[1]
    affine_only = AugmentConfig.only(affine_p=1.0)
    # the first seed whose warp keeps the pupil in the frame (wide zooms and shifts can move it out)
    out = next(o for seed in range(50) if (o := augment(sample, np.random.default_rng(seed), affine_only))["label"].any())
    assert not np.array_equal(out["label"], sample["label"])
    expected = preprocess.label_targets(out["label"])
    for key in ("dist_map", "spatial_weights"):
        assert np.array_equal(out[key], expected[key])
    assert out["cx"] == expected["cx"] and out["ry"] == expected["ry"]
    # the image moved with the label: the pupil's gray level under the new label is the one under the old label
    assert abs(float(out["image"][out["label"] == 1].mean()) - float(sample["image"][sample["label"] == 1].mean())) < 6


def test_augmentation_is_deterministic_per_seed_epoch_and_index(precomputed):
    """Scenario: Augmentation keeps targets in sync"""
    source = open_split(str(precomputed), "train")
    a = TrainingDataset(source, AugmentConfig(), seed=1)
    b = TrainingDataset(source, AugmentConfig(), seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a[2]["image"], b[2]["image"])
    b.set_epoch(4)
    assert any(not torch.equal(a[i]["image"], b[i]["image"]) for i in range(4))


def test_zoom_out_pads_like_a_letterbox_and_keeps_targets_in_sync(precomputed):
    """Scenario: Sim-to-real augmentation"""
    sample = open_split(str(precomputed), "train")[1]
    zoom_out = dataclasses.replace(AugmentConfig.only(affine_p=1.0), scale_range=(0.3, 0.31), max_rotation=0.0, max_shift=0.0)
    out = augment(sample, np.random.default_rng(5), zoom_out)
    shrink = out["label"].sum() / sample["label"].sum()
    assert 0.3**2 * 0.8 < shrink < 0.31**2 * 1.25  # the pupil area scales with the frame
    # two thirds of the frame is padding: no label there, and the image is flat along a padded row or column
    rows, cols = np.nonzero(out["label"])
    assert out["label"].sum() > 0 and (np.ptp(rows) < 0.31 * 400) and (np.ptp(cols) < 0.31 * 640)
    expected = preprocess.label_targets(out["label"])
    assert np.array_equal(out["dist_map"], expected["dist_map"]) and out["cx"] == expected["cx"]


def test_crops_hold_the_pupil_and_recompute_targets(precomputed):
    """Scenario: Sim-to-real augmentation"""
    source = open_split(str(precomputed), "train")
    cfg = AugmentConfig(crop=(192, 320))
    held = 0
    for index in range(12):
        out = augment(source[index], np.random.default_rng(index), cfg)
        assert out["image"].shape == out["label"].shape == (192, 320) and out["dist_map"].shape == (2, 192, 320)
        assert np.array_equal(out["spatial_weights"], preprocess.label_targets(out["label"])["spatial_weights"])
        held += int(out["label"].any())
    assert held >= 6  # most crops are placed around the pupil (crop_pupil_p 0.8)
    batch = TrainingDataset(source, cfg, seed=0)[0]
    assert tuple(batch["image"].shape) == (1, 192, 320)


def test_every_photometric_step_changes_only_the_image(precomputed):
    """Scenario: Sim-to-real augmentation"""
    sample = open_split(str(precomputed), "train")[2]
    for step in ("curve_p", "cutout_p", "lowres_p", "jpeg_p", "blur_p", "noise_p", "photometric_p"):
        out = augment(sample, np.random.default_rng(1), AugmentConfig.only(**{step: 1.0}))
        assert np.array_equal(out["label"], sample["label"]), step
        assert out["image"].dtype == np.uint8 and not np.array_equal(out["image"], sample["image"]), step
    # cutout never hides the pupil centre
    ys, xs = np.nonzero(sample["label"])
    cy, cx = int(ys.mean()), int(xs.mean())
    for seed in range(10):
        out = augment(sample, np.random.default_rng(seed), AugmentConfig.only(cutout_p=1.0))
        assert out["image"][cy, cx] == sample["image"][cy, cx]
