"""Dataset loading: every source, compact dtypes, runtime preprocessing and synchronized augmentation."""

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
    flip_only = AugmentConfig(flip_p=1.0, affine_p=0.0, photometric_p=0.0, blur_p=0.0, noise_p=0.0)
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
    affine_only = AugmentConfig(flip_p=0.0, affine_p=1.0, photometric_p=0.0, blur_p=0.0, noise_p=0.0)
    out = augment(sample, np.random.default_rng(3), affine_only)
    assert not np.array_equal(out["label"], sample["label"])
    expected = preprocess.label_targets(out["label"])
    for key in ("dist_map", "spatial_weights"):
        assert np.array_equal(out[key], expected[key])
    assert out["cx"] == expected["cx"] and out["ry"] == expected["ry"]
    # the image moved with the label: the pupil is still the darkest region under the new label
    assert out["image"][out["label"] == 1].mean() < out["image"][out["label"] == 0].mean() - 10


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
