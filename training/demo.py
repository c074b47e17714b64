"""The main job behind `make demo`: synthetic frames -> precompute -> train -> ONNX -> score, on this machine.

    python -m training.demo [--output-dir demo_output] [--num-images 480] [--epochs 4] [--from-scratch]

1. writes synthetic near-eye frames of every camera family in the Kaggle layout (training.synthetic),
2. precomputes them exactly as a real download (precompute.py --skip-download --no-push),
3. fine-tunes the shipped pretrained base model on them with train(cfg) (random crops, MLflow in
   <output-dir>/runs/mlflow.db), the way a user starts on their own frames; --from-scratch trains from random
   weights instead (the pretrained model's recipe, training/weights/pretrained.json, shows what that takes),
4. exports the best model to ONNX, scores it on the synthetic test split and prints where everything is.

Synthetic IoU is a smoke figure, not the target: score the model on real frames with `python -m training.evaluate`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from training import precompute
from training.config import TrainConfig
from training.engine import TrainResult, train
from training.evaluate import evaluate_model
from training.synthetic import generate


def synthetic_dataset(out: Path, num_images: int, seed: int, families: list[str] | None = None, workers: int = 0, stages: int = 4,
                      closed_share: float = 0.0) -> Path:
    """Generates `num_images` synthetic frames under out/raw and precomputes them (stages 1 and 2 of `stages`);
    returns the dataset folder. closed_share > 0 shuts the lids of that share of the training frames as well and keeps the
    training split's frames without a pupil (every closed eye, the generator's own too) as rows."""
    raw = out / "raw"
    print(f"[1/{stages}] synthetic frames -> {raw}", flush=True)
    counts = generate(raw, num_images, seed=seed, workers=workers, families=families, closed_share=closed_share)
    print("      " + ", ".join(f"{split} {n}" for split, n in counts.items()), flush=True)
    print(f"[2/{stages}] precompute -> {raw / 'dataset'}", flush=True)
    if precompute.main(["--skip-download", "--no-push", "--output-dir", str(raw), *(["--keep-empty", "train"] if closed_share else [])]) != 0:
        raise SystemExit("precompute failed")
    return raw / "dataset"


def score_on_synthetic_test(result: TrainResult, dataset: Path) -> dict:
    """The exported model's report on the synthetic test split (never used for selection)."""
    if result.onnx_path is None:
        raise SystemExit("training exported no ONNX model")
    print("[4/4] score on the synthetic test split", flush=True)
    return evaluate_model(result.onnx_path, dataset, result.run_dir / "synthetic_test", split="test", timing=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="demo_output", type=Path)
    parser.add_argument("--num-images", type=int, default=480)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-scratch", action="store_true", help="random initial weights instead of the shipped pretrained ones")
    parser.add_argument("--model-variant", default="base", help="the variant of the shipped weights (training/weights/pretrained.json)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = args.output_dir.resolve()
    dataset = synthetic_dataset(out, args.num_images, args.seed)

    print("[3/4] train" + (" from scratch" if args.from_scratch else " (fine-tune the shipped pretrained weights)"), flush=True)
    # Crops cost 0.38x the pixels of whole frames on a CPU; validation and the exported model use whole frames.
    cfg = TrainConfig(dataset=str(dataset), epochs=args.epochs, batch_size=8, crop="256x384", model_variant=args.model_variant,
                      pretrained=not args.from_scratch, lr=3e-3 if args.from_scratch else 1e-3, output_dir=str(out / "runs"), seed=args.seed,
                      run_name=f"demo-{time.strftime('%Y%m%d-%H%M%S')}", overlay_every=2, num_workers=0, early_stopping_patience=0)
    result = train(cfg)
    test = score_on_synthetic_test(result, dataset)
    best = next((row for row in result.history if row["epoch"] == result.best_epoch), {})
    onnx_note = f"{result.onnx_path} ({result.onnx_path.stat().st_size / 1024:.0f} KB)"
    store = Path(cfg.output_dir).resolve() / "mlflow.db"
    print(f"""
done in {(time.perf_counter() - start) / 60:.1f} min
  best epoch           {result.best_epoch + 1}: valid pupil IoU {best.get('valid_pupil_iou', float('nan')):.4f}, mIoU {result.best_metric:.4f}
  synthetic test       pupil IoU mean {test['pupil_iou_mean']:.4f}, detection@5px {test['detection_rate']:.3f} ({test['frames']} frames)
  ONNX model           {onnx_note}
  checkpoints          {result.run_dir / 'best.pt'}, {result.run_dir / 'last.pt'}
  per-epoch metrics    {result.run_dir / 'metrics.jsonl'}
  overlays             {result.run_dir / 'overlays'}
  learning curves      {result.run_dir / 'learning_curves.png'}
  MLflow store         sqlite:///{store} (run {result.mlflow_run_id})
  open the MLflow UI   .venv/bin/mlflow ui --backend-store-uri sqlite:///{store}   (then http://127.0.0.1:5000)
  score on real frames .venv/bin/python -m training.evaluate --model {result.onnx_path} --data YOUR_FRAMES/ --output-dir eval/
""", flush=True)


if __name__ == "__main__":
    main()
