"""Train TinyEfficientViTSeg on Modal GPUs: the same train(cfg) as the local script, plus cloud plumbing.

    modal run training/train_efficientvit.py --epochs 50 --gpu H100
    modal run training/train_efficientvit.py --dataset you/openeds-pupil --gpu H100:4 --batch-size 32   # DDP
    modal run training/train_efficientvit.py --run-name exp1 --epochs 80    # same name again: resumes exp1
    modal run training/train_efficientvit.py::precompute_remote --hf-repo you/openeds-pupil   # preprocessing fan-out
    modal volume put visionassist my_frames/ frames/     # your frames (images/ + masks/), then:
    modal run training/train_efficientvit.py --dataset /vol/frames --pretrained --lr 1e-3 --epochs 30 --crop 256x384

One-time set-up: `pip install modal`, `modal token new`, then the secrets you need:
    modal secret create huggingface HF_TOKEN=hf_...                 # private datasets / pushing
    modal secret create mlflow MLFLOW_TRACKING_URI=https://... MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...
    modal secret create kaggle KAGGLE_USERNAME=... KAGGLE_KEY=...    # only for ::precompute_remote
Secret names come from VISIONASSIST_HF_SECRET / VISIONASSIST_MLFLOW_SECRET / VISIONASSIST_KAGGLE_SECRET (set one
to an empty string to attach none). Without the MLflow secret, runs log to an sqlite store on the volume.

Everything that must survive lives on the Volume `visionassist` (VISIONASSIST_VOLUME): the HF dataset cache
(/vol/hf), run directories (/vol/runs/<run-name>) and the precomputed dataset (/vol/precompute). Checkpoints are
written atomically and the volume is committed after each one; on preemption Modal retries the function, which
resumes from last.pt of the same run name. The best ONNX file is returned and written to --local-output-dir.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import modal

from training.config import TrainConfig

APP_NAME = "visionassist-training"
ROOT = Path(__file__).resolve().parents[1]
VOLUME_NAME = os.environ.get("VISIONASSIST_VOLUME", "visionassist")
VOLUME_PATH = os.environ.get("VISIONASSIST_VOLUME_PATH", "/vol")  # where the volume is mounted in the container
DEFAULT_GPU = "L4"  # a tiny model is data-bound: an L4 is the cheapest GPU that keeps up; H100 for sweeps
TRAIN_TIMEOUT = 6 * 60 * 60  # per attempt; a retry resumes from last.pt, so long runs continue across attempts
TRAIN_MEMORY = 32 * 1024  # MiB: decoded samples and loader workers, with room to spare
TRAIN_CPU = 8.0  # loader workers: augmentation runs on the CPU
RETRIES = modal.Retries(max_retries=3, initial_delay=10.0, backoff_coefficient=2.0)  # preemption, transient failures


def _secret(env_name: str, default: str) -> list[modal.Secret]:
    name = os.environ.get(env_name, default)
    return [modal.Secret.from_name(name)] if name else []


HF_SECRETS = _secret("VISIONASSIST_HF_SECRET", "huggingface")
MLFLOW_SECRETS = _secret("VISIONASSIST_MLFLOW_SECRET", "")
KAGGLE_SECRETS = _secret("VISIONASSIST_KAGGLE_SECRET", "kaggle")

# The image is built from the project's own lock file (CUDA torch from PyPI), then the package source is added.
image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("libgl1", "libglib2.0-0")
    .uv_sync(str(ROOT), frozen=True)
    .env({"HF_HOME": f"{VOLUME_PATH}/hf", "PYTHONUNBUFFERED": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    .add_local_python_source("training")
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
app = modal.App(APP_NAME, image=image)


def gpu_count(gpu: str) -> int:
    """"H100:4" -> 4, "H100" -> 1."""
    _, _, count = gpu.partition(":")
    return int(count) if count else 1


def commit_volume(_path: Path | None = None) -> None:
    """Persists the volume now (inside Modal); a no-op when running locally (.local(), tests)."""
    if not modal.is_local():
        volume.commit()


def run_training(config: dict, gpus: int = 1) -> dict:
    """The body of the GPU function: resume-aware train(cfg) on the volume; returns the result and ONNX bytes."""
    cfg = TrainConfig.from_dict(config)
    if not cfg.run_name:
        raise ValueError("run_name must be set by the caller so that a retried attempt resumes the same run")
    cfg = dataclasses.replace(cfg, output_dir=f"{VOLUME_PATH}/runs", resume="auto").validate()
    run_dir = Path(cfg.output_dir) / cfg.run_name
    if gpus > 1:
        _run_ddp(cfg, gpus)
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        best = max((row["best_metric"] for row in history), default=float("nan"))
    else:
        from training.engine import train

        result = train(cfg, on_checkpoint=commit_volume)
        best = result.best_metric
    commit_volume()
    from training.tasks import get_task

    onnx_path = run_dir / get_task(cfg.task).onnx_name  # best_efficientvit_model.onnx or best_ellipse_model.onnx
    return {"run_dir": str(run_dir), "best_metric": best, "onnx_name": onnx_path.name, "onnx": onnx_path.read_bytes() if onnx_path.exists() else None}


def _run_ddp(cfg: TrainConfig, gpus: int) -> None:
    """torchrun inside the container over the same local script (same DDP path as on a workstation)."""
    config_path = Path(f"/tmp/{cfg.run_name}.json")
    config_path.write_text(json.dumps(cfg.to_dict()))
    last = Path(cfg.output_dir) / cfg.run_name / "last.pt"
    stop = threading.Event()

    def commit_on_checkpoint() -> None:  # torchrun's children cannot commit: watch last.pt instead
        seen = None
        while not stop.wait(10.0):
            stamp = last.stat().st_mtime_ns if last.exists() else None
            if stamp != seen:
                seen = stamp
                commit_volume()

    watcher = threading.Thread(target=commit_on_checkpoint, daemon=True)
    watcher.start()
    try:
        subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "-m", "training.train_efficientvit_local",
                        "--config", str(config_path)], check=True)
    finally:
        stop.set()
        watcher.join()


# The GPU function's settings, in one place (tests read them back).
TRAIN_FUNCTION_OPTIONS = dict(gpu=DEFAULT_GPU, timeout=TRAIN_TIMEOUT, retries=RETRIES, memory=TRAIN_MEMORY, cpu=TRAIN_CPU,
                              volumes={VOLUME_PATH: volume}, secrets=[*HF_SECRETS, *MLFLOW_SECRETS])


@app.function(**TRAIN_FUNCTION_OPTIONS)
def train_remote(config: dict, gpus: int = 1) -> dict:
    return run_training(config, gpus)


# ------------------------------------------------------------------------------------ entrypoint
ENTRYPOINT_DEFAULTS = TrainConfig(num_workers=6, batch_size=16, epochs=50, decode_cache="/tmp/visionassist-decoded")  # the cache on the container's own disk


def config_from_options(options: dict) -> TrainConfig:
    """Entrypoint options -> TrainConfig (unknown options fail); a run name is fixed here so retries resume."""
    options = {k: v for k, v in options.items() if k not in {"gpu", "config", "local_output_dir"}}
    values = ENTRYPOINT_DEFAULTS.to_dict()
    values.update(options)
    cfg = TrainConfig.from_dict(values, source="modal run options").validate()
    if not cfg.run_name:
        cfg = dataclasses.replace(cfg, run_name=f"{cfg.task}-{cfg.model_variant}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg


def main(**options) -> None:
    """Same options as training/train_efficientvit_local.py, plus --gpu (e.g. H100 or H100:4) and --local-output-dir."""
    gpu = options.get("gpu") or DEFAULT_GPU
    local_output_dir = Path(options.get("local_output_dir") or "modal_runs")
    if options.get("config"):
        from training.config import read_config_file

        options = {**read_config_file(options["config"]), **{k: v for k, v in options.items() if v is not None}}
    cfg = config_from_options({k: v for k, v in options.items() if v is not None})
    print(f"Modal: training {cfg.run_name} on {gpu} (volume {VOLUME_NAME})", flush=True)
    result = train_remote.with_options(gpu=gpu).remote(cfg.to_dict(), gpu_count(gpu))
    print(f"best valid metric {result['best_metric']:.4f}; run directory on the volume: {result['run_dir']}")
    if result["onnx"]:
        local = local_output_dir / cfg.run_name / result["onnx_name"]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(result["onnx"])
        print(f"best ONNX model: {local} ({len(result['onnx']) / 1024:.0f} KB)")


# Modal builds CLI options from the signature: give `main` one keyword per TrainConfig field (same names and
# defaults as the local script's flags) plus gpu, config and local_output_dir.
main.__signature__ = inspect.Signature(
    [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(ENTRYPOINT_DEFAULTS, f.name), annotation=type(getattr(ENTRYPOINT_DEFAULTS, f.name)))
     for f in dataclasses.fields(TrainConfig)]
    + [inspect.Parameter("gpu", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_GPU, annotation=str),
       inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str),
       inspect.Parameter("local_output_dir", inspect.Parameter.KEYWORD_ONLY, default="modal_runs", annotation=str)]
)
main.__annotations__ = {name: parameter.annotation for name, parameter in main.__signature__.parameters.items()}  # Modal reads types here
main = app.local_entrypoint()(main)


# ------------------------------------------------------------------------------------ precompute fan-out
@app.function(cpu=2.0, memory=8 * 1024, timeout=60 * 60, retries=RETRIES, volumes={VOLUME_PATH: volume})
def write_shard_remote(task: tuple) -> dict:
    """One shard, written atomically to the volume by precompute.write_shard (the local code path)."""
    from training import precompute

    state = precompute.write_shard(task)
    commit_volume()
    return state


@app.function(cpu=4.0, memory=8 * 1024, timeout=6 * 60 * 60, volumes={VOLUME_PATH: volume}, secrets=[*KAGGLE_SECRETS, *HF_SECRETS])
def precompute_remote(hf_repo: str = "", shard_size: int = 32, limit: int = 0, download: bool = True) -> dict:
    """Downloads OpenEDS to the volume (once), fans the shards out over containers with .map, writes the card,
    and pushes to hf_repo if given. Re-running reuses finished shards."""
    from training import precompute

    output_dir = Path(VOLUME_PATH) / "precompute"
    if download and precompute.raw_split_dirs(output_dir, "train") is None:
        precompute.download_openeds(output_dir)
        commit_volume()
    # One container per shard in the cloud; in-process under .local() (tests). Same planning, write_shard and card.
    summaries = precompute.build_dataset(output_dir, workers=1, limit=limit, shard_size=shard_size,
                                         map_shards=None if modal.is_local() else write_shard_remote.map)
    commit_volume()
    if hf_repo:
        precompute.push_to_hub(output_dir / "dataset", hf_repo)
    return {split: {"written": s.written, "empty": s.empty, "bad": len(s.bad)} for split, s in summaries.items()}


if __name__ == "__main__":
    print(__doc__)
