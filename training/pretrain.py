"""Reproduce the shipped pretrained weights (training/weights/): synthetic frames only, one command.

    python -m training.pretrain                                   # the recipe in training/weights/pretrained.json
    python -m training.pretrain --weights-dir my_weights/ --eval-data real_frames/   # also score real frames

Generates the synthetic frames (every camera family, fixed seed), precomputes them, trains with train(cfg), scores
the exported model on the synthetic test split (and on any --eval-data folder of images/ + masks/), then writes
<weights-dir>/<variant>_synthetic.onnx, <variant>_synthetic.pt (state_dict) and pretrained.json (the model card:
recipe, data seed, metrics, time). Nothing real is trained on. A killed run continues with the same command
(`--resume auto` on the same run name). Use the weights with `build_model(variant, pretrained=True)`,
`python -m training.predict --model pretrained ...` or `--pretrained` when training (fine-tuning).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path

from training.config import TrainConfig
from training.demo import score_on_synthetic_test, synthetic_dataset
from training.engine import git_commit, train
from training.evaluate import SUMMARY_KEYS as SUMMARY
from training.evaluate import evaluate_model
from training.files import atomic_write_bytes

RECIPE = {  # the shipped weights' recipe; every value is a flag below
    "num_images": 32000, "seed": 0, "model_variant": "base", "epochs": 8, "batch_size": 8, "lr": 3e-3, "crop": "256x384",
    "ema_decay": 0.0, "vflip": 0.0, "alpha_start": 1.0, "alpha_end": 0.2,
}
TRAIN_FIELDS = {field.name for field in fields(TrainConfig)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="pretrain_output", type=Path, help="data, run directory and MLflow store")
    parser.add_argument("--weights-dir", default=Path(__file__).resolve().parent / "weights", type=Path)
    parser.add_argument("--eval-data", nargs="*", default=[], metavar="[NAME=]FOLDER", help="real frames (images/ + masks/) to score the result on")
    parser.add_argument("--families", default="", help="comma-separated camera families to generate (default: all; e.g. hold one out to test adapting to it)")
    for key, value in RECIPE.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    start, commit = time.perf_counter(), git_commit()  # the code this call runs, not the checkout at its end
    out = args.output_dir.resolve()
    dataset = out / "raw" / "dataset"
    if not any(dataset.glob("*/*.parquet")):  # a resumed run reuses the data
        dataset = synthetic_dataset(out, args.num_images, args.seed, [name for name in args.families.split(",") if name] or None)
    print("[3/4] train", flush=True)
    recipe = {key: getattr(args, key) for key in RECIPE if key in TRAIN_FIELDS}  # every recipe value but the frame count
    cfg = TrainConfig(dataset=str(dataset), **recipe, output_dir=str(out / "runs"), run_name="pretrain", resume="auto", overlay_every=5,
                      num_workers=0, early_stopping_patience=0)
    result = train(cfg)
    test = score_on_synthetic_test(result, dataset)
    metrics = {"synthetic_test": {k: test[k] for k in SUMMARY}}
    for item in args.eval_data:
        name, _, folder = item.rpartition("=")
        report = evaluate_model(result.onnx_path, folder, result.run_dir / "eval" / (name or Path(folder).name), timing=False)
        metrics[name or Path(folder).name] = {k: report[k] for k in SUMMARY}
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{args.model_variant}_synthetic"
    shutil.copyfile(result.onnx_path, args.weights_dir / f"{stem}.onnx")
    shutil.copyfile(result.run_dir / "best_state_dict.pt", args.weights_dir / f"{stem}.pt")
    card = {
        "variant": args.model_variant, "onnx": f"{stem}.onnx", "state_dict": f"{stem}.pt",
        "onnx_bytes": (args.weights_dir / f"{stem}.onnx").stat().st_size,
        "trained_on": f"synthetic frames only (training.synthetic, {'families ' + args.families if args.families else 'every camera family'}); no real frame",
        "command": "python -m training.pretrain " + " ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k in RECIPE) + (f" --families {args.families}" if args.families else ""),
        "recipe": {**{k: getattr(args, k) for k in RECIPE}, "train_config": {k: v for k, v in cfg.to_dict().items() if k not in ("dataset", "output_dir", "resume")}},
        "best_epoch": result.best_epoch + 1, "epochs_run": result.epochs_run,
        "train_minutes": round(sum(row["epoch_seconds"] for row in result.history) / 60, 1),  # all epochs, resumed ones too
        "minutes_this_call": round((time.perf_counter() - start) / 60, 1), "git_commit": commit,
        "metrics": metrics, "postprocess": test["postprocess"],  # the mask the metrics score
    }
    atomic_write_bytes(args.weights_dir / "pretrained.json", (json.dumps(card, indent=2) + "\n").encode())
    print(json.dumps(metrics, indent=2))
    print(f"pretrained weights -> {args.weights_dir} ({card['onnx_bytes'] / 1024:.0f} KB ONNX, {card['train_minutes']} min of training)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
