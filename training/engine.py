"""The one training loop: `train(cfg)` serves the local scripts, torchrun (DDP) and the Modal app.

    from training.config import TrainConfig
    from training.engine import train
    result = train(TrainConfig(dataset="precompute_output/dataset", epochs=10))

Per epoch: train (progress bar), validate, step the scheduler, save best.pt (+ ONNX export) when the monitored
validation metric improves, log one metrics dict (console line, metrics.jsonl, MLflow), save last.pt. Early
stopping on the monitored metric. Under torchrun, rank 0 validates, logs and writes files; every rank seeds with
seed + rank and reads its DistributedSampler shard.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from training.checkpoint import find_resume_checkpoint, inference_weights, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state, state_dict_cpu, unwrap
from training.config import TrainConfig
from training.augment import AugmentConfig, BatchAugmenter
from training.data import IMAGE_AND_LABEL, TrainingDataset, open_split, resolve_source
from training.ema import ModelEma
from training.export import OnnxSizeError, atomic_write_bytes, export_onnx
from training.losses import alpha_schedule
from training.models import count_parameters
from training.targets import label_targets
from training.tasks import Task, get_task
from training.tracking import Tracker, default_tracking_uri
from training.visualize import LABEL_COLOR, PREDICTION_COLOR, outline

log = logging.getLogger("training")


# ------------------------------------------------------------------------------------------- runtime
@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto: CUDA > MPS > CPU. Under torchrun each rank takes cuda:LOCAL_RANK."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: CUDA is not available on this machine")
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def setup_runtime(cfg: TrainConfig) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world_size, local_rank)


# ---------------------------------------------------------------------------------------------- run dir
def resolve_run_dir(cfg: TrainConfig, task: Task) -> tuple[Path, str]:
    """output_dir/run_name; a --resume pointing into a run directory reuses that directory."""
    if cfg.resume and cfg.resume != "auto":
        path = Path(cfg.resume)
        run_dir = path if path.is_dir() else path.parent
        return run_dir, cfg.run_name or run_dir.name
    run_name = cfg.run_name or f"{task.name}-{cfg.model_variant}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.output_dir) / run_name, run_name


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------------------------- loop
def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool, augmenter: BatchAugmenter | None = None,
              epoch: int = 0, label_maps: bool = True) -> dict[str, torch.Tensor]:
    """Moves a decoded batch to the device, augments it there (training), derives the label maps there when the
    loss needs them and the batch carries none, and turns uint8 images into float in [0, 1]."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if augmenter is not None:
        out = augmenter(out, epoch, unit_float=True)
    else:
        out["image"] = out["image"].float().div_(255.0)
    if label_maps and "dist_map" not in out:
        out.update(label_targets(out["label"]))
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def _autocast(runtime: Runtime, cfg: TrainConfig):
    enabled = cfg.amp and runtime.device.type == "cuda"
    return torch.autocast(device_type=runtime.device.type, dtype=torch.float16, enabled=enabled)


def train_one_epoch(model, loader, task: Task, optimizer, scheduler, scaler, alpha: float, cfg: TrainConfig, runtime: Runtime, epoch: int,
                    ema: ModelEma | None = None, augmenter: BatchAugmenter | None = None) -> dict[str, float]:
    from tqdm import tqdm

    model.train()
    if cfg.freeze_bn:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    meter = task.new_meter()
    sums: dict[str, float] = {}
    samples = 0
    channels_last = cfg.channels_last and runtime.device.type == "cuda"
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=not runtime.is_main or None)
    for batch in bar:
        batch = to_device(batch, runtime.device, channels_last, augmenter, epoch, task.label_maps)
        with _autocast(runtime, cfg):
            outputs = model(batch["image"])
        losses = task.compute_loss(outputs, batch, alpha)  # in float32
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["loss"]).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model)
        if scheduler is not None and cfg.scheduler == "cosine":
            scheduler.step()
        batch_size = batch["image"].shape[0]
        samples += batch_size
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * batch_size
        with torch.no_grad():
            meter.update(outputs.detach().float() if torch.is_tensor(outputs) else outputs, batch)
        bar.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
    totals = torch.tensor([samples, *sums.values()], dtype=torch.float64, device=runtime.device)
    if runtime.distributed:  # average losses over every rank's samples
        dist.all_reduce(totals)
    count = float(totals[0])
    results = {f"train_{_loss_name(k)}": float(v) / max(count, 1) for k, v in zip(sums, totals[1:].tolist())}
    results.update({f"train_{k}": v for k, v in meter.compute().items()})
    results["train_samples"] = count
    return results


def _loss_name(key: str) -> str:
    return "loss" if key == "loss" else f"{key}_loss"


@torch.no_grad()
def evaluate(model, loader, task: Task, alpha: float, cfg: TrainConfig, runtime: Runtime) -> dict[str, float]:
    model.eval()
    meter = task.new_meter()
    sums: dict[str, float] = {}
    samples = 0
    channels_last = cfg.channels_last and runtime.device.type == "cuda"
    for batch in loader:
        batch = to_device(batch, runtime.device, channels_last, label_maps=task.label_maps)
        with _autocast(runtime, cfg):
            outputs = model(batch["image"])
        outputs = outputs.float() if torch.is_tensor(outputs) else outputs
        losses = task.compute_loss(outputs, batch, alpha)
        batch_size = batch["image"].shape[0]
        samples += batch_size
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value) * batch_size
        meter.update(outputs, batch)
    results = {f"valid_{_loss_name(k)}": v / max(samples, 1) for k, v in sums.items()}
    results.update({f"valid_{k}": v for k, v in meter.compute().items()})
    return results


def build_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)
    total = max(cfg.epochs * steps_per_epoch, 1)
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------------------------ train
@dataclass
class TrainResult:
    run_dir: Path
    best_metric: float
    best_epoch: int
    epochs_run: int
    onnx_path: Path | None
    history: list[dict[str, float]]
    mlflow_run_id: str | None


def train(cfg: TrainConfig, on_checkpoint: Callable[[Path], None] | None = None) -> TrainResult:
    """Runs (or resumes) one training run. on_checkpoint(path), if given, is called on rank 0 after every
    checkpoint is written (the Modal app commits its volume there)."""
    cfg.validate()
    task = get_task(cfg.task)
    if cfg.model_variant not in task.variants:
        raise ValueError(f"unknown model variant {cfg.model_variant!r} for task {task.name}; choose one of {sorted(task.variants)}")
    runtime = setup_runtime(cfg)
    seed_everything(cfg.seed, runtime.rank)
    run_dir, run_name = resolve_run_dir(cfg, task)
    resume_path = find_resume_checkpoint(cfg.resume, run_dir)
    checkpoint = load_checkpoint(resume_path) if resume_path else None
    if checkpoint is None and (run_dir / "last.pt").exists():
        raise FileExistsError(f"{run_dir} already holds a run: pass --resume auto to continue it, or choose another --run-name")

    # data
    train_set = TrainingDataset(open_split(cfg.dataset, "train", columns=IMAGE_AND_LABEL), limit=cfg.limit)  # targets: on the device
    valid_set = TrainingDataset(open_split(cfg.dataset, "validation"), limit=cfg.limit)  # the stored (exact) targets
    augmenter = BatchAugmenter(AugmentConfig(crop=cfg.crop_size() or None), seed=cfg.seed) if cfg.augment else None
    if len(train_set) == 0 or len(valid_set) == 0:
        raise ValueError(f"{cfg.dataset}: empty train ({len(train_set)}) or validation ({len(valid_set)}) split")
    sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=cfg.seed, drop_last=runtime.distributed)
    loader_args = {"num_workers": cfg.num_workers, "pin_memory": runtime.device.type == "cuda", "persistent_workers": cfg.num_workers > 0}
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=False, **loader_args)
    valid_loader = DataLoader(valid_set, batch_size=cfg.batch_size, shuffle=False, **loader_args)

    # model and optimisation
    model = (task.build_model(cfg.model_variant, pretrained=True) if cfg.pretrained else task.build_model(cfg.model_variant)).to(runtime.device)
    if cfg.channels_last and runtime.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    params = count_parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(cfg, optimizer, len(train_loader))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=cfg.amp and runtime.device.type == "cuda")
    start_epoch, best_metric, best_epoch, stale_epochs = 0, -math.inf, -1, 0
    if checkpoint is not None:
        if checkpoint["config"].get("model_variant") != cfg.model_variant:
            raise ValueError(f"{resume_path}: checkpoint is a {checkpoint['config'].get('model_variant')!r} model, not {cfg.model_variant!r}")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best_metric, best_epoch, stale_epochs = checkpoint["epoch"] + 1, checkpoint["best_metric"], checkpoint["best_epoch"], checkpoint["stale_epochs"]
        set_rng_state(checkpoint["rng"][min(runtime.rank, len(checkpoint["rng"]) - 1)])
    # Rank 0 keeps the weight average (every rank holds the same weights after a step); validation, best.pt
    # selection, ONNX export and overlays use it.
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 and runtime.is_main else None
    if ema is not None and checkpoint is not None and "ema" in checkpoint:
        ema.load_state_dict(checkpoint["ema"])
    if runtime.distributed:
        if runtime.device.type == "cuda" and not cfg.freeze_bn:  # batch statistics over all GPUs (CUDA only)
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)

    # outputs (rank 0)
    tracker = None
    history: list[dict[str, float]] = []
    onnx_path = run_dir / task.onnx_name
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
        history = _read_history(run_dir / "metrics.jsonl", before_epoch=start_epoch)
        _write_history(run_dir / "metrics.jsonl", history)
        tracker = Tracker(run_dir, default_tracking_uri(cfg.output_dir), cfg.experiment_name, run_name, artifact_root=Path(cfg.output_dir) / "mlruns")
        if checkpoint is None:
            kind, location = resolve_source(cfg.dataset)
            tracker.set_tags({"model_type": task.model_type, "architecture": f"{task.model_type}-{cfg.model_variant}", "task": task.name,
                              **({"git_commit": commit} if (commit := git_commit()) else {})})
            tracker.log_params({**cfg.to_dict(), "num_parameters": params, "dataset_kind": kind, "dataset_location": str(location),
                                "train_samples": len(train_set), "valid_samples": len(valid_set), "world_size": runtime.world_size, "device": str(runtime.device)})
            tracker.log_artifact(run_dir / "config.json")
        print(f"run {run_name}: {task.model_type}-{cfg.model_variant} ({params:,} params) on {runtime.device} x{runtime.world_size}, "
              f"{len(train_set)} train / {len(valid_set)} valid samples, epochs {start_epoch + 1}..{cfg.epochs} -> {run_dir}", flush=True)

    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        alpha = alpha_schedule(epoch, cfg.epochs, cfg.alpha_start, cfg.alpha_end, cfg.alpha_decay_epochs)
        lr = optimizer.param_groups[0]["lr"]
        metrics = train_one_epoch(model, train_loader, task, optimizer, scheduler, scaler, alpha, cfg, runtime, epoch, ema, augmenter)
        stop = torch.zeros(1, device=runtime.device)
        if runtime.is_main:
            eval_model = ema.module if ema is not None else unwrap(model)
            metrics.update(evaluate(eval_model, valid_loader, task, alpha, cfg, runtime))
            seconds = time.perf_counter() - start
            metrics.update(epoch=epoch, lr=lr, alpha=alpha, epoch_seconds=seconds, images_per_second=metrics.pop("train_samples") / seconds)
            monitored = metrics[task.monitor]
            improved = monitored > best_metric
            if improved:
                best_metric, best_epoch, stale_epochs = monitored, epoch, 0
                save_checkpoint(run_dir / "best.pt", _checkpoint_state(model, optimizer, scheduler, scaler, epoch, best_metric, best_epoch, stale_epochs, cfg, runtime, ema=ema))
                if cfg.export_onnx:
                    export_best(eval_model, onnx_path, task, tracker, epoch)
            else:
                stale_epochs += 1
            metrics.update(best_metric=best_metric, best_epoch=best_epoch)
            history.append(metrics)
            _append_history(run_dir / "metrics.jsonl", metrics)
            print(_summary_line(metrics, task, cfg), flush=True)
            tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            if task.predict_mask is not None and cfg.overlay_every and (epoch % cfg.overlay_every == 0 or epoch == cfg.epochs - 1):
                overlay = save_overlays(eval_model, valid_set, task, run_dir / "overlays" / f"epoch_{epoch + 1:03d}.png", runtime)
                tracker.log_artifact(overlay, "overlays")
            if cfg.scheduler == "plateau":
                scheduler.step(monitored)
            if cfg.early_stopping_patience and stale_epochs >= cfg.early_stopping_patience:
                print(f"early stopping: {task.monitor} has not improved for {stale_epochs} epochs (best {best_metric:.4f} at epoch {best_epoch + 1})", flush=True)
                stop.fill_(1)
        if runtime.distributed:
            dist.broadcast(stop, src=0)
            state = torch.tensor([stale_epochs, best_epoch, best_metric if math.isfinite(best_metric) else -1e9], dtype=torch.float64, device=runtime.device)
            dist.broadcast(state, src=0)
            stale_epochs, best_epoch, best_metric = int(state[0]), int(state[1]), float(state[2])
            if cfg.scheduler == "plateau":
                _sync_lr(optimizer, runtime)
        rngs = _gather_rng_states(runtime)
        if runtime.is_main:
            save_checkpoint(run_dir / "last.pt", _checkpoint_state(model, optimizer, scheduler, scaler, epoch, best_metric, best_epoch, stale_epochs, cfg, runtime, rngs, ema))
            if on_checkpoint is not None:
                on_checkpoint(run_dir / "last.pt")
        if runtime.distributed:
            dist.barrier()
        if stop.item():
            break

    if runtime.is_main:
        finish_run(tracker, run_dir, history, task, onnx_path if onnx_path.exists() else None)
        if cfg.export_onnx and best_epoch >= 0 and not onnx_path.exists():
            raise RuntimeError(f"{run_dir}: no valid ONNX export in this run (see the warnings above); the checkpoints are kept: "
                               f"export best.pt with `python -m training.evaluate --model {run_dir / 'best.pt'}` after fixing the cause")
    if runtime.distributed:
        dist.barrier()
    return TrainResult(run_dir, best_metric, best_epoch, epoch + 1, onnx_path if onnx_path.exists() else None, history, tracker.run_id if tracker else None)


def _checkpoint_state(model, optimizer, scheduler, scaler, epoch, best_metric, best_epoch, stale_epochs, cfg, runtime, rngs=None, ema=None) -> dict[str, Any]:
    return {
        **({"ema": ema.state_dict()} if ema is not None else {}),
        "model": state_dict_cpu(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "best_metric": float(best_metric),
        "best_epoch": best_epoch,
        "stale_epochs": stale_epochs,
        "rng": rngs or [rng_state()],
        "config": cfg.to_dict(),
        "model_config": dataclasses.asdict(unwrap(model).config) if dataclasses.is_dataclass(getattr(unwrap(model), "config", None)) else {},
        "world_size": runtime.world_size,
    }


def _gather_rng_states(runtime: Runtime) -> list[dict[str, Any]]:
    if not runtime.distributed:
        return [rng_state()]
    states: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(states, rng_state())
    return states


def _sync_lr(optimizer, runtime: Runtime) -> None:
    lr = torch.tensor([optimizer.param_groups[0]["lr"]], dtype=torch.float64, device=runtime.device)
    dist.broadcast(lr, src=0)
    for group in optimizer.param_groups:
        group["lr"] = float(lr)


def export_best(model, path: Path, task: Task, tracker: Tracker | None = None, epoch: int = 0) -> bool:
    """Exports the best model as one self-contained ONNX file; raises OnnxSizeError (loudly) at >= 300 KB. Any other
    export problem (exporter error, failed ONNX Runtime parity check) never loses the run: it is logged, recorded in
    MLflow (tag onnx_export_error, metric onnx_export_failed), the previous good file is kept and training goes on."""
    try:
        export_onnx(model, path, output_names=tuple(task.output_shapes))
        return True
    except OnnxSizeError:
        log.error("the best model no longer fits the edge budget: %s", path)
        raise
    except (AssertionError, RuntimeError, ValueError) as error:
        message = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
        log.warning("epoch %d: ONNX export failed (%s); keeping the previous %s and training on", epoch + 1, message, path.name)
        print(f"warning: epoch {epoch + 1}: ONNX export failed ({message}); keeping the previous {path.name}", flush=True)
        if tracker is not None:
            tracker.set_tags({"onnx_export_error": f"epoch {epoch + 1}: {message}"})
            tracker.log_metrics({"onnx_export_failed": 1.0}, step=epoch)
        return False


# ------------------------------------------------------------------------------------- logging helpers
def _summary_line(metrics: dict[str, float], task: Task, cfg: TrainConfig) -> str:
    keys = ["train_loss", "valid_loss", "train_iou", "valid_iou", "valid_miou"] if task.name == "segmentation" else ["train_loss", "valid_loss", "valid_center_error_mean", "valid_detection_rate"]
    parts = " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
    return (f"epoch {metrics['epoch'] + 1:3d}/{cfg.epochs} {parts} lr={metrics['lr']:.2e} alpha={metrics['alpha']:.2f} "
            f"{metrics['epoch_seconds']:.1f}s {metrics['images_per_second']:.1f} img/s best={metrics['best_metric']:.4f}@{metrics['best_epoch'] + 1}")


def _read_history(path: Path, before_epoch: int) -> list[dict[str, float]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["epoch"] < before_epoch]


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def _append_history(path: Path, row: dict[str, float]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


@torch.no_grad()
def save_overlays(model, dataset: TrainingDataset, task: Task, path: Path, runtime: Runtime, count: int = 4) -> Path:
    """Prediction overlays on fixed validation images: label outline red, prediction green."""
    import cv2

    model.eval()
    indices = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    tiles = []
    for index in indices:
        sample = dataset[int(index)]
        image = sample["image"][None].float().div(255.0).to(runtime.device)
        mask = task.predict_mask(model(image))[0].cpu().numpy().astype(np.uint8)
        tile = outline(sample["image"][0].numpy(), [(sample["label"].numpy(), LABEL_COLOR), (mask, PREDICTION_COLOR)])
        tiles.append(cv2.resize(tile, (320, 200), interpolation=cv2.INTER_AREA))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.hstack(tiles))
    return path


def save_learning_curves(history: list[dict[str, float]], path: Path, task: Task) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "valid_loss"):
        left.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key)
    left.set_xlabel("epoch"), left.set_title("loss"), left.legend()
    metric_keys = ("train_iou", "valid_iou", "valid_miou") if task.name == "segmentation" else ("valid_detection_rate",)
    for key in metric_keys:
        right.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key)
    right.set_xlabel("epoch"), right.set_title("IoU" if task.name == "segmentation" else task.monitor), right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def finish_run(tracker: Tracker, run_dir: Path, history: list[dict[str, float]], task: Task, onnx_path: Path | None) -> None:
    if history:
        tracker.log_artifact(save_learning_curves(history, run_dir / "learning_curves.png", task))
    if (run_dir / "best.pt").exists():
        best = load_checkpoint(run_dir / "best.pt")
        torch.save(inference_weights(best), run_dir / "best_state_dict.pt")
        tracker.log_artifact(run_dir / "best_state_dict.pt", "checkpoints")
    if onnx_path is not None:
        tracker.log_artifact(onnx_path, "onnx")
        tracker.log_onnx_model(onnx_path, name="model", output_shapes=task.output_shapes)
    if not tracker.finish():
        print(f"MLflow: {tracker.pending} entries pending; send them with: python -m training.tracking sync {run_dir}", flush=True)
