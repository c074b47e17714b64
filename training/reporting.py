"""What a run reports besides its checkpoints: the per-epoch console line, metrics.jsonl (the history), MLflow
metrics and artifacts, prediction overlays and learning curves. The engine calls `RunReport` on the main rank only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import inference_weights, load_checkpoint
from training.config import TrainConfig
from training.files import atomic_write_bytes
from training.tasks import Task
from training.tracking import Tracker, default_tracking_uri
from training.visualize import LABEL_COLOR, PREDICTION_COLOR, outline


class RunReport:
    """The main rank's record of one run: history (metrics.jsonl, trimmed to the resumed epoch), MLflow, files."""

    def __init__(self, cfg: TrainConfig, task: Task, run_dir: Path, run_name: str, start_epoch: int) -> None:
        self.cfg, self.task, self.run_dir = cfg, task, run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
        self.history = read_history(run_dir / "metrics.jsonl", before_epoch=start_epoch)
        write_history(run_dir / "metrics.jsonl", self.history)
        self.tracker = Tracker(run_dir, default_tracking_uri(cfg.output_dir), cfg.experiment_name, run_name, artifact_root=Path(cfg.output_dir) / "mlruns")

    def log_epoch(self, metrics: dict[str, float]) -> None:
        self.history.append(metrics)
        append_history(self.run_dir / "metrics.jsonl", metrics)
        print(summary_line(metrics, self.task, self.cfg), flush=True)
        self.tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=int(metrics["epoch"]))

    def overlays_due(self, epoch: int) -> bool:
        return self.task.predict_mask is not None and bool(self.cfg.overlay_every) and (epoch % self.cfg.overlay_every == 0 or epoch == self.cfg.epochs - 1)

    def log_overlays(self, model, dataset, device: torch.device, epoch: int) -> None:
        path = save_overlays(model, dataset, self.task, self.run_dir / "overlays" / f"epoch_{epoch + 1:03d}.png", device)
        self.tracker.log_artifact(path, "overlays")

    def finish(self, onnx_path: Path | None) -> None:
        """Learning curves, the best inference weights and the ONNX model as artifacts; sends what is pending."""
        if self.history:
            self.tracker.log_artifact(save_learning_curves(self.history, self.run_dir / "learning_curves.png", self.task))
        if (self.run_dir / "best.pt").exists():
            torch.save(inference_weights(load_checkpoint(self.run_dir / "best.pt")), self.run_dir / "best_state_dict.pt")
            self.tracker.log_artifact(self.run_dir / "best_state_dict.pt", "checkpoints")
        if onnx_path is not None:
            self.tracker.log_artifact(onnx_path, "onnx")
            self.tracker.log_onnx_model(onnx_path, name="model", output_shapes=self.task.output_shapes)
            best = max((row["best_metric"] for row in self.history), default=float("-inf"))
            self.tracker.register_model(f"{self.task.model_type}-{self.cfg.model_variant}", self.task.monitor, best)
        if not self.tracker.finish():
            print(f"MLflow: {self.tracker.pending} entries pending; send them with: python -m training.tracking sync {self.run_dir}", flush=True)


def summary_line(metrics: dict[str, float], task: Task, cfg: TrainConfig) -> str:
    keys = ["train_loss", "valid_loss", "train_pupil_iou", "valid_pupil_iou", "valid_miou"] if task.name == "segmentation" else ["train_loss", "valid_loss", "valid_center_error_mean", "valid_detection_rate"]
    parts = " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
    return (f"epoch {metrics['epoch'] + 1:3d}/{cfg.epochs} {parts} lr={metrics['lr']:.2e} alpha={metrics['alpha']:.2f} "
            f"{metrics['epoch_seconds']:.1f}s {metrics['images_per_second']:.1f} img/s best={metrics['best_metric']:.4f}@{metrics['best_epoch'] + 1}")


def read_history(path: Path, before_epoch: int) -> list[dict[str, float]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["epoch"] < before_epoch]


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def append_history(path: Path, row: dict[str, float]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


@torch.no_grad()
def save_overlays(model, dataset, task: Task, path: Path, device: torch.device, count: int = 4) -> Path:
    """Prediction overlays on fixed validation images: label outline red, prediction green."""
    import cv2

    model.eval()
    indices = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    tiles = []
    for index in indices:
        sample = dataset[int(index)]
        image = sample["image"][None].float().div(255.0).to(device)
        mask = task.predict_mask(model(image))[0].cpu().numpy().astype(np.uint8)
        tile = outline(sample["image"][0].numpy(), [(sample["label"].numpy(), LABEL_COLOR), (mask, PREDICTION_COLOR)])
        tiles.append(cv2.resize(tile, (320, 200), interpolation=cv2.INTER_AREA))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.hstack(tiles))
    return path


def save_learning_curves(history: list[dict[str, Any]], path: Path, task: Task) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "valid_loss"):
        left.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key)
    left.set_xlabel("epoch"), left.set_title("loss"), left.legend()
    metric_keys = ("train_pupil_iou", "valid_pupil_iou", "valid_miou") if task.name == "segmentation" else ("valid_detection_rate",)
    for key in metric_keys:
        right.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key)
    right.set_xlabel("epoch"), right.set_title("IoU" if task.name == "segmentation" else task.monitor), right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
