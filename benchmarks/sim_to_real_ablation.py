"""What matters for real frames: train from scratch on synthetic frames under several settings, score each model on
real frames you bring, one table.

    python benchmarks/sim_to_real_ablation.py --real-data REAL/ [--runs base,openeds_only,no_augment,...] [--output-dir D]

REAL is a folder of images/ + masks/ (pupil = 255), scored with `training.evaluate` (never trained on). Each run is
the pretrained recipe (training.pretrain.RECIPE) at 1,000 frames with one change; runs are resumable (same
--output-dir). Prints
pupil IoU mean, centre detection@5px, and the synthetic-test IoU beside them, and writes ablation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.config import TrainConfig
from training.demo import synthetic_dataset
from training.engine import train
from training.evaluate import evaluate_model
from training.pretrain import RECIPE

FRAMES = 1000  # the ablations' base: the pretrained recipe at 1,000 frames (the shipped weights use RECIPE's count)
# name: (what changes, generator families (None: all), TrainConfig overrides, number of synthetic frames)
RUNS = {
    "base": ("the pretrained recipe at 1,000 frames", None, {}, FRAMES),
    "openeds_only": ("generator: the OpenEDS-like family only (before the camera families)", ["openeds"], {}, FRAMES),
    "no_augment": ("no training augmentation", None, {"augment": False, "crop": ""}, FRAMES),
    "whole_frames": ("augmentation without crops (whole 400x640 frames)", None, {"crop": ""}, FRAMES),
    "longer": ("3x the epochs", None, {"epochs": 3 * RECIPE["epochs"]}, FRAMES),
    "more_data": ("3x the synthetic frames", None, {}, 3 * FRAMES),
    "tiny": ("the tiny variant", None, {"model_variant": "tiny"}, FRAMES),
    "small": ("the small variant", None, {"model_variant": "small"}, FRAMES),
}


def run(name: str, out: Path, real: list[str]) -> dict:
    what, families, overrides, num_images = RUNS[name]
    data_dir = out / "data" / ("-".join(families) if families else "all") / str(num_images)
    dataset = data_dir / "raw" / "dataset"
    if not any(dataset.glob("*/*.parquet")):
        dataset = synthetic_dataset(data_dir, num_images, RECIPE["seed"], families=families)
    values = {"dataset": str(dataset), "model_variant": RECIPE["model_variant"], "epochs": RECIPE["epochs"], "batch_size": RECIPE["batch_size"],
              "lr": RECIPE["lr"], "crop": RECIPE["crop"], "seed": RECIPE["seed"], "output_dir": str(out / "runs"), "run_name": name,
              "resume": "auto", "overlay_every": 0, "num_workers": 0, "early_stopping_patience": 0, **overrides}
    start = time.perf_counter()
    result = train(TrainConfig(**values))
    row = {"run": name, "change": what, "train_minutes": round(sum(r["epoch_seconds"] for r in result.history) / 60, 1),
           "minutes_this_call": round((time.perf_counter() - start) / 60, 1)}
    synthetic = evaluate_model(result.onnx_path, dataset, result.run_dir / "eval_synthetic", split="test", timing=False)
    row["synthetic_test_iou"] = synthetic["pupil_iou_mean"]
    for folder in real:
        report = evaluate_model(result.onnx_path, folder, result.run_dir / "eval" / Path(folder).name, timing=False)
        row[f"{Path(folder).name}_iou"] = report["pupil_iou_mean"]
        row[f"{Path(folder).name}_det5"] = report["detection_rate"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-data", nargs="+", required=True, help="folders of images/ + masks/ to score on")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--output-dir", default="ablation_output", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for name in args.runs.split(","):
        rows.append(run(name, args.output_dir.resolve(), args.real_data))
        (args.output_dir / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(rows[-1]), flush=True)
    keys = [k for k in rows[0] if k not in ("run", "change")]
    print("| run | change | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for row in rows:
        print(f"| {row['run']} | {row['change']} | " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
