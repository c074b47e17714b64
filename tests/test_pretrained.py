"""The shipped pretrained weights (training/weights/): loading, ONNX parity, use without training, fine-tuning, and
the one command that reproduces them."""

import json

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import run_python
from training import preprocess
from training.models import build_model, pretrained_card, pretrained_onnx_path
from training.models.efficientvit import WEIGHTS_DIR


def test_pretrained_weights_load_and_match_their_onnx_file(raw_dir):
    """Scenario: Pretrained weights load and agree with their ONNX file"""
    from training.export import ort_session

    card = pretrained_card()
    for key in ("variant", "onnx", "state_dict", "command", "recipe", "metrics", "best_epoch", "trained_on"):
        assert key in card, key
    assert card["recipe"]["seed"] == card["recipe"]["train_config"]["seed"] and "synthetic_test" in card["metrics"]
    assert "python -m training.pretrain" in card["command"]
    onnx_path = pretrained_onnx_path()
    assert onnx_path.stat().st_size < 300 * 1024 and (WEIGHTS_DIR / card["state_dict"]).is_file()
    model = build_model(card["variant"], pretrained=True).eval()
    shipped = torch.load(WEIGHTS_DIR / card["state_dict"], map_location="cpu", weights_only=True)
    assert all(torch.equal(value, shipped[name]) for name, value in model.state_dict().items())
    image = preprocess.preprocess_image(cv2.imread(str(next((raw_dir / "validation" / "images").glob("*.png"))), cv2.IMREAD_GRAYSCALE))
    batch = preprocess.to_model_input(image)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    session = ort_session(onnx_path.read_bytes(), 1)
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max()
    other = next(v for v in ("tiny", "small", "base") if v != card["variant"])
    with pytest.raises(ValueError, match="pretrained weights ship for"):
        build_model(other, pretrained=True)


def test_predict_with_the_pretrained_model_and_fine_tune_from_it(raw_dir, precomputed, tmp_path):
    """Scenario: Predict and fine-tune from the pretrained weights"""
    from training.config import TrainConfig
    from training.engine import train

    image = next((raw_dir / "validation" / "images").glob("*.png"))
    result = run_python(["-m", "training.predict", "--model", "pretrained", str(image), "--output-dir", str(tmp_path / "pred")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "pred" / "predictions.csv").read_text().count("\n") == 2
    card = pretrained_card()
    cfg = TrainConfig(dataset=str(precomputed / "dataset"), model_variant=card["variant"], pretrained=True, epochs=1, batch_size=2, limit=2,
                      lr=1e-12, weight_decay=0.0, freeze_bn=True, augment=False, output_dir=str(tmp_path / "runs"), run_name="ft",
                      overlay_every=0, export_onnx=False)
    run = train(cfg)
    tuned = torch.load(run.run_dir / "best_state_dict.pt", map_location="cpu", weights_only=True)
    shipped = torch.load(WEIGHTS_DIR / card["state_dict"], map_location="cpu", weights_only=True)
    assert all(torch.allclose(tuned[name], shipped[name], atol=1e-6) for name in shipped)
    fresh = build_model(card["variant"]).state_dict()
    assert not all(torch.allclose(fresh[name].float(), shipped[name].float()) for name in shipped)


@pytest.mark.slow
def test_pretrain_command_writes_weights_and_a_card(tmp_path):
    """Scenario: The pretrain command writes weights and a card"""
    weights = tmp_path / "weights"
    result = run_python(["-m", "training.pretrain", "--output-dir", str(tmp_path / "out"), "--weights-dir", str(weights),
                         "--num-images", "16", "--epochs", "1", "--model-variant", "tiny", "--alpha-end", "0.5",
                         "--distill-steps", "3", "--distill-frames", "4", "--closed-share", "0.3"], env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    card = json.loads((weights / "pretrained.json").read_text())
    assert card["variant"] == "tiny" and (weights / card["onnx"]).stat().st_size < 300 * 1024
    assert "--num-images 16" in card["command"] and card["recipe"]["epochs"] == 1
    assert "--alpha-end 0.5" in card["command"] and card["recipe"]["train_config"]["alpha_end"] == 0.5  # recipe flags reach train(cfg)
    data_card = (tmp_path / "out" / "raw" / "dataset" / "README.md").read_text()  # closed eyes generated, and trained on
    assert "--closed-share 0.3" in card["command"] and "| train | 12 |" in data_card and "kept in train" in data_card
    report = json.loads((tmp_path / "out" / "runs" / "pretrain" / "synthetic_test" / "report.json").read_text())
    assert card["metrics"]["synthetic_test"]["pupil_iou_mean"] == report["pupil_iou_mean"] and report["split"] == "test"
    assert card["postprocess"] == report["postprocess"] == "ellipse"  # the card says which mask its metrics score
    assert card["zoom"] == report["zoom"] == [60.0, 100.0]  # and from which looks
    assert card["machine"]["torch"] == torch.__version__ and card["machine"]["device"] == "cpu" and card["machine"]["threads"] >= 1  # where
    state = torch.load(weights / card["state_dict"], map_location="cpu", weights_only=True)
    build_model("tiny").load_state_dict(state)
    run = tmp_path / "out" / "runs" / "pretrain"  # the shipped model is the distilled one, scored before and after
    assert "--distill-steps 3" in card["command"] and card["distillation"]["distill_steps"] == 3 and card["distillation"]["frame_seed"] == 31
    taught = torch.load(run / "distill" / "state_dict.pt", map_location="cpu", weights_only=True)
    trained = torch.load(run / "best_state_dict.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(state[name], taught[name]) for name in state) and not all(torch.equal(state[name], trained[name]) for name in state)
    before = json.loads((run / "before_distillation" / "synthetic_test" / "report.json").read_text())
    assert card["metrics_before_distillation"]["synthetic_test"]["pupil_iou_mean"] == before["pupil_iou_mean"]


def test_flip_distillation_moves_the_single_view_toward_the_flip_average(tmp_path):
    """Scenario: A model taught its own flip average"""
    from training.distill import distil, generator_frames
    from training.inference import model_from_checkpoint

    torch.manual_seed(0)
    images, masks = generator_frames(4, seed=3)
    teacher = build_model(pretrained_card()["variant"], pretrained=True)
    student = build_model(pretrained_card()["variant"])  # untrained: far from the teacher, so the test can see it move
    losses = distil(teacher, student, images, masks, steps=20, lr=3e-3, seed=0, log_every=0, augment=None)
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses  # the same four frames every step: the gap falls
    weights = tmp_path / "student.pt"  # a state_dict that evaluate, predict and export read
    torch.save(student.state_dict(), weights)
    frames = images.float() / 255.0
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(weights).eval()(frames), student.eval()(frames))


def test_a_killed_distillation_continues_where_it_stopped(tmp_path, monkeypatch):
    """Scenario: A killed distillation continues exactly"""
    from training import distill

    images, masks = distill.generator_frames(3, seed=4)
    teacher = build_model("tiny")

    def run(checkpoint=None):
        torch.manual_seed(1)
        student = build_model("tiny")
        losses = distill.distil(teacher, student, images, masks, steps=6, lr=1e-3, seed=2, log_every=0, checkpoint=checkpoint, checkpoint_every=2)
        return student, losses

    straight, straight_losses = run()
    saved = distill.save_checkpoint

    def save_then_die(path, state):
        saved(path, state)
        if len(state["losses"]) == 4:
            raise KeyboardInterrupt  # killed right after the checkpoint of step 4
    monkeypatch.setattr(distill, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "last.pt")
    monkeypatch.setattr(distill, "save_checkpoint", saved)
    resumed, resumed_losses = run(tmp_path / "last.pt")
    assert resumed_losses == straight_losses  # steps 5-6 took the batches, augmentation and optimizer state of a straight run
    assert all(torch.equal(value, straight.state_dict()[name]) for name, value in resumed.state_dict().items())
    again, again_losses = run(tmp_path / "last.pt")  # a finished distillation is not run again
    assert again_losses == straight_losses and all(torch.equal(value, straight.state_dict()[name]) for name, value in again.state_dict().items())
    with pytest.raises(ValueError, match="last.pt: a distillation checkpoint of 6 steps, asked for 8"):
        distill.distil(teacher, build_model("tiny"), images, masks, steps=8, checkpoint=tmp_path / "last.pt")
