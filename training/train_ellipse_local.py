"""Train EllipseRegressor: the pupil ellipse (cx, cy, axes, angle) straight from the image, no mask.

    python training/train_ellipse_local.py --dataset precompute_output/dataset --epochs 30
    python training/train_ellipse_local.py --dataset D/dataset --epochs 1 --batch-size 4 --output-dir R
    torchrun --nproc_per_node=2 training/train_ellipse_local.py --dataset D/dataset

Same loop, config and flags as train_efficientvit_local.py (task=ellipse): SmoothL1 on centre and axes plus an
angle term; metrics are centre error in px (mean/median/p95), detection rate within 5 px, axis and angle error.
Targets come from the precomputed cx/cy/rx/ry/angle columns, fitted at load time when absent, and recomputed
from the augmented label. The best model is exported to best_ellipse_model.onnx.
"""

from training.config import TrainConfig, parse_config
from training.engine import train


def main(argv: list[str] | None = None):
    cfg = parse_config(argv, __doc__, TrainConfig(task="ellipse", lr=2e-3, run_name=""))
    if cfg.task != "ellipse":
        raise SystemExit("train_ellipse_local.py trains the ellipse task; use train_efficientvit_local.py for segmentation")
    return train(cfg)


if __name__ == "__main__":
    main()
