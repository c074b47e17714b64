"""Reproduce the shipped pretrained weights (training/weights/): synthetic frames only, one command.

    python -m training.pretrain                                   # the recipe in training/weights/pretrained.json
    python -m training.pretrain --weights-dir my_weights/ --eval-data real_frames/   # also score real frames

Generates the synthetic frames (every camera family, fixed seed), precomputes them, trains with train(cfg), with
--distill-steps N (default 0: off) teaches the best model its own flip average (training.distill: N batches on
--distill-frames fresh generator frames, single view), scores both models on the synthetic test split (and on any
--eval-data folder of images/ + masks/), and writes the final model (the distilled one, if distilled) as
<weights-dir>/<variant>_synthetic.onnx, <variant>_synthetic.pt (state_dict) and pretrained.json (the model card:
recipe, data seed, metrics, and those before distillation, time). Nothing real is trained on. A killed run continues
with the same command (`--resume auto` on the same run name; the distillation from its last checkpoint). Use the
weights with `build_model(variant, pretrained=True)`, `python -m training.predict --model pretrained ...` or
`--pretrained` when training (fine-tuning).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from dataclasses import fields
from pathlib import Path

import torch

from training.checkpoint import save_checkpoint, state_dict_cpu
from training.config import TrainConfig
from training.demo import synthetic_dataset
from training.distill import BATCH_SIZE, FRAME_SEED_OFFSET, distil, generator_frames
from training.engine import TrainResult, git_commit, resolve_device, train
from training.evaluate import SUMMARY_KEYS as SUMMARY
from training.evaluate import evaluate_model
from training.export import export_onnx
from training.files import atomic_write_bytes
from training.models import build_model
from training.tracking import Tracker, default_tracking_uri

RECIPE = {  # the shipped weights' recipe; every value is a flag below
    "num_images": 32000, "seed": 0, "model_variant": "base", "epochs": 8, "batch_size": 8, "lr": 3e-3, "crop": "256x384",
    "ema_decay": 0.0, "vflip": 0.0, "alpha_start": 1.0, "alpha_end": 0.2, "distill_steps": 0, "distill_frames": 8000,
    "closed_share": 0.12,
}  # distill_steps 0: the flip distillation stage is off (README, "Teaching the single view the average": a trade, not shipped);
# closed_share 0.12: 12 % more of the training frames drawn with the lids shut and trained on as frames without a pupil
# (README, "Closed eyes in training"; --closed-share 0 gives the weights shipped before 2026-12-08)
DISTILL_LR = 3e-4
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
        dataset = synthetic_dataset(out, args.num_images, args.seed, [name for name in args.families.split(",") if name] or None, stages=5,
                                    closed_share=args.closed_share)
    print("[3/5] train", flush=True)
    recipe = {key: getattr(args, key) for key in RECIPE if key in TRAIN_FIELDS}  # the recipe values that are TrainConfig fields
    cfg = TrainConfig(dataset=str(dataset), **recipe, output_dir=str(out / "runs"), run_name="pretrain", resume="auto", overlay_every=5,
                      num_workers=0, early_stopping_patience=0)
    result = train(cfg)
    if result.onnx_path is None:
        raise SystemExit("training exported no ONNX model")
    weights, onnx_path, before, distillation = result.run_dir / "best_state_dict.pt", result.onnx_path, None, None
    if args.distill_steps:
        before = score(onnx_path, dataset, args.eval_data, result.run_dir / "before_distillation")
        weights, onnx_path, distillation = flip_distillation(args, cfg, result)
    print("[5/5] score on the synthetic test split" + (" and --eval-data" if args.eval_data else ""), flush=True)
    metrics = score(onnx_path, dataset, args.eval_data, result.run_dir)
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{args.model_variant}_synthetic"
    shutil.copyfile(onnx_path, args.weights_dir / f"{stem}.onnx")
    shutil.copyfile(weights, args.weights_dir / f"{stem}.pt")
    card = {
        "variant": args.model_variant, "onnx": f"{stem}.onnx", "state_dict": f"{stem}.pt",
        "onnx_bytes": (args.weights_dir / f"{stem}.onnx").stat().st_size,
        "trained_on": f"synthetic frames only (training.synthetic, {'families ' + args.families if args.families else 'every camera family'}); no real frame",
        "command": "python -m training.pretrain " + " ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k in RECIPE) + (f" --families {args.families}" if args.families else ""),
        "recipe": {**{k: getattr(args, k) for k in RECIPE}, "train_config": {k: v for k, v in cfg.to_dict().items() if k not in ("dataset", "output_dir", "resume")}},
        "best_epoch": result.best_epoch + 1, "epochs_run": result.epochs_run,
        "train_minutes": round(sum(row["epoch_seconds"] for row in result.history) / 60, 1),  # all epochs, resumed ones too
        "minutes_this_call": round((time.perf_counter() - start) / 60, 1), "git_commit": commit, "machine": machine(cfg.device),
        "metrics": {name: {k: report[k] for k in SUMMARY} for name, report in metrics.items()},
        "postprocess": metrics["synthetic_test"]["postprocess"],  # the mask the metrics score
        "zoom": metrics["synthetic_test"]["zoom"],  # and the looks it is drawn from (training.inference.zoomed)
    }
    if distillation is not None:
        card["distillation"] = distillation
        card["metrics_before_distillation"] = {name: {k: report[k] for k in SUMMARY} for name, report in before.items()}
    atomic_write_bytes(args.weights_dir / "pretrained.json", (json.dumps(card, indent=2) + "\n").encode())
    print(json.dumps(card["metrics"], indent=2))
    print(f"pretrained weights -> {args.weights_dir} ({card['onnx_bytes'] / 1024:.0f} KB ONNX, {card['train_minutes']} min of training)")
    return 0


def machine(device: str) -> dict[str, str | int]:
    """Where the weights were trained: the same seed gives the same weights on one machine, not across machines."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")), cpu)
    resolved = resolve_device(device)
    return {"cpu": cpu, "threads": torch.get_num_threads(), "device": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else resolved.type,
            "torch": torch.__version__, "python": platform.python_version()}


def score(onnx_path: Path, dataset: Path, eval_data: list[str], out: Path) -> dict[str, dict]:
    """The model's reports on the synthetic test split (out/synthetic_test) and on each --eval-data folder (out/eval/NAME)."""
    reports = {"synthetic_test": evaluate_model(onnx_path, dataset, out / "synthetic_test", split="test", timing=False)}
    for item in eval_data:
        name, _, folder = item.rpartition("=")
        name = name or Path(folder).name
        reports[name] = evaluate_model(onnx_path, folder, out / "eval" / name, timing=False)
    return reports


def flip_distillation(args: argparse.Namespace, cfg: TrainConfig, result: TrainResult) -> tuple[Path, Path, dict]:
    """Teaches a copy of the run's best model its own flip average (training.distill) on fresh generator frames, logs
    the stage to MLflow as its own run (`<run_name>-distill`) and exports it; returns the state_dict, the ONNX file and
    the card's record of the stage. Resumes from run_dir/distill/last.pt; a finished stage is not run again."""
    out = result.run_dir / "distill"
    weights, onnx_path, record_path = out / "state_dict.pt", out / "model.onnx", out / "distillation.json"
    if record_path.exists():
        print(f"[4/5] flip distillation: done before ({out})", flush=True)
        return weights, onnx_path, json.loads(record_path.read_text())
    print(f"[4/5] flip distillation: {args.distill_steps} batches on {args.distill_frames} generator frames -> {out}", flush=True)
    start, frame_seed = time.perf_counter(), args.seed + FRAME_SEED_OFFSET
    device = resolve_device(cfg.device)
    trained = torch.load(result.run_dir / "best_state_dict.pt", map_location="cpu", weights_only=True)
    teacher, student = (build_model(args.model_variant) for _ in range(2))
    for model in (teacher, student):
        model.load_state_dict(trained)
        model.to(device)
    images, masks = generator_frames(args.distill_frames, frame_seed)
    params = {"distill_steps": args.distill_steps, "distill_frames": args.distill_frames, "frame_seed": frame_seed, "lr": DISTILL_LR,
              "batch_size": min(BATCH_SIZE, args.distill_frames), "teacher": str(result.run_dir / "best_state_dict.pt"), "model_variant": args.model_variant}
    tracker = Tracker(out, default_tracking_uri(cfg.output_dir), cfg.experiment_name, f"{cfg.run_name}-distill", artifact_root=Path(cfg.output_dir) / "mlruns")
    tracker.log_params(params)
    losses = distil(teacher, student, images, masks, args.distill_steps, DISTILL_LR, seed=args.seed, checkpoint=out / "last.pt", amp=device.type != "mps")
    for step in range(0, len(losses), 50):
        tracker.log_metrics({"distill_loss": float(sum(losses[step:step + 50]) / len(losses[step:step + 50]))}, step=step)
    student.eval()
    save_checkpoint(weights, state_dict_cpu(student))
    export_onnx(student, onnx_path)
    tracker.log_onnx_model(onnx_path)
    record = {**{k: v for k, v in params.items() if k != "teacher"}, "minutes": round((time.perf_counter() - start) / 60, 1),
              "final_loss": round(float(sum(losses[-50:]) / len(losses[-50:])), 5)}
    tracker.log_metrics({"distill_minutes": record["minutes"]}, step=len(losses))
    tracker.finish()
    atomic_write_bytes(record_path, (json.dumps(record, indent=2) + "\n").encode())
    return weights, onnx_path, record


if __name__ == "__main__":
    raise SystemExit(main())
