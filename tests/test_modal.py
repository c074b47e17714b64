"""The Modal app without a Modal account: import, function settings, .local() runs, entrypoint options, and the
DDP path it launches (CPU, gloo) matching a single process with the combined batch."""

import dataclasses
import inspect
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, run_python
from training.config import TrainConfig

NO_TOKEN_ENV = {"MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": ""}


def _no_token_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path)  # no ~/.modal.toml
    return env


def test_module_imports_without_a_token(tmp_path):
    """Scenario: Modal app without an account"""
    result = subprocess.run([sys.executable, "-c", "import training.train_efficientvit as m; print(m.app.name)"], cwd=ROOT,
                            env=_no_token_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "visionassist-training"


def test_gpu_function_settings():
    """Scenario: Modal app without an account"""
    import modal

    import training.train_efficientvit as app_module

    spec = app_module.train_remote._spec_
    assert spec.gpus == app_module.DEFAULT_GPU == "L4"
    assert spec.memory == 32 * 1024 and spec.cpu == 8.0
    assert list(spec.volumes) == ["/vol"] and repr(spec.volumes["/vol"]) == repr(app_module.volume) == "modal.Volume.from_name('visionassist')"
    assert any("huggingface" in repr(secret) for secret in spec.secrets)
    options = app_module.TRAIN_FUNCTION_OPTIONS
    assert options["timeout"] == 6 * 60 * 60
    assert isinstance(options["retries"], modal.Retries) and options["retries"].max_retries == 3
    assert app_module.gpu_count("H100:4") == 4 and app_module.gpu_count("A100") == 1


def test_entrypoint_takes_the_local_options_plus_gpu():
    """Scenario: Entrypoint options map onto the config"""
    import training.train_efficientvit as app_module

    parameters = inspect.signature(app_module.main.info.raw_f).parameters
    assert {f.name for f in dataclasses.fields(TrainConfig)} | {"gpu", "config", "local_output_dir"} == set(parameters)
    cfg = app_module.config_from_options({"epochs": 3, "dataset": "you/eyes", "lr": 0.01, "gpu": "H100:4", "local_output_dir": "x"})
    assert (cfg.epochs, cfg.dataset, cfg.lr) == (3, "you/eyes", 0.01)
    assert (cfg.num_workers, cfg.decode_cache) == (6, "/tmp/visionassist-decoded")  # GPU defaults: workers copy decoded rows
    assert cfg.run_name.startswith("segmentation-tiny-")  # fixed before the call: a retry resumes the same run
    with pytest.raises(ValueError, match="unknown config key"):
        app_module.config_from_options({"learning_rate": 0.1})


def test_modal_run_without_a_token_says_how_to_get_one(tmp_path):
    """Scenario: Modal app without an account"""
    result = subprocess.run([sys.executable, "-m", "modal", "run", "training/train_efficientvit.py", "--epochs", "1"], cwd=ROOT,
                            env=_no_token_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    assert "modal token new" in result.stdout + result.stderr
    readme = (ROOT / "README.md").read_text()
    assert "modal token new" in readme and "## Train on Modal" in readme


@pytest.mark.slow
def test_local_call_trains_on_the_volume_and_resumes(precomputed, tmp_path, monkeypatch):
    """Scenario: State survives on the volume"""
    import training.train_efficientvit as app_module

    monkeypatch.setattr(app_module, "VOLUME_PATH", str(tmp_path / "vol"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrainConfig(dataset=str(precomputed / "dataset"), epochs=1, batch_size=4, limit=4, run_name="modal-run", overlay_every=0)
    result = app_module.train_remote.local(cfg.to_dict(), 1)
    run_dir = tmp_path / "vol" / "runs" / "modal-run"
    assert result["run_dir"] == str(run_dir) and result["onnx"] == (run_dir / "best_efficientvit_model.onnx").read_bytes()
    assert (tmp_path / "vol" / "runs" / "mlflow.db").exists()  # no MLflow secret: sqlite on the volume
    # a retried (or extended) call with the same run name resumes from last.pt
    again = app_module.train_remote.local(dataclasses.replace(cfg, epochs=2).to_dict(), 1)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]  # epoch 0 was not trained again: the call resumed from last.pt
    assert again["best_metric"] == max(row["valid_miou"] for row in rows) and rows[0]["valid_miou"] == result["best_metric"]


def test_ellipse_task_returns_its_own_onnx_file(precomputed, tmp_path, monkeypatch):
    """Scenario: State survives on the volume"""
    import training.train_efficientvit as app_module

    monkeypatch.setattr(app_module, "VOLUME_PATH", str(tmp_path / "vol"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrainConfig(dataset=str(precomputed / "dataset"), task="ellipse", model_variant="tiny", epochs=1, batch_size=4, limit=4, run_name="ellipse-run", overlay_every=0)
    result = app_module.train_remote.local(cfg.to_dict(), 1)
    onnx = tmp_path / "vol" / "runs" / "ellipse-run" / "best_ellipse_model.onnx"
    assert result["onnx_name"] == onnx.name and result["onnx"] == onnx.read_bytes()


@pytest.mark.slow
def test_precompute_fan_out_writes_the_same_dataset(raw_dir, precomputed, tmp_path, monkeypatch):
    """Scenario: Precompute fan-out on Modal"""
    import shutil

    import pyarrow.parquet as pq

    import training.train_efficientvit as app_module

    monkeypatch.setattr(app_module, "VOLUME_PATH", str(tmp_path / "vol"))
    target = tmp_path / "vol" / "precompute"
    for split in ("train", "validation", "test"):
        shutil.copytree(raw_dir / split, target / split)
    summary = app_module.precompute_remote.local(hf_repo="", shard_size=32, limit=0, download=False)
    assert sum(s["written"] for s in summary.values()) == 47 and sum(s["empty"] for s in summary.values()) == 1
    for split in ("train", "validation", "test"):
        ours = sorted(p.name.rsplit("-", 1)[0] for p in (target / "dataset" / split).glob("*.parquet"))
        local = sorted(p.name.rsplit("-", 1)[0] for p in (precomputed / "dataset" / split).glob("*.parquet"))
        assert ours == local
        a = pq.read_table(sorted((target / "dataset" / split).glob("*.parquet"))[0], columns=["filename", "cx"])
        b = pq.read_table(sorted((precomputed / "dataset" / split).glob("*.parquet"))[0], columns=["filename", "cx"])
        assert a.equals(b)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_combined_batch(precomputed, tmp_path):
    """Scenario: DDP equals the combined batch"""
    common = ["--dataset", str(precomputed / "dataset"), "--epochs", "1", "--limit", "8", "--seed", "5", "--freeze-bn",
              "--no-export-onnx", "--overlay-every", "0", "--output-dir", str(tmp_path), "--grad-clip", "0"]
    single = run_python(["training/train_efficientvit_local.py", *common, "--batch-size", "4", "--run-name", "single"])
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = run_python(["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
                      "training/train_efficientvit_local.py", *common, "--batch-size", "2", "--run-name", "ddp"], env={"OMP_NUM_THREADS": "1"})
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-2000:]
    one = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    start = __import__("training.models", fromlist=["build_model"]).build_model("tiny").state_dict()
    moved = max(float((one[k].float() - start[k].float()).abs().max()) for k in one)
    assert moved > 1e-3  # training really changed the weights
    worst = max(float((one[k].float() - two[k].float()).abs().max()) for k in one)
    # Every weight but one agrees within 1e-6. The head's zero-sum stride-2 kernel gets a gradient that is a
    # difference of near-equal sums over the frame, so its float rounding depends on the batch layout (~1e-6
    # relative), and Adam's first, sign-like steps turn that into up to ~1 % of a step (lr 3e-3): 3.4e-5 measured.
    assert worst < 1e-4, worst
