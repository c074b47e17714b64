"""train(cfg) end to end: MLflow contents, bit-exact resume after SIGKILL, a dying tracking server, ONNX export,
torchrun DDP, and the config CLI."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, run_python
from training.config import TrainConfig, parse_config
from training.engine import train

pytestmark = pytest.mark.slow


def _cfg(dataset, out, **overrides):
    values = dict(dataset=str(dataset), epochs=2, batch_size=4, limit=8, output_dir=str(out), run_name="run", overlay_every=1, seed=7)
    values.update(overrides)
    return TrainConfig(**values)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_epoch_run_is_fully_recorded_in_mlflow(precomputed, tmp_path, monkeypatch):
    """Scenario: Every run is tracked in MLflow"""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(_cfg(precomputed / "dataset", tmp_path))
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    for key in ("train_loss", "valid_loss", "train_pupil_iou", "valid_pupil_iou", "train_miou", "valid_miou", "train_ce_loss", "train_dice_loss",
                "train_surface_loss", "valid_ce_loss", "valid_dice_loss", "valid_surface_loss", "lr", "alpha", "epoch_seconds", "images_per_second"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [0, 1], key
    params = run.data.params
    from training.models import build_model, count_parameters

    assert params["model_variant"] == "tiny" and params["epochs"] == "2" and params["num_parameters"] == str(count_parameters(build_model("tiny")))
    assert params["dataset_kind"] == "parquet" and params["train_samples"] == "8"
    assert run.data.tags["model_type"] == "TinyEfficientViT" and run.data.tags["architecture"] == "TinyEfficientViT-tiny"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {a.path for d in ("overlays", "onnx", "checkpoints") for a in client.list_artifacts(run.info.run_id, d)}
    assert {"config.json", "learning_curves.png", "overlays/epoch_001.png", "onnx/best_efficientvit_model.onnx", "checkpoints/best_state_dict.pt"} <= artifacts
    inputs = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}  # MLflow's Datasets panel
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].name.endswith("/train") and inputs["training"].source_type == "local" and len(inputs["training"].digest) == 12
    assert json.loads(inputs["training"].profile)["num_rows"] == 8 and "dist_map" not in json.loads(inputs["training"].profile)["columns"]
    assert json.loads(inputs["validation"].profile)["columns"]["dist_map"] == "float32[2, 400, 640]"
    champion = client.get_model_version_by_alias("TinyEfficientViT-tiny", "champion")  # the model registry
    assert champion.run_id == run.info.run_id and float(champion.tags["valid_miou"]) == pytest.approx(result.best_metric)
    mlflow.set_tracking_uri(uri)
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert [m.source_run_id for m in models] == [run.info.run_id]
    from mlflow.models import get_model_info

    signature = get_model_info(models[0].model_uri).signature
    assert list(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 400, 640]
    # local record: config, metrics.jsonl, checkpoints
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "best_metric", "rng", "config"} <= set(last)
    assert last["config"]["run_name"] == "run" and last["epoch"] == 1


def test_secrets_never_reach_mlflow_params(precomputed, tmp_path, monkeypatch):
    """Scenario: Every run is tracked in MLflow"""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw_secret_456")
    result = train(_cfg(precomputed / "dataset", tmp_path, epochs=1, export_onnx=False, overlay_every=0))
    text = (result.run_dir / "mlflow_journal.jsonl").read_text() + (result.run_dir / "config.json").read_text()
    assert "hf_secret_value_123" not in text and "pw_secret_456" not in text


def _run_training(args, env=None):
    return subprocess.Popen([sys.executable, "training/train_efficientvit_local.py", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(precomputed, tmp_path):
    """Scenario: Resume after SIGKILL is bit-identical"""
    common = ["--dataset", str(precomputed / "dataset"), "--epochs", "3", "--batch-size", "2", "--limit", "12", "--seed", "3",
              "--ema-decay", "0.9", "--no-export-onnx", "--overlay-every", "0", "--output-dir", str(tmp_path)]
    reference = _run_training([*common, "--run-name", "reference"])
    assert reference.wait(timeout=600) == 0, reference.stdout.read()

    run_dir = tmp_path / "killed"
    common += ["--decode-cache", str(tmp_path / "decoded")]  # the killed run reads decoded rows: the same samples
    victim = _run_training([*common, "--run-name", "killed"])
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1 and (run_dir / "last.pt").exists()):
        assert victim.poll() is None and time.time() < deadline, "first epoch did not finish"
        time.sleep(0.05)
    epoch_seconds = json.loads(metrics.read_text().splitlines()[0])["epoch_seconds"]
    time.sleep(0.1 * epoch_seconds)  # inside the second epoch (the first also filled the decode cache: later epochs are faster; under load 0.4 came too late)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert metrics.read_text().count("\n") == 1, "the kill came after the second epoch ended"
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 0

    resumed = _run_training([*common, "--run-name", "killed", "--resume", "auto"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "epochs 2..3" in output
    expected = torch.load(tmp_path / "reference" / "last.pt", weights_only=True)
    actual = torch.load(run_dir / "last.pt", weights_only=True)
    assert actual["epoch"] == expected["epoch"] == 2
    for name, tensor in expected["model"].items():
        assert torch.equal(actual["model"][name], tensor), name
    assert actual["ema"]["updates"] == expected["ema"]["updates"] == 18  # 3 epochs x 6 steps
    for name, tensor in expected["ema"]["weights"].items():
        assert torch.equal(actual["ema"]["weights"][name], tensor), name
    assert [json.loads(l)["epoch"] for l in metrics.read_text().splitlines()] == [0, 1, 2]
    assert [json.loads(l)["train_loss"] for l in metrics.read_text().splitlines()] == \
        [json.loads(l)["train_loss"] for l in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]


def _start_mlflow_server(store: Path, port: int):
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                                "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    from training.tracking import server_reachable

    deadline = time.time() + 120
    while not server_reachable(f"http://127.0.0.1:{port}"):
        assert process.poll() is None and time.time() < deadline, "mlflow server did not start"
        time.sleep(0.3)
    return process


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def test_tracking_server_dying_mid_run_loses_nothing(precomputed, tmp_path):
    """Scenario: Tracking server dies mid-run
    Scenario: Datasets and registry on a server"""
    port, store = _free_port(), tmp_path / "server"
    store.mkdir()
    server = _start_mlflow_server(store, port)
    uri = f"http://127.0.0.1:{port}"
    try:
        run = _run_training(["--dataset", str(precomputed / "dataset"), "--epochs", "3", "--batch-size", "4", "--limit", "8",
                             "--output-dir", str(tmp_path / "runs"), "--run-name", "r", "--overlay-every", "0"], env={"MLFLOW_TRACKING_URI": uri})
        metrics = tmp_path / "runs" / "r" / "metrics.jsonl"
        deadline = time.time() + 300
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert run.poll() is None and time.time() < deadline
            time.sleep(0.05)
        _kill_group(server)
        killed_at = time.time()
        output = run.communicate(timeout=600)[0]
        assert run.returncode == 0, output
        assert time.time() - killed_at < 120, "training waited on the dead server"
        assert "MLflow unavailable" in output and "training.tracking sync" in output
        assert len(metrics.read_text().splitlines()) == 3  # kept locally

        server = _start_mlflow_server(store, port)
        synced = run_python(["-m", "training.tracking", "sync", str(tmp_path / "runs" / "r")])
        assert synced.returncode == 0, synced.stdout + synced.stderr
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        state = json.loads((tmp_path / "runs" / "r" / "mlflow_state.json").read_text())
        history = client.get_metric_history(state["run_id"], "valid_miou")
        assert sorted(m.step for m in history) == [0, 1, 2]
        assert client.get_run(state["run_id"]).info.status == "FINISHED"
        assert "learning_curves.png" in {a.path for a in client.list_artifacts(state["run_id"])}
        run_inputs = client.get_run(state["run_id"]).inputs.dataset_inputs  # sent late, still recorded
        assert sorted(d.tags[0].value for d in run_inputs) == ["training", "validation"]
        first = client.get_model_version_by_alias("TinyEfficientViT-tiny", "champion")
        assert first.run_id == state["run_id"]
        # a second, worse run is registered as a new version but does not take the alias
        worse = run_python(["training/train_efficientvit_local.py", "--dataset", str(precomputed / "dataset"), "--epochs", "1", "--batch-size", "4",
                            "--limit", "8", "--lr", "1e-9", "--output-dir", str(tmp_path / "runs"), "--run-name", "worse", "--overlay-every", "0"],
                           env={"MLFLOW_TRACKING_URI": uri})
        assert worse.returncode == 0, worse.stdout[-2000:] + worse.stderr[-2000:]
        versions = client.search_model_versions("name = 'TinyEfficientViT-tiny'")
        assert len(versions) == 2 and client.get_model_version_by_alias("TinyEfficientViT-tiny", "champion").version == first.version
    finally:
        _kill_group(server)


def test_unreachable_tracking_server_never_blocks_long(tmp_path):
    """Scenario: Tracking server dies mid-run"""
    from training.tracking import Tracker

    tracker = Tracker(tmp_path, f"http://127.0.0.1:{_free_port()}", "exp", "run")
    start = time.time()
    tracker.log_params({"a": 1})
    for step in range(5):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step)
    assert time.time() - start < 10
    assert tracker.pending == 6
    lines = (tmp_path / "mlflow_journal.jsonl").read_text().splitlines()
    assert [json.loads(l)["kind"] for l in lines] == ["params"] + ["metrics"] * 5


def test_best_model_export_is_checked_and_size_guarded(precomputed, tmp_path, monkeypatch):
    """Scenario: Best model exported to ONNX"""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(_cfg(precomputed / "dataset", tmp_path, epochs=1, overlay_every=0))
    path = result.onnx_path
    assert path == tmp_path / "run" / "best_efficientvit_model.onnx" and path.stat().st_size < 300_000
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    from training.checkpoint import load_checkpoint
    from training.export import OnnxSizeError, export_onnx, ort_session, parity_bound
    from training.models import build_model

    model = build_model("tiny")
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "best.pt")["model"])
    model.eval()
    x = np.random.default_rng(0).random((2, 1, 400, 640), dtype=np.float32)
    (onnx_out,) = ort_session(path).run(None, {"image": x})
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x)).numpy()
    assert np.abs(onnx_out - torch_out).max() <= parity_bound(torch_out, 1e-4)
    with pytest.raises(OnnxSizeError, match="over the 1,000-byte budget"):
        export_onnx(model, tmp_path / "too_big.onnx", max_bytes=1000)
    assert not (tmp_path / "too_big.onnx").exists()


def test_a_failed_onnx_export_never_loses_the_run(precomputed, tmp_path, monkeypatch):
    """Scenario: Best model exported to ONNX"""
    import training.engine as engine

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real_export, calls = engine.export_onnx, []

    def flaky(*args, **kwargs):  # the first export fails its parity check, later ones work
        calls.append(1)
        if len(calls) == 1:
            raise AssertionError("ONNX Runtime differs from torch by 2.31e-02")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(engine, "export_onnx", flaky)
    try:
        result, error = train(_cfg(precomputed / "dataset", tmp_path, epochs=3, overlay_every=0, lr=1e-2)), None
    except RuntimeError as raised:  # no later improvement: the run ends loudly, after all its epochs
        result, error = None, raised
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2] and (tmp_path / "run" / "last.pt").exists()  # the run was not lost
    improvements = [row for row in rows if row["best_epoch"] == row["epoch"]]
    assert len(calls) == len(improvements)  # one export per improvement, the failed one included
    onnx = tmp_path / "run" / "best_efficientvit_model.onnx"
    if len(calls) > 1:  # a later improvement exported the model
        assert error is None and result.onnx_path == onnx and onnx.exists()
    else:
        assert "no valid ONNX export" in str(error) and not onnx.exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("visionassist").experiment_id])
    assert run.data.tags["onnx_export_error"].startswith("epoch 1: ONNX Runtime differs")
    assert [m.value for m in client.get_metric_history(run.info.run_id, "onnx_export_failed")] == [1.0]
    # every export failing: the run still ends with its checkpoints, then fails loudly
    monkeypatch.setattr(engine, "export_onnx", lambda *a, **k: (_ for _ in ()).throw(AssertionError("parity")))
    with pytest.raises(RuntimeError, match="no valid ONNX export"):
        train(_cfg(precomputed / "dataset", tmp_path, epochs=1, overlay_every=0, run_name="all-fail"))
    assert (tmp_path / "all-fail" / "best.pt").exists() and (tmp_path / "all-fail" / "last.pt").exists()


def test_ema_weights_are_the_validated_and_exported_model(precomputed, tmp_path, monkeypatch):
    """Scenario: Weight averaging (EMA)"""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # warmup_epochs=0 and a high lr: two steps that move the weights well away from their average
    result = train(_cfg(precomputed / "dataset", tmp_path, epochs=1, overlay_every=0, ema_decay=0.9, lr=0.02, warmup_epochs=0))
    from training.checkpoint import load_checkpoint
    from training.export import ort_session, parity_bound
    from training.models import build_model

    best = load_checkpoint(result.run_dir / "best.pt")
    assert best["ema"]["updates"] == 2  # 8 samples, batch 4
    averaged, trained = build_model("tiny").eval(), build_model("tiny").eval()
    averaged.load_state_dict(best["ema"]["weights"])
    trained.load_state_dict(best["model"])
    saved = torch.load(result.run_dir / "best_state_dict.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in best["ema"]["weights"].items())
    x = np.random.default_rng(0).random((1, 1, 400, 640), dtype=np.float32)
    (onnx_out,) = ort_session(result.onnx_path).run(None, {"image": x})
    with torch.no_grad():
        averaged_out, trained_out = averaged(torch.from_numpy(x)).numpy(), trained(torch.from_numpy(x)).numpy()
    assert np.abs(onnx_out - averaged_out).max() <= parity_bound(averaged_out, 1e-4)
    assert np.abs(onnx_out - trained_out).max() > 10 * parity_bound(trained_out, 1e-4)  # not the raw weights


def test_freeze_encoder_trains_the_decoder_and_head_only(precomputed, tmp_path, monkeypatch):
    """Scenario: Fine-tuning with a frozen encoder"""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from training.engine import frozen_encoder
    from training.models import build_model
    from training.tasks import get_task

    start = build_model("tiny").state_dict()
    torch.save(start, tmp_path / "start.pt")
    result = train(_cfg(precomputed / "dataset", tmp_path, epochs=1, overlay_every=0, lr=0.02, warmup_epochs=0, export_onnx=False,
                        init_from=str(tmp_path / "start.pt"), freeze_encoder=True))
    tuned = torch.load(result.run_dir / "best_state_dict.pt", weights_only=True)
    encoder = [name for name in start if name.startswith("encoder.")]
    assert any("running_mean" in name for name in encoder)  # BatchNorm statistics are among them
    assert all(torch.equal(tuned[name], start[name]) for name in encoder)
    assert any(not torch.equal(tuned[name], start[name]) for name in start if name.startswith("decoder.") and name.endswith("weight"))
    with pytest.raises(ValueError, match="no encoder"):
        frozen_encoder(get_task("ellipse").build_model("tiny"))


def test_torchrun_two_processes_on_cpu(precomputed, tmp_path):
    """Scenario: DDP under torchrun"""
    result = run_python(["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()), "training/train_efficientvit_local.py",
                         "--dataset", str(precomputed / "dataset"), "--epochs", "1", "--batch-size", "2", "--limit", "8",
                         "--output-dir", str(tmp_path), "--run-name", "ddp", "--no-export-onnx", "--overlay-every", "0", "--ema-decay", "0.9"],
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "x2" in result.stdout  # world size 2
    rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # rank 0 alone writes
    last = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert last["world_size"] == 2
    assert last["ema"]["updates"] == 2  # rank 0 averages: 8 samples, 2 ranks x batch 2


@pytest.mark.parametrize("cwd", ["root", "training"])
def test_script_runs_from_the_root_and_from_training(precomputed, tmp_path, cwd):
    """Scenario: One loop, one config"""
    script = "training/train_efficientvit_local.py" if cwd == "root" else "train_efficientvit_local.py"
    result = run_python([script, "--dataset", str(precomputed / "dataset"), "--epochs", "1", "--batch-size", "4", "--limit", "4",
                         "--output-dir", str(tmp_path), "--run-name", "x", "--overlay-every", "0"], cwd=ROOT if cwd == "root" else ROOT / "training")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "x" / "best_efficientvit_model.onnx").exists()


def test_config_flags_files_and_unknown_keys(tmp_path):
    """Scenario: One loop, one config"""
    import dataclasses

    cfg = parse_config(["--dataset", "d", "--epochs", "3", "--no-augment", "--lr", "0.01"])
    assert (cfg.dataset, cfg.epochs, cfg.augment, cfg.lr) == ("d", 3, False, 0.01)
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: 9\nbatch_size: 2\nscheduler: plateau\n")
    cfg = parse_config(["--config", str(config_file), "--epochs", "4"])
    assert (cfg.epochs, cfg.batch_size, cfg.scheduler) == (4, 2, "plateau")  # the flag wins over the file
    (tmp_path / "bad.json").write_text(json.dumps({"epochs": 1, "learning_rate": 0.1}))
    with pytest.raises(ValueError, match="unknown config key.*learning_rate"):
        parse_config(["--config", str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit):
        parse_config(["--learning-rate", "0.1"])
    help_text = subprocess.run([sys.executable, "training/train_efficientvit_local.py", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in help_text, field.name
    with pytest.raises(ValueError, match="scheduler"):
        parse_config(["--scheduler", "linear"])
    assert parse_config(["--vflip", "0.5"]).vflip == 0.5
    with pytest.raises(ValueError, match="vflip must be a probability"):
        parse_config(["--vflip", "1.5"])


def test_fresh_run_refuses_to_overwrite_an_existing_one(precomputed, tmp_path, monkeypatch):
    """Scenario: Resume after SIGKILL is bit-identical"""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(precomputed / "dataset", tmp_path, epochs=1, limit=4, export_onnx=False, overlay_every=0)
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume auto"):
        train(cfg)
    resumed = train(TrainConfig(**{**cfg.to_dict(), "epochs": 2, "resume": "auto"}))
    assert [row["epoch"] for row in resumed.history] == [0, 1]


def test_schedules_device_and_early_stopping(precomputed, tmp_path, monkeypatch):
    """Scenario: Schedules and early stopping"""
    from training.engine import build_scheduler, resolve_device

    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected  # CUDA > MPS > CPU, whatever the host
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # each torchrun rank takes its own GPU
    monkeypatch.undo()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    scheduler = build_scheduler(TrainConfig(epochs=10, warmup_epochs=1), optimizer, steps_per_epoch=4)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and rates[4] == pytest.approx(1.0)
    assert all(b <= a for a, b in zip(rates[4:], rates[5:])) and rates[-1] < 0.05
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stuck = _cfg(precomputed / "dataset", tmp_path, epochs=6, limit=4, lr=1e-12, early_stopping_patience=1, export_onnx=False, overlay_every=0)
    result = train(stuck)
    assert result.epochs_run == 2  # epoch 1 sets the best, epoch 2 does not improve: stop


def test_demo_runs_the_whole_pipeline(tmp_path):
    """Scenario: The main job runs end to end"""
    result = run_python(["-m", "training.demo", "--output-dir", str(tmp_path), "--num-images", "16", "--epochs", "1"],
                        env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    for text in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "ONNX model", "MLflow store", "mlflow ui --backend-store-uri", "overlays", "training.evaluate --model"):
        assert text in out, text
    assert list(tmp_path.glob("runs/demo-*/best_efficientvit_model.onnx"))
    run_dir = next(tmp_path.glob("runs/demo-*"))
    best = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert f"best epoch           1: valid pupil IoU {best['valid_pupil_iou']:.4f}, mIoU {best['valid_miou']:.4f}" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["batch_size"] == 8 and config["model_variant"] == "base" and config["crop"] == "256x384"
    assert config["pretrained"] is True and "fine-tune the shipped pretrained weights" in out  # the documented recipe
    # the synthetic test split is scored at the end, with the report beside the run
    test = json.loads((run_dir / "synthetic_test" / "report.json").read_text())
    assert test["split"] == "test" and test["frames"] >= 1
    assert f"synthetic test       pupil IoU mean {test['pupil_iou_mean']:.4f}, detection@5px {test['detection_rate']:.3f}" in out


def test_input_work_runs_per_batch_on_the_training_device(precomputed, tmp_path, monkeypatch):
    """Scenario: Input work on the training device"""
    import training.engine as engine

    seen = {"augmented": 0, "targets": 0, "loader_maps": 0}
    real_call, real_targets, real_to_device = engine.BatchAugmenter.__call__, engine.label_targets, engine.to_device

    def counting_call(self, batch, epoch, unit_float=False):
        seen["augmented"] += len(batch["index"])
        return real_call(self, batch, epoch, unit_float)

    def counting_targets(label, *args, **kwargs):
        seen["targets"] += label.shape[0]
        return real_targets(label, *args, **kwargs)

    def watching_to_device(batch, device, channels_last, augmenter=None, epoch=0, label_maps=True):
        if augmenter is not None:  # a training batch as the loader workers produced it
            seen["loader_maps"] += int("dist_map" in batch or "spatial_weights" in batch)
            assert batch["image"].dtype == torch.uint8
        return real_to_device(batch, device, channels_last, augmenter, epoch, label_maps)

    monkeypatch.setattr(engine.BatchAugmenter, "__call__", counting_call)
    monkeypatch.setattr(engine, "label_targets", counting_targets)
    monkeypatch.setattr(engine, "to_device", watching_to_device)
    result = train(_cfg(precomputed / "dataset", tmp_path, epochs=1, crop="192x320", export_onnx=False, overlay_every=0))
    assert seen == {"augmented": 8, "targets": 8, "loader_maps": 0}  # every training sample, once; validation uses stored maps
    assert np.isfinite(result.history[-1]["train_loss"])
    with pytest.raises(ValueError, match="crop trains the segmentation task only"):
        train(_cfg(precomputed / "dataset", tmp_path / "e", task="ellipse", crop="192x320"))


MALLINFO_SCRIPT = """
import ctypes, numpy as np
from training.engine import reuse_freed_host_memory

class Info(ctypes.Structure):  # struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped_by(block_bytes):
    before = libc.mallinfo2().hblkhd
    block = np.ones(block_bytes, np.uint8)
    return libc.mallinfo2().hblkhd - before

size = 64 << 20
print(mapped_by(size) >= size, reuse_freed_host_memory(), mapped_by(size))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_cpu_training_reuses_freed_memory():
    """Scenario: CPU training reuses freed memory"""
    out = subprocess.run([sys.executable, "-c", MALLINFO_SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "0"]  # mmapped before; set; no mmapped block after


def _one_step(levers, monkeypatch=None):
    """One TrainStep on a fixed batch of the tiny model; returns its losses."""
    from training import engine
    from training.models import build_model
    from training.targets import label_targets
    from training.tasks import SEGMENTATION

    torch.manual_seed(0)
    cfg = TrainConfig(model_variant="tiny", epochs=1)
    state = engine.build_state(cfg, SEGMENTATION, engine.Runtime(torch.device("cpu"), levers=levers), steps_per_epoch=10, checkpoint=None)
    state.model.load_state_dict(build_model("tiny").state_dict())
    label = torch.zeros(2, 64, 96, dtype=torch.uint8)
    label[:, 20:36, 30:50] = 1
    batch = {"image": torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(1)), "label": label, **label_targets(label)}
    step = engine.TrainStep(state, SEGMENTATION, cfg, levers, torch.device("cpu"))
    return step(batch, 0.5)[1], step


def test_speed_levers_follow_the_device_and_the_run_length(monkeypatch, capsys):
    """Scenario: Speed levers"""
    from training import engine

    cpu, cfg = torch.device("cpu"), TrainConfig()
    short, long = engine.resolve_levers(cfg, cpu, 10), engine.resolve_levers(cfg, cpu, engine.COMPILE_MIN_STEPS)
    assert short == engine.Levers(channels_last=True, autocast_dtype=None, compile=False)
    bf16 = torch.bfloat16 if engine.cpu_has_native_bf16() else None
    assert long == engine.Levers(channels_last=True, autocast_dtype=bf16, compile=True)
    assert not engine.resolve_levers(TrainConfig(compile="off"), cpu, 10**6).compile and engine.resolve_levers(TrainConfig(compile="on"), cpu, 1).compile
    assert engine.resolve_levers(TrainConfig(amp=False, channels_last=False), cpu, 10**6) == engine.Levers(compile=True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert engine.resolve_levers(cfg, torch.device("cuda"), 1) == engine.Levers(channels_last=True, autocast_dtype=torch.bfloat16, compile=True)
    monkeypatch.setattr(engine, "_c_compiler", lambda: None)
    assert not engine.resolve_levers(cfg, cpu, 10**6).compile and "no C compiler" in capsys.readouterr().out
    # a compilation that fails warns once and trains eagerly from the same step: the eager step's loss
    eager, _ = _one_step(engine.Levers(channels_last=True))

    def broken(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("inductor exploded")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    fallen, step = _one_step(engine.Levers(channels_last=True, compile=True))
    assert "torch.compile failed (inductor exploded)" in capsys.readouterr().out and step.compiled is None
    assert torch.equal(fallen["loss"], eager["loss"])


@pytest.mark.slow
def test_compiled_bf16_step_matches_the_eager_step():
    """Scenario: Speed levers

    What a long CPU run's levers change numerically: compile re-associates float32 work, bf16 autocast rounds
    convolution inputs and outputs to 8 significant bits; the loss stays within 2 % of the eager float32 step's."""
    from training import engine

    eager, _ = _one_step(engine.Levers(channels_last=True))
    levers = engine.resolve_levers(TrainConfig(), torch.device("cpu"), engine.COMPILE_MIN_STEPS)  # what a long run uses here
    compiled, step = _one_step(levers)
    assert step.compiled is not None and step.verified
    assert compiled["loss"].item() == pytest.approx(eager["loss"].item(), rel=0.02)
