"""Train TinyEfficientViTSeg for pupil segmentation on this machine (CPU, CUDA or MPS).

    python training/train_efficientvit_local.py --dataset precompute_output/dataset --epochs 30
    python training/train_efficientvit_local.py --dataset D/dataset --epochs 1 --batch-size 4 --output-dir R
    python training/train_efficientvit_local.py --config my_run.yaml --lr 1e-3   # flags override the file
    python training/train_efficientvit_local.py --resume auto --run-name my-run  # continue a killed run
    torchrun --nproc_per_node=2 training/train_efficientvit_local.py --dataset D/dataset   # DDP

--dataset takes a precompute output, a raw OpenEDS folder or a HuggingFace repo id. Every field of
training.config.TrainConfig is a flag (see --help). MLflow: MLFLOW_TRACKING_URI, else <output-dir>/mlflow.db.
"""

from training.config import TrainConfig, parse_config
from training.engine import train


def main(argv: list[str] | None = None):
    cfg = parse_config(argv, __doc__, TrainConfig(task="segmentation"))
    return train(cfg)


if __name__ == "__main__":
    main()
