"""The one training config: every script (local, Modal, ellipse) fills this dataclass and calls `train(cfg)`.

argparse flags are generated from the fields, so the CLI and the config file can never disagree; unknown keys
in a config file fail loudly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_HF_REPO = "Conner/sddec25-01"


@dataclass
class TrainConfig:
    # data
    dataset: str = DEFAULT_HF_REPO  # HF repo id, precompute output (<dir>/dataset), raw OpenEDS folder, or your frames (images/ + masks/)
    val_dataset: str = ""  # validate on this source instead (frames folder: all its frames; others: their validation split)
    task: str = "segmentation"  # segmentation | ellipse
    limit: int = 0  # use at most this many samples per split (0: all)
    augment: bool = True  # synchronized flip/affine/photometric augmentation on the training split
    vflip: float = 0.0  # probability of an upside-down flip in augmentation (the left-right flip is always 0.5)
    crop: str = ""  # "HxW": train on random crops (mostly around the pupil) at full pixel scale; validation stays whole ("": whole frames)
    num_workers: int = 0  # DataLoader worker processes
    decode_cache: str = ""  # folder for the training split decoded once into uint8 memory maps (512 KiB a row): workers copy rows instead of decoding parquet ("": off)
    # model
    model_variant: str = "tiny"  # a key of training.models.VARIANTS (or ELLIPSE_VARIANTS for task=ellipse)
    pretrained: bool = False  # start from the shipped synthetic-trained weights (training/weights/) to fine-tune
    init_from: str = ""  # start from these weights instead: a .pt training checkpoint or state_dict of model_variant (fine-tuning)
    # optimisation
    epochs: int = 30  # maximum number of epochs
    batch_size: int = 8  # per process
    lr: float = 3e-3  # peak learning rate (AdamW)
    weight_decay: float = 1e-4  # AdamW weight decay
    scheduler: str = "cosine"  # cosine (with linear warmup) | plateau (ReduceLROnPlateau on valid mIoU)
    warmup_epochs: int = 1  # linear warmup length for the cosine schedule
    grad_clip: float = 1.0  # max gradient norm (0: off)
    ema_decay: float = 0.0  # EMA of the weights (e.g. 0.995) for validation, best.pt and ONNX export (0: off)
    freeze_bn: bool = False  # BatchNorm uses running statistics (fine-tuning, tiny per-GPU batches, exact CPU DDP)
    freeze_encoder: bool = False  # train the decoder and head only: the encoder's weights and BatchNorm statistics stay as loaded (few-shot fine-tuning)
    early_stopping_patience: int = 10  # stop after this many epochs without a better valid metric (0: off)
    alpha_start: float = 1.0  # Dice weight at epoch 0; the surface loss gets 1 - alpha
    alpha_end: float = 0.2  # Dice weight after alpha_decay_epochs (linear decay, as in RITnet)
    alpha_decay_epochs: int = 0  # epochs over which alpha decays (0: all epochs)
    # runtime
    device: str = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps
    amp: bool = True  # mixed precision where it pays: float16/bfloat16 on CUDA, bfloat16 on CPUs with native bf16 when compiled
    channels_last: bool = True  # channels_last memory format on CUDA and the CPU (ignored on MPS)
    compile: str = "auto"  # torch.compile of forward + loss: auto (CUDA; CPU runs of >= 2,000 steps) | on | off
    seed: int = 42  # base seed; each DDP rank adds its rank
    # outputs
    output_dir: str = "runs"  # run directories are created below this
    run_name: str = ""  # run directory / MLflow run name (empty: <model>-<variant>-<timestamp>)
    resume: str = ""  # path to a checkpoint, a run directory, or "auto" (latest last.pt of run_name)
    experiment_name: str = "visionassist"  # MLflow experiment
    overlay_every: int = 5  # log prediction overlays every N epochs (0: off)
    export_onnx: bool = True  # export the best model to ONNX whenever the valid metric improves

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        return cls(**check_keys(values, source))

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(read_config_file(path), source=str(path))

    def crop_size(self) -> tuple[int, ...]:
        """The crop as (height, width); () when training on whole frames."""
        try:
            return tuple(int(side) for side in self.crop.lower().split("x")) if self.crop else ()
        except ValueError:
            return (0,)

    def validate(self) -> "TrainConfig":
        if self.task not in {"segmentation", "ellipse"}:
            raise ValueError(f"task must be 'segmentation' or 'ellipse', not {self.task!r}")
        if self.compile not in {"auto", "on", "off"}:
            raise ValueError(f"compile must be 'auto', 'on' or 'off', not {self.compile!r}")
        if self.scheduler not in {"cosine", "plateau"}:
            raise ValueError(f"scheduler must be 'cosine' or 'plateau', not {self.scheduler!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, not {self.lr}")
        if self.crop and (not self.augment or len(self.crop_size()) != 2 or min(self.crop_size()) < 32):
            raise ValueError(f"crop must be 'HxW' with both sides >= 32 (and augmentation on), not {self.crop!r}")
        if self.crop and self.task != "segmentation":
            raise ValueError("crop trains the segmentation task only (the ellipse head regresses whole-frame coordinates)")
        if self.init_from and not self.init_from.endswith((".pt", ".pth")):
            raise ValueError(f"init_from must be a .pt checkpoint or state_dict (an ONNX file cannot be trained), not {self.init_from!r}")
        if (self.pretrained or self.init_from) and self.task != "segmentation":
            raise ValueError("pretrained weights ship for the segmentation task only")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: off), not {self.ema_decay}")
        if not 0.0 <= self.vflip <= 1.0:
            raise ValueError(f"vflip must be a probability in [0, 1] (0: off), not {self.vflip}")
        return self


def check_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown config key(s) {unknown}; known keys: {sorted(known)}")
    return values


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file, its keys checked against TrainConfig."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of field names to values")
    return check_keys(values, str(path))


def add_config_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """One flag per TrainConfig field (`--batch-size`, `--no-augment` for booleans) plus `--config FILE`."""
    defaults = defaults or TrainConfig()
    parser.add_argument("--config", help="YAML or JSON file with config fields; flags given on the command line win")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=f"(default: {default})")
        else:
            parser.add_argument(flag, dest=f.name, type=type(default), default=None, help=f"(default: {default!r})")


def config_from_args(args: argparse.Namespace, defaults: TrainConfig | None = None) -> TrainConfig:
    """Defaults < config file < flags given on the command line."""
    values = (defaults or TrainConfig()).to_dict()
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    for name in values:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    return TrainConfig(**values).validate()


def parse_config(argv: list[str] | None = None, description: str = "", defaults: TrainConfig | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, defaults)
    return config_from_args(parser.parse_args(argv), defaults)
