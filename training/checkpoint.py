"""Checkpoints and seeds: everything a resumed run needs to continue exactly where it stopped.

`TrainState` is what a run carries from epoch to epoch (model, optimizer, scheduler, AMP scaler, weight average,
epoch, best metric, RNG); `CheckpointSaver` writes it (timm's CheckpointSaver shape: last.pt after every epoch,
best.pt when the monitored metric improves) and `TrainState.load_state_dict` restores it.

A checkpoint holds model, optimizer, scheduler and AMP-scaler state, the weight average (EMA) when the run keeps
one, the epoch, the best metric, RNG states and the resolved config, all as tensors and plain Python values so
that `torch.load(..., weights_only=True)` reads it. Files are written to a temporary name and renamed: a crash
never leaves a half-written `last.pt`.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from training.files import atomic_write_bytes


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seeds python, numpy and torch (all devices) with seed + rank; returns the seed used."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return value


def rng_state() -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return torch.load(path, map_location=map_location, weights_only=True)


def find_resume_checkpoint(resume: str, run_dir: Path) -> Path | None:
    """--resume value -> checkpoint path: a .pt file, a run directory (its last.pt), or "auto" (run_dir/last.pt if
    it exists, else None: a fresh start)."""
    if not resume:
        return None
    if resume == "auto":
        candidate = run_dir / "last.pt"
        return candidate if candidate.exists() else None
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"--resume {resume}: no checkpoint at {path}")
    return path


def inference_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint was validated with: the EMA average when the run kept one, else the model."""
    return checkpoint["ema"]["weights"] if "ema" in checkpoint else checkpoint["model"]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}


@dataclass
class TrainState:
    """Everything a run carries from one epoch to the next."""

    model: torch.nn.Module  # DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: Any = None  # training.ema.ModelEma on the main rank when --ema-decay is set
    epoch: int = -1  # the last finished epoch
    best_metric: float = -math.inf
    best_epoch: int = -1
    stale_epochs: int = 0  # epochs since the monitored metric last improved

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated, selected and exported: the average when kept, else the model."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def improve(self, metric: float) -> bool:
        """Records this epoch's monitored metric; True when it is a new best."""
        if metric > self.best_metric:
            self.best_metric, self.best_epoch, self.stale_epochs = metric, self.epoch, 0
            return True
        self.stale_epochs += 1
        return False

    def state_dict(self, config: dict[str, Any], world_size: int, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        model = unwrap(self.model)
        return {
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "model": state_dict_cpu(model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best_metric": float(self.best_metric),
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale_epochs,
            "rng": rngs or [rng_state()],
            "config": config,
            "model_config": dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else {},
            "world_size": world_size,
        }

    def load_state_dict(self, checkpoint: dict[str, Any], rank: int = 0) -> None:
        """Restores a checkpoint written by state_dict, including this rank's RNG streams."""
        unwrap(self.model).load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None:  # a checkpoint without an average starts it at the resumed weights
            if "ema" in checkpoint:
                self.ema.load_state_dict(checkpoint["ema"])
            else:
                self.ema.module.load_state_dict(checkpoint["model"])
        self.epoch, self.best_metric = checkpoint["epoch"], checkpoint["best_metric"]
        self.best_epoch, self.stale_epochs = checkpoint["best_epoch"], checkpoint["stale_epochs"]
        set_rng_state(checkpoint["rng"][min(rank, len(checkpoint["rng"]) - 1)])


class CheckpointSaver:
    """Writes a run's checkpoints atomically: best.pt when the monitored metric improves, last.pt after every epoch
    (then on_checkpoint(path): the Modal app commits its volume there)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], world_size: int, on_checkpoint: Callable[[Path], None] | None = None) -> None:
        self.run_dir, self.config, self.world_size, self.on_checkpoint = run_dir, config, world_size, on_checkpoint

    def save_best(self, state: TrainState) -> Path:
        return save_checkpoint(self.run_dir / "best.pt", state.state_dict(self.config, self.world_size))

    def save_last(self, state: TrainState, rngs: list[dict[str, Any]]) -> Path:
        path = save_checkpoint(self.run_dir / "last.pt", state.state_dict(self.config, self.world_size, rngs))
        if self.on_checkpoint is not None:
            self.on_checkpoint(path)
        return path


def resume_checkpoint(resume: str, run_dir: Path, model_variant: str) -> dict[str, Any] | None:
    """The checkpoint a run continues from (None: a fresh start); refuses to overwrite a run or mix variants."""
    path = find_resume_checkpoint(resume, run_dir)
    if path is None:
        if (run_dir / "last.pt").exists():
            raise FileExistsError(f"{run_dir} already holds a run: pass --resume auto to continue it, or choose another --run-name")
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint["config"].get("model_variant") != model_variant:
        raise ValueError(f"{path}: checkpoint is a {checkpoint['config'].get('model_variant')!r} model, not {model_variant!r}")
    return checkpoint


__all__ = ["TrainState", "CheckpointSaver", "resume_checkpoint", "seed_everything", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "find_resume_checkpoint", "inference_weights", "unwrap", "state_dict_cpu"]
