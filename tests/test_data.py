"""Dataset loading: every source, compact dtypes, runtime preprocessing; what the loader decodes for training."""

import numpy as np
import pytest
import torch

from training import preprocess
from training.data import IMAGE_AND_LABEL, DecodedSplit, RawSplit, TrainingDataset, describe_split, open_split, resolve_source


def test_every_source_kind_gives_the_same_sample(precomputed):
    """Scenario: Dataset sources"""
    from_output = open_split(str(precomputed), "validation")
    from_dataset_dir = open_split(str(precomputed / "dataset"), "validation")
    assert resolve_source(str(precomputed / "train" / "..")) == ("parquet", precomputed / "train" / ".." / "dataset")
    sample = from_output[0]
    assert from_dataset_dir[0]["filename"] == sample["filename"]
    # a raw folder (no dataset/ beside it) is preprocessed at load time with the same functions
    import shutil
    import tempfile
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
    item = dataset[3]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (1, 400, 640)
    assert item["label"].dtype == torch.uint8 and item["label"].shape == (400, 640)
    assert item["spatial_weights"].dtype == torch.float32 and item["dist_map"].shape == (2, 400, 640)
    assert item["ellipse"].shape == (4,) and int(item["index"]) == 3


def test_training_split_decodes_image_and_label_only(precomputed, raw_dir):
    """Scenario: Augmentation and targets on the training device"""
    for source in (open_split(str(precomputed), "train", columns=IMAGE_AND_LABEL), RawSplit(raw_dir, "train", IMAGE_AND_LABEL)):
        item = TrainingDataset(source)[0]
        assert "dist_map" not in item and "spatial_weights" not in item
        assert item["image"].dtype == torch.uint8 and torch.isfinite(item["ellipse"]).all()


def test_unpreprocessed_rows_get_gamma_and_clahe_at_load_time(precomputed):
    """Scenario: Dataset sources"""
    from training.data import finish_sample

    raw_image = np.random.default_rng(0).integers(0, 255, (400, 640), dtype=np.uint8)
    done = finish_sample({"image": raw_image, "preprocessed": False})
    assert np.array_equal(done["image"], preprocess.preprocess_image(raw_image)) and done["preprocessed"]
    kept = finish_sample({"image": raw_image, "preprocessed": True})
    assert kept["image"] is raw_image


def test_scoring_and_training_list_the_same_raw_frames_but_for_empty_pupils(raw_dir, tmp_path):
    """Scenario: Dataset sources (one listing; scoring keeps the frames that training skips)"""
    import shutil

    from training.data import iter_frames

    shutil.copytree(raw_dir / "train", tmp_path / "train")  # a raw folder only (no precompute output beside it)
    training = {path.name for path, _ in RawSplit(tmp_path, "train").items}
    scored = {frame.name: frame for frame in iter_frames(tmp_path, "train")}
    assert training < set(scored)
    assert all(not scored[name].mask.any() for name in set(scored) - training)  # only the closed-eye frames differ


class _Failing(torch.utils.data.Dataset):
    def __init__(self, source, fail_at):
        self.source, self.fail_at = source, fail_at

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        if index >= self.fail_at:
            raise RuntimeError("source read failed")
        return self.source[index]


def test_decoded_cache_holds_the_sources_rows_and_is_reused(precomputed, tmp_path):
    """Scenario: Decoded training rows"""
    source = open_split(str(precomputed), "train", columns=IMAGE_AND_LABEL)
    with pytest.raises(RuntimeError, match="source read failed"):  # an interrupted build leaves nothing behind
        DecodedSplit(_Failing(source, 3), tmp_path, "key")
    assert list(tmp_path.iterdir()) == []
    cached = DecodedSplit(source, tmp_path, "key")
    assert len(cached) == len(source) and [p.name for p in tmp_path.iterdir()] == [f"key-{len(source)}"]
    loader = torch.utils.data.DataLoader(TrainingDataset(cached), batch_size=4, num_workers=2)  # workers map it themselves
    for batch, start in zip(loader, range(0, len(source), 4)):
        for offset in range(len(batch["index"])):
            expected = TrainingDataset(source)[start + offset]
            for name, tensor in expected.items():
                assert torch.equal(batch[name][offset], tensor) or (tensor.isnan().all() and batch[name][offset].isnan().all()), name
    again = DecodedSplit(_Failing(source, 0), tmp_path, "key")  # reused: the source is not read again
    assert torch.equal(TrainingDataset(again)[5]["image"], TrainingDataset(source)[5]["image"])
    assert len(DecodedSplit(source, tmp_path, "key", length=3)) == 3 and (tmp_path / "key-3").is_dir()


def test_decoded_cache_is_rebuilt_when_a_raw_label_changes(raw_dir, tmp_path):
    """Scenario: Decoded training rows"""
    import shutil

    shutil.copytree(raw_dir / "train", tmp_path / "raw" / "train")
    source = RawSplit(tmp_path / "raw", "train", IMAGE_AND_LABEL)
    key = describe_split(str(tmp_path / "raw"), "train", source)["digest"]
    first = DecodedSplit(source, tmp_path / "cache", key)
    label_path = source.items[0][1]
    label = np.load(label_path)
    label[label == preprocess.PUPIL_CLASS] = 2  # relabelled: same shape, same .npy size
    label[190:210, 310:330] = preprocess.PUPIL_CLASS
    np.save(label_path, label)
    source = RawSplit(tmp_path / "raw", "train", IMAGE_AND_LABEL)
    second = DecodedSplit(source, tmp_path / "cache", describe_split(str(tmp_path / "raw"), "train", source)["digest"])
    assert second.path != first.path
    assert int(TrainingDataset(second)[0]["label"].sum()) == 400 and TrainingDataset(first)[0]["label"].sum() != 400
