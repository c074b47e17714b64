"""Your own frames (images/ + masks/, any size) wherever training reads data; model-assisted labelling
(predict --save-masks); visionassist-finetune end to end and its bad inputs."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import run_python
from training import precompute, preprocess
from training.data import FramesSplit, ParquetSplit, grouped_split, open_split, person_of, resolve_source
from training.synthetic import render_frame


def _write_frames(folder: Path, people: int, per_person: int, size=(150, 200), seed: int = 3) -> Path:
    """Synthetic frames cut to `size` (h, w) around the pupil, as a camera that is not 640x400 would give them."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    h, w = size
    index = 0
    for person in range(people):
        written = 0
        while written < per_person:
            image, label = render_frame(seed, index, 100 + person, "closeup" if person % 2 else "offaxis")
            index += 1
            mask = (label == 3).astype(np.uint8) * 255
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            y0, x0 = int(np.clip(ys.mean() - h / 2, 0, 400 - h)), int(np.clip(xs.mean() - w / 2, 0, 640 - w))
            name = f"person{person}_{written:04d}.png"
            cv2.imwrite(str(folder / "images" / name), image[y0 : y0 + h, x0 : x0 + w])
            cv2.imwrite(str(folder / "masks" / name), mask[y0 : y0 + h, x0 : x0 + w])
            written += 1
    return folder


@pytest.fixture(scope="module")
def own_frames(tmp_path_factory) -> Path:
    return _write_frames(tmp_path_factory.mktemp("own") / "frames", people=5, per_person=4)


def test_own_frames_are_rows_exactly_as_precompute_writes_them(own_frames, tmp_path):
    """Scenario: Training reads your own frames"""
    assert resolve_source(str(own_frames)) == ("frames", own_frames)
    train, validation = open_split(str(own_frames), "train"), open_split(str(own_frames), "validation")
    assert len(train) + len(validation) == 20 and len(validation) == 4  # a fifth of five people: one person
    assert train[0]["image"].shape == (400, 640) and train[0]["label"].shape == (400, 640) and train[0]["preprocessed"]
    copy = tmp_path / "frames"
    shutil.copytree(own_frames, copy)
    assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(copy), "--workers", "1"]) == 0
    for split, rows in (("train", train), ("validation", validation)):
        stored = ParquetSplit(copy / "dataset" / split)
        by_name = {row["filename"]: row for row in (stored.read_row(i) for i in range(len(stored)))}
        assert sorted(by_name) == sorted(rows[i]["filename"] for i in range(len(rows)))
        for i in range(len(rows)):
            row = rows[i]
            for column in ("image", "label", "spatial_weights", "dist_map", "cx", "cy", "rx", "ry", "angle", "subject"):
                assert np.array_equal(np.asarray(row[column]), np.asarray(by_name[row["filename"]][column]), equal_nan=column != "subject"), column
    # the same pupil as the frame's own mask, letterboxed as evaluate maps predictions back
    image = cv2.imread(str(own_frames / "images" / "person0_0000.png"), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(own_frames / "masks" / "person0_0000.png"), cv2.IMREAD_GRAYSCALE)
    row = preprocess.frame_sample(image, mask)
    box = preprocess.letterbox(image)[1]
    back = preprocess.unletterbox(row["label"].astype(np.float32), box) > 0.5
    assert (back == (mask > 0)).mean() > 0.99 and not row["label"][300:].any()  # nothing in the padding


def test_validation_keeps_each_person_on_one_side():
    """Scenario: Grouped validation split"""
    names = [f"{person}_{k:03d}.png" for person in ("ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ida", "jo") for k in range(6)]
    sides = grouped_split(names, seed=0)
    for person in {person_of(n) for n in names}:
        assert len({sides[n] for n in names if person_of(n) == person}) == 1, person
    held = {person_of(n) for n in names if sides[n] == "validation"}
    assert len(held) == 2 and grouped_split(names, seed=0) == sides and grouped_split(names, seed=1) != sides
    assert person_of("alice_0001.png") == "alice" and person_of("eye631.png") == "eye631"
    one = grouped_split([f"solo_{k}.png" for k in range(10)])  # one person: a fifth of the frames instead
    assert sum(side == "validation" for side in one.values()) == 2


def test_bad_own_frames_are_named_counted_and_skipped(own_frames, tmp_path, caplog):
    """Scenario: Training reads your own frames"""
    folder = tmp_path / "bad"
    shutil.copytree(own_frames, folder)
    (folder / "masks" / "person1_0000.png").unlink()
    cv2.imwrite(str(folder / "masks" / "person1_0001.png"), np.zeros((10, 10), np.uint8))
    (folder / "images" / "person1_0002.png").write_bytes(b"not a png")
    cv2.imwrite(str(folder / "masks" / "person1_0003.png"), np.zeros((150, 200), np.uint8))  # no pupil: left out like precompute
    frames = FramesSplit(folder, "all")
    assert len(frames) == 16 and len(frames.bad) == 3 and frames.empty == 1
    text = "\n".join(frames.bad)
    assert "person1_0000.png: missing or unreadable mask" in text and "mask shape (10, 10) does not match" in text and "person1_0002.png: not a readable image" in text
    assert "person1_0001" in caplog.text


def test_predict_save_masks_writes_drafts_and_keeps_corrections(own_frames, tmp_path):
    """Scenario: Model-assisted labelling"""
    folder = tmp_path / "recorded"
    shutil.copytree(own_frames / "images", folder / "images")
    corrected = np.zeros((150, 200), np.uint8)
    corrected[60:90, 80:120] = 255
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "masks" / "person0_0000.png"), corrected)  # a mask the user already corrected
    result = run_python(["-m", "training.predict", "--model", "pretrained", str(folder), "--save-masks", "--output-dir", str(tmp_path / "pred")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "19 written" in result.stdout and "1 already there and kept" in result.stdout
    masks = sorted(p.name for p in (folder / "masks").glob("*.png"))
    assert masks == sorted(p.name for p in (folder / "images").glob("*.png"))
    assert np.array_equal(cv2.imread(str(folder / "masks" / "person0_0000.png"), cv2.IMREAD_GRAYSCALE), corrected)
    draft = cv2.imread(str(folder / "masks" / "person0_0001.png"), cv2.IMREAD_GRAYSCALE)
    assert draft.shape == (150, 200) and set(np.unique(draft)) <= {0, 255} and draft.any()  # the frame's size, ready to edit
    assert len(FramesSplit(folder, "all")) >= 15  # the drafts are a training folder as they are
    result = run_python(["-m", "training.predict", "--model", "pretrained", str(folder / "images" / "person0_0000.png"), "--save-masks", "--overwrite-masks",
                         "--output-dir", str(tmp_path / "pred2")])
    assert result.returncode == 0 and "1 written" in result.stdout
    assert not np.array_equal(cv2.imread(str(folder / "masks" / "person0_0000.png"), cv2.IMREAD_GRAYSCALE), corrected)


@pytest.mark.slow
@pytest.mark.e2e
def test_finetune_end_to_end_on_frames_of_another_size(own_frames, tmp_path):
    """Scenario: Fine-tune on your own frames"""
    out = tmp_path / "ft"
    result = run_python(["-m", "training.finetune", "--data", str(own_frames), "--output-dir", str(out), "--epochs", "2"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "before -> after" in result.stdout and "pupil IoU (mean)" in result.stdout and str(out / "finetuned.onnx") in result.stdout
    assert (out / "finetuned.onnx").stat().st_size < 300_000
    before, after = (json.loads((out / name / "report.json").read_text()) for name in ("eval_before", "eval_after"))
    assert before["frames"] == after["frames"] == 4  # the held-out person
    run = out / "runs" / "finetune"
    assert (run / "last.pt").exists() and len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "runs" / "mlflow.db").exists()
    again = run_python(["-m", "training.finetune", "--data", str(own_frames), "--output-dir", str(out), "--epochs", "3", "--resume", "auto"], timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3  # continued, not restarted


@pytest.mark.parametrize("case", ["no-masks", "empty", "other-size", "missing"])
def test_finetune_refuses_wrong_inputs_with_one_line(own_frames, tmp_path, case):
    """Scenario: Fine-tune on your own frames"""
    folder = tmp_path / "in"
    if case == "no-masks":
        shutil.copytree(own_frames / "images", folder / "images")
    elif case == "empty":
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
    elif case == "other-size":
        shutil.copytree(own_frames, folder)
        for mask in (folder / "masks").glob("*.png"):
            cv2.imwrite(str(mask), np.zeros((20, 20), np.uint8))
    result = run_python(["-m", "training.finetune", "--data", str(folder), "--output-dir", str(tmp_path / "out")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error) == 1 and error[0].startswith("error:") and str(folder) in error[0], error
    expected = {"no-masks": "no masks/ folder", "empty": "no images", "other-size": "does not match the image", "missing": "no such folder"}[case]
    assert expected in error[0], error
