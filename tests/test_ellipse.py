"""Ellipse regression: model contract, targets, loss, a short end-to-end run read back from MLflow, export parity."""

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from training.models import count_parameters
from training.models.ellipse import ELLIPSE_VARIANTS, build_ellipse_model
from training.tasks import EllipseScores, ellipse_targets, ellipse_task_loss


@pytest.mark.parametrize("variant", sorted(ELLIPSE_VARIANTS))
def test_every_ellipse_variant_keeps_the_contract(variant):
    """Scenario: Ellipse regressor contract"""
    torch.manual_seed(0)
    model = build_ellipse_model(variant)
    assert count_parameters(model) < 60_000
    out = model(torch.rand(2, 1, 400, 640))
    assert out.shape == (2, 6) and torch.isfinite(out).all()
    assert ((out[:, :2] > 0) & (out[:, :2] < 1)).all() and (out[:, 2:4] > 0).all()
    assert torch.allclose(out[:, 4:].norm(dim=1), torch.ones(2), atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _batch(cx, cy, rx_px, ry_px, angle):
    return {"ellipse": torch.tensor([[cx, cy, rx_px / 640, ry_px / 400]]), "angle": torch.tensor([angle])}


def test_targets_put_the_major_axis_first_and_encode_twice_the_angle():
    """Scenario: Ellipse targets and loss"""
    targets, weight, valid = ellipse_targets(_batch(0.5, 0.5, 20.0, 40.0, 30.0))
    major, minor = targets[0, 2] * 640, targets[0, 3] * 640
    assert (float(major), float(minor)) == pytest.approx((40.0, 20.0), abs=1e-4)
    assert targets[0, 4:].tolist() == pytest.approx([math.sin(math.radians(240)), math.cos(math.radians(240))], abs=1e-5)
    assert bool(valid[0]) and float(weight[0]) == 1.0
    circle = ellipse_targets(_batch(0.5, 0.5, 30.0, 30.0, 77.0))[1]
    assert float(circle[0]) == pytest.approx(0.0, abs=1e-5)  # a circle's angle is arbitrary: no angle loss
    missing = ellipse_targets({"ellipse": torch.tensor([[float("nan")] * 4]), "angle": torch.tensor([float("nan")])})
    assert not bool(missing[2][0])


def test_ellipse_loss_is_zero_at_the_target_and_grows_with_the_error():
    """Scenario: Ellipse targets and loss"""
    batch = _batch(0.4, 0.6, 35.0, 25.0, 10.0)
    targets, _, _ = ellipse_targets(batch)
    assert float(ellipse_task_loss(targets.clone(), batch, 0.0)["loss"]) == pytest.approx(0.0, abs=1e-6)
    losses = []
    for shift_px in (1, 5, 20):
        pred = targets.clone()
        pred[0, 0] += shift_px / 640
        losses.append(float(ellipse_task_loss(pred, batch, 0.0)["center"]))
    assert losses[0] < losses[1] < losses[2]
    rotated = targets.clone()
    rotated[0, 4:] = torch.tensor([math.sin(math.radians(2 * 10 + 90)), math.cos(math.radians(2 * 10 + 90))])
    assert float(ellipse_task_loss(rotated, batch, 0.0)["angle"]) > 0.5


def test_ellipse_scores_in_pixels():
    """Scenario: Ellipse metrics"""
    batch = _batch(0.5, 0.5, 40.0, 20.0, 0.0)
    targets, _, _ = ellipse_targets(batch)
    pred = targets.clone()
    pred[0, 0] += 3 / 640  # 3 px right
    pred[0, 2] += 2 / 640  # major axis 2 px longer
    scores = EllipseScores()
    scores.update(pred, batch)
    result = scores.compute()
    assert result["center_error_mean"] == pytest.approx(3.0, abs=1e-3)
    assert result["detection_rate"] == 1.0 and result["axis_error_mean"] == pytest.approx(1.0, abs=1e-3)
    assert result["angle_error_mean"] == pytest.approx(0.0, abs=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("cwd", ["root", "training"])
def test_ellipse_script_end_to_end_with_mlflow_and_export(precomputed, tmp_path, cwd, monkeypatch):
    """Scenario: Ellipse training end to end"""
    script = "training/train_ellipse_local.py" if cwd == "root" else "train_ellipse_local.py"
    env = {k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"}
    import subprocess
    import sys

    result = subprocess.run([sys.executable, script, "--dataset", str(precomputed / "dataset"), "--epochs", "1", "--batch-size", "4",
                             "--limit", "8", "--output-dir", str(tmp_path), "--run-name", "e"], cwd=ROOT if cwd == "root" else ROOT / "training",
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_dir = tmp_path / "e"
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("valid_center_error_mean", "valid_center_error_median", "valid_center_error_p95", "valid_detection_rate",
                "valid_axis_error_mean", "valid_angle_error_mean", "train_center_loss", "train_angle_loss"):
        assert key in row, key
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(json.loads((run_dir / "mlflow_state.json").read_text())["run_id"])
    assert run.data.tags["model_type"] == "EllipseRegressor" and run.data.tags["architecture"] == "EllipseRegressor-tiny"
    assert "valid_detection_rate" in run.data.metrics
    onnx_path = run_dir / "best_ellipse_model.onnx"
    assert onnx_path.exists() and onnx_path.stat().st_size < 300_000
    from training.checkpoint import load_checkpoint
    from training.export import ort_session, parity_bound

    model = build_ellipse_model("tiny")
    model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    model.eval()
    x = np.random.default_rng(1).random((3, 1, 400, 640), dtype=np.float32)
    (onnx_out,) = ort_session(onnx_path).run(None, {"image": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (3, 6) and np.abs(onnx_out - expected).max() <= parity_bound(expected)


def test_ellipse_columns_are_fitted_at_load_time_when_absent():
    """Scenario: Ellipse targets and loss"""
    import cv2

    from training.data import finish_sample

    label = np.zeros((400, 640), np.uint8)
    cv2.ellipse(label, ((300.0, 200.0), (60.0, 40.0), 20.0), 1, -1)
    sample = finish_sample({"image": np.zeros((400, 640), np.uint8), "label": label, "preprocessed": True})
    assert sample["cx"] == pytest.approx(300 / 640, abs=2e-3) and sample["cy"] == pytest.approx(200 / 400, abs=2e-3)
    # cv2 may report (w, h, a) or (h, w, a + 90): the same ellipse
    assert float(sample["angle"]) % 90 == pytest.approx(20.0, abs=2.0)
    assert sorted([sample["rx"] * 640, sample["ry"] * 400]) == pytest.approx([20.0, 30.0], abs=1.0)
