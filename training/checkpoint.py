"""Checkpoints and seeds: everything a resumed run needs to continue exactly where it stopped.

A checkpoint holds model, optimizer, scheduler and AMP-scaler state, the weight average (EMA) when the run keeps
one, the epoch, the best metric, RNG states and the resolved config, all as tensors and plain Python values so
that `torch.load(..., weights_only=True)` reads it. Files are written to a temporary name and renamed: a crash
never leaves a half-written `last.pt`.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.export import atomic_write_bytes


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


__all__ = ["seed_everything", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "find_resume_checkpoint", "inference_weights", "unwrap", "state_dict_cpu"]
