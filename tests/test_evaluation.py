"""evaluate, predict and quantize on synthetic data, with the shipped pretrained model (training/weights/: trained by
this project on its own synthetic frames, never on real ones)."""

import csv
import json

import cv2
import numpy as np
import pytest

from tests.conftest import run_python
from training import preprocess
from training.models import pretrained_onnx_path

FIXTURE_MODEL = pretrained_onnx_path()


@pytest.fixture(scope="session")
def image_mask_folder(openeds_precomputed, tmp_path_factory):
    """A plain images/ + masks/ folder (pupil = 255) at another size than the model input (480x640 -> letterbox)."""
    folder = tmp_path_factory.mktemp("plain")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    raw_dir = openeds_precomputed
    for image_path in sorted((raw_dir / "validation" / "images").glob("*.png"))[:4]:
        image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
        label = np.load(raw_dir / "validation" / "labels" / f"{image_path.stem}.npy")
        pad = lambda a: cv2.copyMakeBorder(a, 40, 40, 0, 0, cv2.BORDER_REPLICATE)  # 400x640 -> 480x640
        cv2.imwrite(str(folder / "images" / image_path.name), pad(image))
        cv2.imwrite(str(folder / "masks" / image_path.name), pad((label == 3).astype(np.uint8) * 255))
    return folder


def test_evaluate_writes_the_full_report(openeds_precomputed, tmp_path):
    """Scenario: Evaluate a model on a split"""
    from training.evaluate import evaluate_model

    report = evaluate_model(FIXTURE_MODEL, openeds_precomputed, tmp_path, split="validation")
    for key in ("pupil_iou_mean", "pupil_iou_median", "miou", "dice", "pixel_accuracy", "precision", "recall",
                "center_error_median", "center_error_p95", "detection_rate", "latency_ms_1_thread", "latency_ms_all_threads"):
        assert key in report, key
    assert report["frames"] == 4  # the 4 validation frames of the OpenEDS-family fixture
    assert report["pupil_iou_mean"] > 0.4  # the shipped model finds these pupils (0.68 when measured)
    assert json.loads((tmp_path / "report.json").read_text())["miou"] == pytest.approx(report["miou"])
    assert "pupil_iou_median" in (tmp_path / "report.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    assert len(rows) == 4 and {"filename", "pupil_iou", "center_error_px"} <= set(rows[0])
    assert np.mean([float(r["pupil_iou"]) for r in rows]) == pytest.approx(report["pupil_iou_mean"])
    assert report["detection_rate"] == pytest.approx(np.mean([float(r["center_error_px"]) <= 5.0 for r in rows]))
    assert cv2.imread(str(tmp_path / "confusion_matrix.png")) is not None
    assert 1 <= len(list((tmp_path / "worst").glob("*.png"))) <= 6


def test_evaluate_raw_folder_matches_precomputed(precomputed, tmp_path):
    """Scenario: Evaluate a model on a split"""
    from training.evaluate import evaluate_model

    shutil_dir = tmp_path / "raw"
    import shutil

    shutil.copytree(precomputed / "train", shutil_dir / "train")
    raw = evaluate_model(FIXTURE_MODEL, shutil_dir, tmp_path / "a", split="train", timing=False)
    pre = evaluate_model(FIXTURE_MODEL, precomputed, tmp_path / "b", split="train", timing=False)
    # the raw folder still holds the closed-eye frame: scored as an empty label
    assert raw["frames"] == pre["frames"] + 1
    assert raw["confusion_matrix"][1] == pre["confusion_matrix"][1]  # same pupil pixels, same predictions on them


def test_evaluate_letterboxes_other_sizes_and_maps_back(image_mask_folder, tmp_path, precomputed):
    """Scenario: Images of another size are letterboxed"""
    result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(image_mask_folder), "--output-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == 4 and sum(map(sum, report["confusion_matrix"])) == 4 * 480 * 640
    assert report["pupil_iou_mean"] > 0.4


def test_pupil_mask_keeps_the_strongest_region_and_fills_its_ellipse_or_hull():
    """Scenario: The predicted pupil is one convex region"""
    from training.inference import pupil_mask

    probability = np.zeros((120, 160), np.float32)
    cv2.circle(probability, (60, 60), 20, 0.9, -1)
    cv2.circle(probability, (78, 60), 6, 0.1, -1)  # a glint on the rim cuts a notch into the predicted pupil
    cv2.circle(probability, (140, 20), 5, 0.8, -1)  # a stray dark blob elsewhere
    full_disc = np.zeros((120, 160), np.uint8)
    cv2.circle(full_disc, (60, 60), 20, 1, -1)

    raw = pupil_mask(probability, "none")
    assert raw[20, 140] == 1 and raw[60, 78] == 0
    region = pupil_mask(probability, "region")
    assert region[20, 140] == 0 and region[60, 78] == 0 and np.array_equal(region, raw * (region > 0))
    hull = pupil_mask(probability, "hull")
    assert hull[20, 140] == 0 and hull[60, 78] == 1  # the notch is put back, the stray blob is gone
    assert np.all(hull >= region) and np.logical_xor(hull, full_disc).sum() < 0.05 * full_disc.sum()
    ellipse = pupil_mask(probability)  # the default
    assert ellipse[20, 140] == 0 and ellipse[60, 78] == 1  # the notch is put back, the stray blob is gone
    assert np.logical_xor(ellipse, full_disc).sum() < 0.08 * full_disc.sum()
    assert ellipse.sum() <= hull.sum()  # no outward bias beyond the hull's
    oval = np.zeros((120, 160), np.float32)
    cv2.ellipse(oval, ((80.0, 60.0), (50.0, 30.0), 30.0), 0.9, -1)
    drawn = (oval > 0.5).astype(np.uint8)
    assert np.logical_xor(pupil_mask(oval), drawn).sum() < 0.05 * drawn.sum()  # an ellipse stays that ellipse
    lidded = np.zeros((120, 160), np.float32)
    cv2.circle(lidded, (80, 60), 25, 0.9, -1)
    lidded[:45] = 0.0  # an upper lid hides the top 10 px of the pupil: the region's edge is a chord there
    whole = np.zeros((120, 160), np.uint8)
    cv2.circle(whole, (80, 60), 25, 1, -1)
    plain = np.zeros((120, 160), np.uint8)
    fit = preprocess.fit_ellipse((lidded > 0.5).astype(np.uint8))  # every contour point, the chord's too
    cv2.ellipse(plain, ((fit.cx, fit.cy), (2 * fit.rx, 2 * fit.ry), fit.angle), 1, -1)
    completed = pupil_mask(lidded)
    assert np.logical_xor(completed, whole).sum() < 0.05 * whole.sum()  # the ellipse its arc lies on: the whole pupil
    assert np.logical_xor(plain, whole).sum() > 0.15 * whole.sum()  # where the plain fit is pulled in by the chord
    dot = np.zeros((8, 8), np.float32)
    dot[3, 4] = 0.9
    assert pupil_mask(dot).sum() >= 1 and pupil_mask(dot)[3, 4] == 1  # a region too small to fit keeps its pixel
    doubt = np.zeros((120, 160), np.float32)
    cv2.circle(doubt, (120, 80), 16, 0.98, -1)  # a confident pupil: ~800 px, summed probability ~790
    doubt[10:50, 10:90] = 0.55  # a wide region of doubtful iris: 3,200 px, summed 1,760: it wins
    assert pupil_mask(doubt, "region")[30, 50] == 1 and pupil_mask(doubt, "region")[80, 120] == 0
    doubt[10:50, 10:90] = 0.0
    doubt[10:50, 10:45] = 0.51  # 1,400 px, more than the pupil's, but summed 714: the pupil wins
    assert pupil_mask(doubt, "region")[80, 120] == 1 and pupil_mask(doubt, "region")[30, 20] == 0
    assert pupil_mask(doubt)[80, 120] == 1  # and the default mask is that pupil's ellipse
    for name in ("ellipse", "region", "hull", "none"):
        assert not pupil_mask(np.zeros((8, 8), np.float32), name).any()  # no pupil stays no pupil
    with pytest.raises(ValueError, match="postprocess"):
        pupil_mask(probability, "circle")


def test_evaluate_scores_the_postprocessed_mask(image_mask_folder, tmp_path):
    """Scenario: The predicted pupil is one convex region"""
    from training.inference import ZOOM_DIAMETERS, load_predictor, predict_frame, pupil_mask

    result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(image_mask_folder), "--output-dir", str(tmp_path / "none"),
                         "--postprocess", "none", "--no-timing"])
    assert result.returncode == 0, result.stderr[-2000:]
    from training.evaluate import evaluate_model

    evaluate_model(FIXTURE_MODEL, image_mask_folder, tmp_path / "ellipse", timing=False)  # the default
    evaluate_model(FIXTURE_MODEL, image_mask_folder, tmp_path / "region", timing=False, postprocess="region")
    evaluate_model(FIXTURE_MODEL, image_mask_folder, tmp_path / "hull", timing=False, postprocess="hull")
    predictor = load_predictor(FIXTURE_MODEL, zoom=ZOOM_DIAMETERS)  # the default looks
    for name in ("ellipse", "region", "hull", "none"):
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["postprocess"] == name and f"--postprocess {name}" in (tmp_path / name / "report.md").read_text()
        for row in csv.DictReader(open(tmp_path / name / "per_image.csv")):  # each frame scored on that mask
            probability = predict_frame(predictor, cv2.imread(str(image_mask_folder / "images" / row["filename"]), cv2.IMREAD_GRAYSCALE))
            assert int(row["predicted_pixels"]) == int(pupil_mask(probability, name).sum())


def test_flips_average_the_model_over_the_frame_and_its_three_flips(image_mask_folder, tmp_path):
    """Scenario: Flip-averaged prediction"""
    from training.inference import ZOOM_DIAMETERS, Predictor, flip_averaged, load_predictor, predict_frame

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    place = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)  # a model that sees where a pixel is
    def logits(batch, bias):
        out = np.zeros((len(batch), 2, 6, 8), np.float32)
        out[:, 1] = 3 * batch[:, 0] - 1 + bias
        return out

    batch = np.random.default_rng(1).random((2, 1, 6, 8), dtype=np.float32)
    pixelwise = flip_averaged(Predictor(lambda b: logits(b, 0), 6, 8, b"", "pixelwise"))
    assert pixelwise.views == 4  # a model blind to place gives its own probability back: every flip is undone
    assert np.allclose(preprocess.pupil_probability(pixelwise.run(batch)), sigmoid(3 * batch[:, 0] - 1), atol=1e-6)
    placed = flip_averaged(Predictor(lambda b: logits(b, place), 6, 8, b"", "placed"))
    # the view flipped by f is answered with `place` on the flipped grid; flipped back, each pixel meets f(place)
    expected = np.mean([sigmoid(3 * batch[:, 0] - 1 + p) for p in (place, place[:, ::-1], place[::-1], place[::-1, ::-1])], axis=0)
    assert np.allclose(preprocess.pupil_probability(placed.run(batch)), expected, atol=1e-6)
    assert not np.allclose(expected, sigmoid(3 * batch[:, 0] - 1 + place), atol=1e-3)
    with pytest.raises(ValueError, match="already flip-averaged"):
        flip_averaged(placed)

    plain, flipped = load_predictor(FIXTURE_MODEL), load_predictor(FIXTURE_MODEL, flips=True)  # an ONNX model: one batch of 4 views
    frame = cv2.imread(str(sorted((image_mask_folder / "images").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
    batch, box = preprocess.prepare_frame(frame, plain.input_height, plain.input_width)
    each = [np.flip(preprocess.pupil_probability(plain.run(np.ascontiguousarray(np.flip(batch, axes))))[0], tuple(a - 2 for a in axes))
            for axes in ((), (3,), (2,), (2, 3))]
    assert np.allclose(predict_frame(flipped, frame), preprocess.unletterbox(np.mean(each, axis=0), box), atol=1e-5)
    mine = tmp_path / "mine" / "images"  # predict --save-masks --flips drafts the flip-averaged mask
    mine.mkdir(parents=True)
    cv2.imwrite(str(mine / "a_0001.png"), frame)
    assert run_python(["-m", "training.predict", "--model", str(FIXTURE_MODEL), str(mine), "--output-dir", str(tmp_path / "pred"), "--save-masks", "--flips"]).returncode == 0
    from training.inference import pupil_mask

    drafted = cv2.imread(str(tmp_path / "mine" / "masks" / "a_0001.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert np.array_equal(drafted, pupil_mask(predict_frame(load_predictor(FIXTURE_MODEL, flips=True, zoom=ZOOM_DIAMETERS), frame)) > 0)
    result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(image_mask_folder), "--output-dir", str(tmp_path / "flips"),
                         "--flips", "--no-timing"])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "flips" / "report.json").read_text())
    assert report["flips"] is True and "3 flips (--flips)" in (tmp_path / "flips" / "report.md").read_text()
    from training.evaluate import evaluate_model

    assert evaluate_model(FIXTURE_MODEL, image_mask_folder, tmp_path / "plain", timing=False)["flips"] is False


def test_flip_averaged_onnx_file_computes_what_flips_scores(tmp_path):
    """Scenario: Flip-averaged prediction in one ONNX file"""
    import torch

    from training.export import MAX_ONNX_BYTES, FlipAveraged, export_onnx
    from training.inference import load_predictor
    from training.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    export_onnx(model, tmp_path / "plain.onnx")
    export_onnx(FlipAveraged(model), tmp_path / "flips.onnx")  # the model passed in stays unfused
    batch = np.random.default_rng(0).random((2, 1, 400, 640), dtype=np.float32)
    one_file = preprocess.pupil_probability(load_predictor(tmp_path / "flips.onnx").run(batch))
    averaged = preprocess.pupil_probability(load_predictor(tmp_path / "plain.onnx", flips=True).run(batch))
    plain = preprocess.pupil_probability(load_predictor(tmp_path / "plain.onnx").run(batch))
    assert np.abs(one_file - averaged).max() < 1e-5 and np.abs(one_file - plain).max() > 1e-3
    assert (tmp_path / "flips.onnx").stat().st_size < MAX_ONNX_BYTES


def test_letterbox_round_trip():
    """Scenario: Images of another size are letterboxed"""
    frame = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    boxed, box = preprocess.letterbox(frame, 400, 640)
    assert boxed.shape == (400, 640) and box.scale == pytest.approx(400 / 300)
    plane = np.zeros((400, 640), np.float32)
    plane[:400, :400] = 1.0
    back = preprocess.unletterbox(plane, box)
    assert back.shape == (300, 300) and back.min() == 1.0


def test_predict_uses_the_training_preprocessing_function(monkeypatch, raw_dir, tmp_path):
    """Scenario: Predict reuses the training preprocessing"""
    import training.predict as predict

    calls = []
    original = preprocess.preprocess_image

    def spy(image):
        calls.append(image.shape)
        return original(image)

    monkeypatch.setattr(preprocess, "preprocess_image", spy)  # the one module-level function predict must go through
    image = next((raw_dir / "validation" / "images").glob("*.png"))
    predict.predict_paths(str(FIXTURE_MODEL), [str(image)], tmp_path)
    assert calls == [(400, 640)]
    assert not any(name in vars(predict) for name in ("apply_clahe", "apply_gamma", "createCLAHE"))


def test_predict_images_folders_and_video(openeds_precomputed, tmp_path):
    """Scenario: Predict writes overlays and ellipses"""
    raw_dir = openeds_precomputed
    frames = sorted((raw_dir / "validation" / "images").glob("*.png"))[:3]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 400))
    for path in frames:
        writer.write(cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
    writer.release()
    result = run_python(["-m", "training.predict", "--model", str(FIXTURE_MODEL), str(frames[0]), str(raw_dir / "test" / "images"), str(video), "--output-dir", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    n_test = len(list((raw_dir / "test" / "images").glob("*.png")))
    assert len(rows) == 1 + n_test + 3
    assert [r["frame"] for r in rows if r["source"] == str(video)] == ["0", "1", "2"]
    assert (tmp_path / "out" / "clip_overlay.mp4").stat().st_size > 0
    assert (tmp_path / "out" / "overlays" / f"{frames[0].stem}.png").exists()
    first = rows[0]
    label = np.load(raw_dir / "validation" / "labels" / f"{frames[0].stem}.npy")
    truth = preprocess.fit_ellipse(label == 3)
    # the reported ellipse is the one fitted to the model's own mask, and it sits on the labelled pupil
    from training.inference import ZOOM_DIAMETERS, load_predictor
    from training.predict import predict_ellipse

    record, mask = predict_ellipse(load_predictor(FIXTURE_MODEL, zoom=ZOOM_DIAMETERS), cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE))
    assert float(first["cx"]) == pytest.approx(record["cx"], abs=1e-3) and float(first["ry"]) == pytest.approx(record["ry"], abs=1e-3)
    assert float(first["confidence"]) > 0.5 and mask[int(truth.cy), int(truth.cx)] == 1
    assert np.hypot(float(first["cx"]) - truth.cx, float(first["cy"]) - truth.cy) < 0.5 * truth.rx
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == len(rows)


def test_int8_model_is_small_and_as_accurate(openeds_precomputed, tmp_path):
    """Scenario: INT8 quantization"""
    from training.evaluate import evaluate_model
    from training.quantize import quantize

    precomputed = openeds_precomputed
    # the shipped model is the base variant: its INT8 file is ~147 KB (the 100 KB default budget fits tiny)
    int8 = quantize(FIXTURE_MODEL, str(precomputed), tmp_path / "int8.onnx", calibration_frames=32, max_bytes=160_000)
    assert int8.stat().st_size <= 0.55 * FIXTURE_MODEL.stat().st_size
    # All 23 frames: on 4 validation frames alone one frame moves the mean by ~0.02 either way.
    scores = {}
    for name, model in (("fp32", FIXTURE_MODEL), ("int8", int8)):
        reports = [evaluate_model(model, precomputed, tmp_path / name / split, split=split, timing=False) for split in ("train", "validation", "test")]
        frames = sum(r["frames"] for r in reports)
        matrix = np.sum([r["confusion_matrix"] for r in reports], axis=0)
        scores[name] = (sum(r["pupil_iou_mean"] * r["frames"] for r in reports) / frames, matrix[1, 1] / (matrix[1, 1] + matrix[0, 1] + matrix[1, 0]))
        assert frames == 23  # 24 frames, one closed eye skipped by precompute
    assert scores["fp32"][0] > 0.4
    assert abs(scores["int8"][0] - scores["fp32"][0]) <= 0.01  # mean per-image pupil IoU
    assert abs(scores["int8"][1] - scores["fp32"][1]) <= 0.01  # split-level pupil IoU


@pytest.mark.slow
def test_bench_prints_one_table_with_baselines():
    """Scenario: One benchmark table"""
    result = run_python(["benchmarks/bench.py", "--images", "12", "--repeats", "3"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in ("plain-conv", "tiny", "small", "base"):
        assert name in out
    assert "fp32 B" in out and "int8 B" in out and "train img/s" in out
    assert "precompute:" in out and "loader:" in out and out.count("x)") >= 12


@pytest.mark.slow
def test_input_pipeline_benchmark_ends_with_the_ratio():
    """Scenario: Input pipeline against the step"""
    result = run_python(["benchmarks/input_pipeline.py", "--images", "48", "--batch-size", "4", "--batches", "2", "--steps", "1", "--workers", "1"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    for figure in ("decode only (workers, parquet rows)", "decode only (workers, --decode-cache)", "augmentation + targets only",
                   "full pipeline, parquet rows", "full pipeline, --decode-cache", "training step, base"):
        assert any(line.startswith(figure) and float(line.split(":")[1].split()[0]) > 0 for line in lines), figure
    assert lines[-1].startswith("pipeline/step=") and float(lines[-1].split("=")[1]) > 0


def test_looks_benchmark_prices_each_way_of_looking_against_one_look():
    """Scenario: What the looks cost"""
    result = run_python(["benchmarks/looks.py", "--frames", "2"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.strip().splitlines()[1:]]
    assert [row[0] for row in rows] == ["128x128", "240x320", "400x640", "480x640"]
    for row in rows:  # one look's ms and its ratio 1.00, then three looks and three flipped looks, each dearer
        figures = [float(value) for value in row[1:]]
        assert figures[1] == 1.0 and figures[0] > 0 and figures[3] > 1 and figures[5] > figures[3]


def test_step_profile_brackets_each_part_of_the_step():
    """Scenario: Where a training step's time goes"""
    result = run_python(["benchmarks/profile_step.py", "--variants", "tiny,base", "--shapes", "64x96", "--batch-size", "2", "--steps", "2"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    tables = result.stdout.split("\n## ")[1:]
    assert [table.split(",")[0] for table in tables] == ["tiny", "base"]
    parts = ["stem (stride 4)", "stage 1 (stride 8)", "stage 2 (stride 16)", "stage 3 (stride 32)", "decoder", "head (sub-pixel)", "loss"]
    for table in tables:
        step_ms = float(table.split(": ")[1].split(" ms")[0])
        rows = {line.split(" | ")[0][2:]: float(line.split(" | ")[1]) for line in table.splitlines() if line.startswith("| ") and not line.startswith("| part")}
        assert set(rows) == {f"{part}: {phase}" for part in parts for phase in ("forward", "backward")} | {"AdamW step", "(the rest: zero_grad, Python)"}
        measured = [ms for name, ms in rows.items() if not name.startswith("(the rest")]
        assert all(ms >= 0 for ms in measured), table  # every bracket closed after it opened
        assert 0.5 * step_ms <= sum(measured) <= step_ms + 0.05 * len(rows), table  # disjoint brackets (means add up) that cover most of the step


def test_several_folders_give_one_table_with_size_breakdown(image_mask_folder, tmp_path):
    """Scenario: Judge a model on your own camera"""
    import shutil

    second = tmp_path / "cam_b"
    shutil.copytree(image_mask_folder, second)
    small = second / "masks"
    for path in small.glob("*.png"):  # camera B: the same frames at half size (smaller pupils)
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (320, 240), interpolation=cv2.INTER_NEAREST))
        image = second / "images" / path.name
        cv2.imwrite(str(image), cv2.resize(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), (320, 240), interpolation=cv2.INTER_AREA))
    out = tmp_path / "eval"
    result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(image_mask_folder), str(second),
                         "--output-dir", str(out), "--no-timing", "--worst-k", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    names = [image_mask_folder.name, "cam_b"]
    assert all(f"| {name} |" in summary for name in names) and summary.count("\n| ") == 3  # header + 2 rows
    reports = {name: json.loads((out / name / "report.json").read_text()) for name in names}
    for name, report in reports.items():
        assert sum(row["frames"] for row in report["by_pupil_size"].values()) == report["frames"] == 4
        assert f"| {name} | 4 | {report['pupil_iou_mean']:.4f} |" in summary
        assert "By pupil size" in (out / name / "report.md").read_text()
        worst = sorted((out / name / "worst").glob("*.png"))
        assert len(worst) == 2
        frame_width = 640 if name != "cam_b" else 320
        scale = max(1.0, 240 / (480 if name != "cam_b" else 240))
        assert cv2.imread(str(worst[0])).shape[1] == 3 * int(frame_width * scale) + 8  # image | label | prediction
    # the half-size camera has smaller pupils: its size bins sit lower
    def bins(report):
        return sorted(int(name.split("-")[0].lstrip(">=").rstrip("px")) for name in report["by_pupil_size"] if name != "none")
    assert bins(reports["cam_b"])[0] < bins(reports[image_mask_folder.name])[-1]


def test_min_pupil_px_leaves_out_small_pupils(image_mask_folder, tmp_path):
    """Scenario: Judge a model on your own camera"""
    from training.evaluate import evaluate_model

    sizes = sorted(int((cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127).sum()) for p in (image_mask_folder / "masks").glob("*.png"))
    threshold = sizes[1] + 1  # the two smallest pupils fall below
    report = evaluate_model(FIXTURE_MODEL, image_mask_folder, tmp_path, timing=False, min_pupil_px=threshold)
    assert report["frames"] == 2 and report["frames_below_min_pupil_px"] == 2
    assert "2 frame(s) with fewer than" in (tmp_path / "report.md").read_text()


@pytest.fixture()
def folder_with_bad_inputs(image_mask_folder, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(image_mask_folder, folder)
    names = sorted(p.name for p in (folder / "images").glob("*.png"))
    (folder / "images" / names[0]).write_bytes(b"not a png")  # unreadable image
    cv2.imwrite(str(folder / "masks" / names[1]), np.zeros((10, 10), np.uint8))  # mask of the wrong size
    (folder / "masks" / names[2]).unlink()  # missing mask
    return folder, names


def test_bad_inputs_are_named_counted_and_left_out(folder_with_bad_inputs, tmp_path):
    """Scenario: Bad input is named, counted and left out"""
    folder, names = folder_with_bad_inputs
    result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(folder), "--output-dir", str(tmp_path / "e"), "--no-timing"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["frames"] == 1 and report["bad_inputs"] == 3
    messages = "\n".join(report["bad_input_messages"])
    assert f"{names[0]}: not a readable image" in messages
    assert f"{names[1]}: mask shape (10, 10) does not match" in messages
    assert f"{names[2]}: missing or unreadable mask" in messages
    assert all(name in result.stderr for name in names[:3])  # one warning line each
    assert "3 bad input(s) left out" in (tmp_path / "e" / "report.md").read_text()


def test_strict_makes_bad_input_fatal_without_a_traceback(folder_with_bad_inputs, tmp_path):
    """Scenario: Bad input is named, counted and left out"""
    folder, names = folder_with_bad_inputs
    result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(folder), "--output-dir", str(tmp_path / "e"), "--strict"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and f"{names[0]}: not a readable image" in result.stderr


def test_bad_model_or_missing_path_exits_2_without_a_traceback(image_mask_folder, tmp_path):
    """Scenario: Bad input is named, counted and left out"""
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    cases = [
        (["--model", str(garbage), "--data", str(image_mask_folder)], f"{garbage}: not a valid ONNX model"),
        (["--model", str(broken), "--data", str(image_mask_folder)], f"{broken}: not a loadable checkpoint"),
        (["--model", str(tmp_path / "missing.onnx"), "--data", str(image_mask_folder)], "missing.onnx: no such model file"),
        (["--model", str(FIXTURE_MODEL), "--data", str(tmp_path / "nowhere")], "nowhere: no such data folder"),
    ]
    for args, message in cases:
        result = run_python(["-m", "training.evaluate", *args, "--output-dir", str(tmp_path / "e"), "--no-timing"])
        assert result.returncode == 2, (args, result.stderr[-1000:])
        assert "Traceback" not in result.stderr and message in result.stderr, result.stderr[-1000:]


def test_predict_and_quantize_name_bad_input_without_a_traceback(raw_dir, tmp_path):
    """Scenario: Bad input is named, counted and left out"""
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model")
    unreadable = tmp_path / "frames" / "broken.png"
    unreadable.parent.mkdir()
    unreadable.write_bytes(b"not a png")
    good = next((raw_dir / "validation" / "images").glob("*.png"))
    result = run_python(["-m", "training.predict", "--model", str(FIXTURE_MODEL), str(good), str(unreadable.parent), "--output-dir", str(tmp_path / "p")])
    assert result.returncode == 0 and f"skipped {unreadable}: not a readable image" in result.stderr
    assert (tmp_path / "p" / "predictions.csv").read_text().count("\n") == 2  # header + the good frame
    for command in (["-m", "training.predict", "--model", str(garbage), str(good), "--output-dir", str(tmp_path / "q")],
                    ["-m", "training.quantize", "--model", str(garbage), "--data", str(raw_dir), "--output", str(tmp_path / "q.onnx")],
                    ["-m", "training.quantize", "--model", str(tmp_path / "missing.onnx"), "--data", str(raw_dir), "--output", str(tmp_path / "q.onnx")]):
        result = run_python(command)
        assert result.returncode == 2, result.stderr[-1000:]
        assert "Traceback" not in result.stderr and ("not a valid ONNX model" in result.stderr or "no such model file" in result.stderr)


def test_visible_edge_finds_a_blurred_pupils_edge_and_places_tight_labels_inside_it():
    """Scenario: A tight label sits inside the visible edge"""
    from training.metrics import visible_edge

    yy, xx = np.mgrid[:160, :160]
    disc = lambda radius: (np.hypot(xx - 80.3, yy - 79.6) <= radius).astype(np.uint8)
    frame = np.where(disc(20), 40, 140).astype(np.float32)
    frame = cv2.GaussianBlur(frame, (0, 0), 1.5)
    frame[60:63, 95:98] = 255  # a glint on the rim: a few rays only
    exact, tight, loose = visible_edge(frame, disc(20)), visible_edge(frame, disc(15)), visible_edge(frame, disc(24))
    for row in (exact, tight, loose):
        assert abs(row.edge_r - 20) <= 0.75, row
        assert abs(row.contrast - 100) < 10, row
    assert 0.35 < exact.label_at < 0.65
    assert tight.label_at < 0.1 and loose.label_at > 0.9  # the dark core vs the iris side of the step


def test_evaluate_reads_labels_and_predictions_against_the_frames_own_edge(image_mask_folder, tmp_path):
    """Scenario: Tight labels are told from a model's error"""
    import shutil

    from training.evaluate import evaluate_model

    tight = tmp_path / "tight"
    shutil.copytree(image_mask_folder, tight)
    for path in (tight / "masks").glob("*.png"):  # the same frames, labels traced 5 px inside the pupil's edge
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path), cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))))
    exact = evaluate_model(FIXTURE_MODEL, image_mask_folder, tmp_path / "exact_eval", timing=False)
    traced = evaluate_model(FIXTURE_MODEL, tight, tmp_path / "tight_eval", timing=False)
    assert 0.9 < exact["label_vs_edge_median"] < 1.1  # the generator's exact labels lie on the visible edge
    assert traced["label_vs_edge_median"] < exact["label_vs_edge_median"] - 0.05
    assert traced["boundary_offset_mean"] > exact["boundary_offset_mean"] + 3  # against the labels the model now looks too big...
    assert traced["prediction_vs_edge_median"] == pytest.approx(exact["prediction_vs_edge_median"], abs=0.03)  # ...against the frame it has not moved
    rows = list(csv.DictReader(open(tmp_path / "tight_eval" / "per_image.csv")))
    assert np.median([float(r["prediction_vs_edge"]) for r in rows]) == pytest.approx(traced["prediction_vs_edge_median"])
    report = (tmp_path / "tight_eval" / "report.md").read_text()
    assert "label_vs_edge_median" in report and "prediction / visible edge" in report


def test_zoom_takes_a_second_look_at_the_pupil_at_the_sizes_asked(image_mask_folder, tmp_path):
    """Scenario: Zoomed second look"""
    from training.inference import MAX_ZOOM, ZOOM_DIAMETERS, Predictor, load_predictor, predict_frame, pupil_mask, zoomed

    seen = []  # the model inputs of each run, and where the dark disc lies in them
    def dark_is_pupil(batch):  # a model that calls a pixel pupil where the frame is dark
        seen.append(batch.copy())
        out = np.zeros((len(batch), 2, *batch.shape[2:]), np.float32)
        out[:, 1] = 40 * (0.5 - batch[:, 0])
        return out

    frame = np.full((240, 320), 200, np.uint8)  # another size than the model input: letterboxed x1.25 at first
    cv2.circle(frame, (170, 110), 10, 30, thickness=cv2.FILLED)
    truth = np.zeros_like(frame)
    cv2.circle(truth, (170, 110), 10, 1, thickness=cv2.FILLED)
    model = Predictor(dark_is_pupil, 400, 640, b"", "dark")
    assert model.looks == 1
    looked = zoomed(model, (60.0, 100.0))
    assert looked.zoom == (60.0, 100.0) and looked.looks == 3
    probability = predict_frame(looked, frame)
    assert probability.shape == frame.shape
    assert [len(batch) for batch in seen] == [1, 2]  # the first look, then both zoomed looks in one batch
    for view, diameter in zip(seen[1], (60, 100)):  # each second look: the pupil in the middle, `diameter` px across
        dark = view[0] < 0.5
        ys, xs = np.nonzero(dark)
        assert abs(xs.mean() - 319.5) < 1 and abs(ys.mean() - 199.5) < 1
        assert abs(2 * np.sqrt(dark.sum() / np.pi) - diameter) < 2
    predicted = pupil_mask(probability) > 0  # mapped back onto the frame's own grid
    assert (predicted & (truth > 0)).sum() / (predicted | (truth > 0)).sum() > 0.9
    assert probability[200, 20] == 0  # outside the zoomed windows nothing is pupil

    seen.clear()  # a pupil cut by the frame's edge stays at the window's edge: no replicated stripes beside it
    edge = np.full((400, 640), 200, np.uint8)
    cv2.circle(edge, (8, 200), 30, 30, thickness=cv2.FILLED)
    predict_frame(looked, edge)
    visible = int((edge < 100).sum())
    for view, scale in zip(seen[1], (60, 100)):
        dark = view[0] < 0.5
        magnified = dark.sum() / visible  # the frame's dark pixels, magnified by the window's scale squared
        assert np.nonzero(dark)[1].max() < 160 and dark[:, 0].any()  # at the window's left edge, as in the frame
        assert 1.0 <= magnified <= MAX_ZOOM ** 2 and dark.sum() < 1.2 * visible * (scale / (2 * np.sqrt(visible / np.pi))) ** 2

    seen.clear()  # a pupil the letterbox already makes large is not shrunk, and a speck is magnified at most MAX_ZOOM x
    big = np.full((128, 128), 200, np.uint8)
    cv2.circle(big, (64, 64), 30, 30, thickness=cv2.FILLED)
    predict_frame(zoomed(model, (60.0,)), big)
    assert abs(2 * np.sqrt((seen[1][0, 0] < 0.5).sum() / np.pi) - 2 * 30 * 400 / 128) < 3  # as letterboxed (x3.125)
    seen.clear()
    speck = np.full((400, 640), 200, np.uint8)
    cv2.circle(speck, (300, 200), 2, 30, thickness=cv2.FILLED)
    predict_frame(zoomed(model, (100.0,)), speck)
    first, second = ((batch[0, 0] < 0.5).sum() for batch in seen)
    assert second / first == pytest.approx(MAX_ZOOM ** 2, rel=0.25)

    one, three = load_predictor(FIXTURE_MODEL), load_predictor(FIXTURE_MODEL, zoom=ZOOM_DIAMETERS)  # evaluate: zoomed by default
    for flags, predictor, looks in (([], three, 3), (["--no-zoom"], one, 1)):
        out = tmp_path / f"looks{looks}"
        result = run_python(["-m", "training.evaluate", "--model", str(FIXTURE_MODEL), "--data", str(image_mask_folder), "--output-dir", str(out), "--no-timing", *flags])
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads((out / "report.json").read_text())
        assert report["looks_per_frame"] == looks and report["zoom"] == list(predictor.zoom)
        for row in csv.DictReader(open(out / "per_image.csv")):
            probability = predict_frame(predictor, cv2.imread(str(image_mask_folder / "images" / row["filename"]), cv2.IMREAD_GRAYSCALE))
            assert int(row["predicted_pixels"]) == int(pupil_mask(probability).sum())
    assert ("second looks" in (tmp_path / "looks3" / "report.md").read_text()) and "(--no-zoom)" in (tmp_path / "looks1" / "report.md").read_text()

    seen.clear()  # no pupil in the first look: the first look stands, and nothing more is run
    blank = np.full((240, 320), 200, np.uint8)
    assert np.array_equal(predict_frame(looked, blank), predict_frame(model, blank)) and len(seen) == 2
    with pytest.raises(ValueError, match="already zoomed"):
        zoomed(looked)
    with pytest.raises(ValueError, match="positive"):
        zoomed(model, (0.0,))
