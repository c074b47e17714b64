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

import ctypes
import dataclasses
import datetime
import logging
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from training.augment import AugmentConfig, BatchAugmenter
from training.checkpoint import CheckpointSaver, TrainState, inference_weights, load_checkpoint, resume_checkpoint, rng_state, seed_everything, unwrap
from training.config import TrainConfig
from training.data import IMAGE_AND_LABEL, DecodedSplit, TrainingDataset, describe_split, open_split, resolve_source
from training.ema import ModelEma
from training.export import OnnxSizeError, export_onnx
from training.losses import alpha_schedule
from training.models import count_parameters
from training.reporting import RunReport
from training.targets import label_targets
from training.tasks import Task, get_task
from training.tracking import Tracker

log = logging.getLogger("training")


# ------------------------------------------------------------------------------------------- runtime
@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    levers: "Levers" = None  # type: ignore[assignment]  # set by train() once the run's length is known

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
    if device.type == "cpu":
        reuse_freed_host_memory()
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world_size, local_rank)


def reuse_freed_host_memory() -> bool:
    """Makes glibc's malloc keep freed memory for the next allocation instead of returning it to the system; True
    when set (Linux with glibc), False elsewhere (a no-op). Call it before the loader workers start: they inherit it.

    Training on the CPU allocates batch-sized tensors every step (activations, augmented frames, targets: 8-64 MB
    each). glibc serves every block above its mmap threshold (32 MB at most) with a fresh mmap and unmaps it on free,
    so each step page-faults the same memory in again: 14 % of the CPU time went to the kernel. With mmap and
    trimming off, freed blocks are reused, as jemalloc and tcmalloc (PyTorch's CPU performance guide suggests
    preloading them) do: the base model's CPU training step went from 12 to 18 images/s on a 2-core machine. The
    process then keeps its peak heap until it exits.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


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


# ------------------------------------------------------------------------------------------ speed levers
COMPILE_MIN_STEPS = 2000  # compile="auto" on the CPU: runs of at least this many steps (compiling costs ~1 min there)


@dataclass(frozen=True)
class Levers:
    """How the training step runs on its device (`resolve_levers`): memory format, mixed precision, compilation."""

    channels_last: bool = False
    autocast_dtype: torch.dtype | None = None  # None: float32
    compile: bool = False

    def autocast(self, device: torch.device):
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None)

    def describe(self) -> str:
        dtype = str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "float32"
        return f"{dtype}, {'channels_last' if self.channels_last else 'contiguous'}, {'compiled' if self.compile else 'eager'}"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), where bf16 convolutions are fast."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_levers(cfg: TrainConfig, device: torch.device, total_steps: int) -> Levers:
    """The training step's levers for this device and run length (measured: benchmarks/train_speed.py).

    - channels_last (cfg.channels_last) on CUDA and the CPU: the CPU step is ~1.3x faster with it (mkldnn's
      depthwise and 1x1 kernels); MPS keeps the default layout.
    - compile (cfg.compile): "auto" compiles forward + loss on CUDA, and on the CPU for runs of at least
      COMPILE_MIN_STEPS steps (inductor takes ~40-75 s per process on a 2-core CPU: it pays after a few minutes);
      never without a C compiler on the CPU (inductor needs one).
    - mixed precision (cfg.amp): float16 on CUDA (bfloat16 where the GPU has it: no loss scaling needed), bfloat16
      on CPUs with native bf16 when the step is compiled (eager bf16 is no faster there). The loss is float32.
    """
    compile_step = {"on": True, "off": False}.get(cfg.compile, device.type == "cuda" or (device.type == "cpu" and total_steps >= COMPILE_MIN_STEPS))
    if compile_step and device.type == "cpu" and not _c_compiler():
        log.warning("compile: no C compiler on this machine (inductor needs one); training runs eagerly")
        print("note: no C compiler found (set CC or install gcc): training runs eagerly", flush=True)
        compile_step = False
    dtype = None
    if cfg.amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif cfg.amp and device.type == "cpu" and compile_step and cpu_has_native_bf16():
        dtype = torch.bfloat16
    return Levers(channels_last=cfg.channels_last and device.type in ("cpu", "cuda"), autocast_dtype=dtype, compile=compile_step)


def _c_compiler() -> str | None:
    import shutil

    return shutil.which(os.environ.get("CC", "")) or shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")


class TrainStep:
    """One optimization step on a batch already on the device: forward + loss (compiled as one graph when the levers
    say so), backward (loss scaling for float16), gradient clipping, optimizer, weight average and a per-step
    schedule. train_one_epoch and benchmarks/train_speed.py both run it.

    Compilation is tried on the first full batch; if it fails (a missing compiler, an unsupported op) the run
    warns once and goes on eagerly from the same step: nothing has been applied yet when compilation fails. A
    batch of another size (the epoch's ragged last batch) runs eagerly instead of compiling a second graph.
    """

    def __init__(self, state: TrainState, task: Task, cfg: TrainConfig, levers: Levers, device: torch.device) -> None:
        self.state, self.task, self.cfg, self.levers, self.device = state, task, cfg, levers, device
        self.compiled = torch.compile(self._forward_loss) if levers.compile else None
        self.compiled_shape: tuple[int, ...] | None = None  # the batch shape the compiled graph runs
        self.verified = False  # the compiled graph has run forward and backward once

    def _forward_loss(self, image: torch.Tensor, batch: dict[str, torch.Tensor], alpha: torch.Tensor):
        with self.levers.autocast(self.device):
            outputs = self.state.model(image)
        return outputs, self.task.compute_loss(outputs, batch, alpha)  # in float32

    def forward_loss(self, batch: dict[str, torch.Tensor], alpha: float):
        alpha_tensor = torch.tensor(alpha, dtype=torch.float32, device=self.device)  # a tensor: no recompile when alpha moves
        image = batch["image"]
        if self.compiled is not None and self.compiled_shape in (None, tuple(image.shape)):
            try:
                result = self.compiled(image, batch, alpha_tensor)
                self.compiled_shape = tuple(image.shape)
                return result
            except Exception as error:  # noqa: BLE001 - dynamo/inductor raise many types; eager is always correct
                if self.verified:
                    raise
                self._give_up(error)
        return self._forward_loss(image, batch, alpha_tensor)

    def _give_up(self, error: Exception) -> None:
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        log.warning("torch.compile failed (%s); training runs eagerly", message)
        print(f"warning: torch.compile failed ({message}); training runs eagerly", flush=True)
        self.compiled, self.compiled_shape = None, None

    def __call__(self, batch: dict[str, torch.Tensor], alpha: float):
        state, cfg = self.state, self.cfg
        optimizer, scaler = state.optimizer, state.scaler
        optimizer.zero_grad(set_to_none=True)
        try:
            outputs, losses = self.forward_loss(batch, alpha)
            scaler.scale(losses["loss"]).backward()
        except Exception as error:  # noqa: BLE001
            if self.compiled is None or self.verified:
                raise
            self._give_up(error)  # the compiled backward failed on its first use: nothing is applied yet
            optimizer.zero_grad(set_to_none=True)
            outputs, losses = self.forward_loss(batch, alpha)
            scaler.scale(losses["loss"]).backward()
        self.verified = self.verified or self.compiled_shape is not None
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if state.ema is not None:
            state.ema.update(state.model)
        if state.scheduler is not None and cfg.scheduler == "cosine":
            state.scheduler.step()
        return outputs, losses


def train_one_epoch(state: TrainState, loader, task: Task, alpha: float, cfg: TrainConfig, runtime: Runtime, epoch: int,
                    augmenter: BatchAugmenter | None = None, step: TrainStep | None = None) -> dict[str, float]:
    from tqdm import tqdm

    model = state.model
    step = step or TrainStep(state, task, cfg, runtime.levers, runtime.device)
    model.train()
    if cfg.freeze_bn or cfg.freeze_encoder:  # BatchNorm on its running statistics: everywhere, or in the frozen encoder
        for module in (model if cfg.freeze_bn else frozen_encoder(model)).modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    meter = task.new_meter()
    sums: dict[str, float] = {}
    samples = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=not runtime.is_main or None)
    for batch in bar:
        batch = to_device(batch, runtime.device, runtime.levers.channels_last, augmenter, epoch, task.label_maps)
        outputs, losses = step(batch, alpha)
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
def validate(model, loader, task: Task, alpha: float, cfg: TrainConfig, runtime: Runtime) -> dict[str, float]:
    model.eval()
    meter = task.new_meter()
    sums: dict[str, float] = {}
    samples = 0
    levers = runtime.levers or Levers()
    amp = levers if runtime.device.type == "cuda" else Levers()  # eager float32 on the CPU (bf16 pays only compiled)
    for batch in loader:
        batch = to_device(batch, runtime.device, levers.channels_last, label_maps=task.label_maps)
        with amp.autocast(runtime.device):
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
    checkpoint = resume_checkpoint(cfg.resume, run_dir, cfg.model_variant)
    data = build_data(cfg, runtime)
    runtime = dataclasses.replace(runtime, levers=resolve_levers(cfg, runtime.device, cfg.epochs * len(data.train_loader)))
    state = build_state(cfg, task, runtime, len(data.train_loader), checkpoint)
    step = TrainStep(state, task, cfg, runtime.levers, runtime.device)
    saver = CheckpointSaver(run_dir, cfg.to_dict(), runtime.world_size, on_checkpoint)
    report = open_report(cfg, task, run_dir, run_name, state, data, runtime, resumed=checkpoint is not None) if runtime.is_main else None
    onnx_path = run_dir / task.onnx_name
    for epoch in range(state.epoch + 1, cfg.epochs):
        start = time.perf_counter()
        data.sampler.set_epoch(epoch)
        alpha = alpha_schedule(epoch, cfg.epochs, cfg.alpha_start, cfg.alpha_end, cfg.alpha_decay_epochs)
        lr = state.optimizer.param_groups[0]["lr"]
        metrics = train_one_epoch(state, data.train_loader, task, alpha, cfg, runtime, epoch, data.augmenter, step)
        state.epoch = epoch
        stop = end_of_epoch(state, metrics, data, task, cfg, runtime, saver, report, onnx_path, alpha, lr, start) if runtime.is_main else False
        stop = sync_ranks(state, stop, cfg, runtime)
        rngs = _gather_rng_states(runtime)
        if runtime.is_main:
            saver.save_last(state, rngs)
        if runtime.distributed:
            dist.barrier()
        if stop:
            break
    if report is not None:
        report.finish(onnx_path if onnx_path.exists() else None)
        if cfg.export_onnx and state.best_epoch >= 0 and not onnx_path.exists():
            raise RuntimeError(f"{run_dir}: no valid ONNX export in this run (see the warnings above); the checkpoints are kept: "
                               f"export best.pt with `python -m training.evaluate --model {run_dir / 'best.pt'}` after fixing the cause")
    if runtime.distributed:
        dist.barrier()
    return TrainResult(run_dir, state.best_metric, state.best_epoch, state.epoch + 1, onnx_path if onnx_path.exists() else None,
                       report.history if report else [], report.tracker.run_id if report else None)


@dataclass
class Data:
    train_set: TrainingDataset
    valid_set: TrainingDataset
    sampler: DistributedSampler
    train_loader: DataLoader
    valid_loader: DataLoader
    augmenter: BatchAugmenter | None


def build_data(cfg: TrainConfig, runtime: Runtime) -> Data:
    """Loaders that decode only; augmentation and targets run per batch on the device (to_device)."""
    own_validation = bool(cfg.val_dataset)
    train_split = "all" if own_validation and resolve_source(cfg.dataset)[0] == "frames" else "train"  # a validation folder: train on every frame
    train_source = open_split(cfg.dataset, train_split, columns=IMAGE_AND_LABEL)  # targets: on the device
    if cfg.decode_cache:
        train_source = DecodedSplit(train_source, Path(cfg.decode_cache), describe_split(cfg.dataset, "train", train_source)["digest"], cfg.limit or None)
    train_set = TrainingDataset(train_source, limit=cfg.limit)
    valid_spec = cfg.val_dataset or cfg.dataset
    valid_split = "all" if own_validation and resolve_source(valid_spec)[0] == "frames" else "validation"
    valid_set = TrainingDataset(open_split(valid_spec, valid_split), limit=cfg.limit)  # the stored targets
    if len(train_set) == 0 or len(valid_set) == 0:
        raise ValueError(f"{cfg.dataset}{' / ' + cfg.val_dataset if cfg.val_dataset else ''}: empty train ({len(train_set)}) or validation ({len(valid_set)}) split")
    sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=cfg.seed, drop_last=runtime.distributed)
    loader_args = {"num_workers": cfg.num_workers, "pin_memory": runtime.device.type == "cuda", "persistent_workers": cfg.num_workers > 0}
    augmenter = BatchAugmenter(AugmentConfig(crop=cfg.crop_size() or None, vflip_p=cfg.vflip), seed=cfg.seed) if cfg.augment else None
    return Data(train_set, valid_set, sampler, DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=False, **loader_args),
                DataLoader(valid_set, batch_size=cfg.batch_size, shuffle=False, **loader_args), augmenter)


def build_state(cfg: TrainConfig, task: Task, runtime: Runtime, steps_per_epoch: int, checkpoint: dict[str, Any] | None) -> TrainState:
    """Model (pretrained if asked), AdamW, schedule, AMP scaler and the rank-0 weight average, restored from the
    checkpoint when resuming, then wrapped for DDP."""
    model = task.build_model(cfg.model_variant, pretrained=True) if cfg.pretrained and not cfg.init_from else task.build_model(cfg.model_variant)
    if cfg.init_from and checkpoint is None:
        model.load_state_dict(initial_weights(cfg.init_from, cfg.model_variant))
    if cfg.freeze_encoder:
        frozen_encoder(model).requires_grad_(False)
    model = model.to(runtime.device)
    levers = runtime.levers or Levers()
    if levers.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=levers.autocast_dtype == torch.float16)  # bfloat16 needs no loss scaling
    # Rank 0 keeps the weight average (every rank holds the same weights after a step).
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 and runtime.is_main else None
    state = TrainState(model, optimizer, build_scheduler(cfg, optimizer, steps_per_epoch), scaler, ema)
    if checkpoint is not None:
        state.load_state_dict(checkpoint, runtime.rank)
    if runtime.distributed:
        if runtime.device.type == "cuda" and not cfg.freeze_bn:  # batch statistics over all GPUs (CUDA only)
            state.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(state.model)
        state.model = torch.nn.parallel.DistributedDataParallel(state.model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    return state


def frozen_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The part `--freeze-encoder` keeps as loaded: the segmentation model's encoder (DDP-wrapped or not)."""
    model = unwrap(model)
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, torch.nn.Module):
        raise ValueError(f"--freeze-encoder: {type(model).__name__} has no encoder to freeze")
    return encoder


def initial_weights(path: str, model_variant: str) -> dict[str, torch.Tensor]:
    """The model weights in a .pt training checkpoint (its validated weights: the average when kept) or state_dict."""
    state = load_checkpoint(path)
    if "model" in state:
        variant = state.get("config", {}).get("model_variant", model_variant)
        if variant != model_variant:
            raise ValueError(f"{path}: a {variant!r} model, not {model_variant!r} (pass --model-variant {variant})")
        return inference_weights(state)
    return state


def open_report(cfg: TrainConfig, task: Task, run_dir: Path, run_name: str, state: TrainState, data: Data, runtime: Runtime, resumed: bool) -> RunReport:
    """The main rank's report; a fresh run also records its tags and parameters in MLflow."""
    report = RunReport(cfg, task, run_dir, run_name, start_epoch=state.epoch + 1)
    params = count_parameters(state.model)
    if not resumed:
        kind, location = resolve_source(cfg.dataset)
        report.tracker.set_tags({"model_type": task.model_type, "architecture": f"{task.model_type}-{cfg.model_variant}", "task": task.name,
                                 **({"git_commit": commit} if (commit := git_commit()) else {})})
        report.tracker.log_params({**cfg.to_dict(), "num_parameters": params, "dataset_kind": kind, "dataset_location": str(location),
                                   "train_samples": len(data.train_set), "valid_samples": len(data.valid_set), "world_size": runtime.world_size,
                                   "device": str(runtime.device)})
        report.tracker.log_artifact(run_dir / "config.json")
        for context, spec, split, dataset in (("training", cfg.dataset, "train", data.train_set), ("validation", cfg.val_dataset or cfg.dataset, "validation", data.valid_set)):
            described = describe_split(spec, split, dataset.source)
            columns = {key: f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}" for key, value in dataset[0].items() if key != "index"}
            report.tracker.log_dataset(**{**described, "rows": len(dataset)}, context=context, columns=columns)
    print(f"run {run_name}: {task.model_type}-{cfg.model_variant} ({params:,} params) on {runtime.device} x{runtime.world_size} ({runtime.levers.describe()}), "
          f"{len(data.train_set)} train / {len(data.valid_set)} valid samples, epochs {state.epoch + 2}..{cfg.epochs} -> {run_dir}", flush=True)
    return report


def end_of_epoch(state: TrainState, metrics: dict[str, float], data: Data, task: Task, cfg: TrainConfig, runtime: Runtime, saver: CheckpointSaver,
                 report: RunReport, onnx_path: Path, alpha: float, lr: float, start: float) -> bool:
    """The main rank's work after an epoch: validate, keep the best (best.pt + ONNX), log, overlays, step a plateau
    schedule. Returns True when early stopping ends the run."""
    metrics.update(validate(state.eval_model, data.valid_loader, task, alpha, cfg, runtime))
    seconds = time.perf_counter() - start
    metrics.update(epoch=state.epoch, lr=lr, alpha=alpha, epoch_seconds=seconds, images_per_second=metrics.pop("train_samples") / seconds)
    monitored = metrics[task.monitor]
    if state.improve(monitored):
        saver.save_best(state)
        if cfg.export_onnx:
            export_best(state.eval_model, onnx_path, task, report.tracker, state.epoch)
    metrics.update(best_metric=state.best_metric, best_epoch=state.best_epoch)
    report.log_epoch(metrics)
    if report.overlays_due(state.epoch):
        report.log_overlays(state.eval_model, data.valid_set, runtime.device, state.epoch)
    if cfg.scheduler == "plateau":
        state.scheduler.step(monitored)
    if cfg.early_stopping_patience and state.stale_epochs >= cfg.early_stopping_patience:
        print(f"early stopping: {task.monitor} has not improved for {state.stale_epochs} epochs (best {state.best_metric:.4f} at epoch {state.best_epoch + 1})", flush=True)
        return True
    return False


def sync_ranks(state: TrainState, stop: bool, cfg: TrainConfig, runtime: Runtime) -> bool:
    """Under DDP: every rank takes rank 0's stop decision, best-metric bookkeeping and plateau learning rate."""
    if not runtime.distributed:
        return stop
    flags = torch.tensor([float(stop), state.stale_epochs, state.best_epoch, state.best_metric if math.isfinite(state.best_metric) else -1e9],
                         dtype=torch.float64, device=runtime.device)
    dist.broadcast(flags, src=0)
    state.stale_epochs, state.best_epoch, state.best_metric = int(flags[1]), int(flags[2]), float(flags[3])
    if cfg.scheduler == "plateau":
        _sync_lr(state.optimizer, runtime)
    return bool(flags[0])


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


