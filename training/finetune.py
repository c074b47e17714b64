"""Adapt the shipped weights to your camera: fine-tune on a few labelled frames of your own.

    visionassist-finetune --data my_frames/ --output-dir finetune/                          # validates on a held-out person
    visionassist-finetune --data my_frames/ --val-data other_frames/ --output-dir finetune/  # or on frames you name
    visionassist-finetune --data my_frames/ --model runs/x/best.pt --output-dir finetune/   # from your own checkpoint
    visionassist-finetune --data my_frames/ --output-dir finetune/ --resume auto            # continue a killed run

--data (and --val-data): your frames as evaluate reads them, images/ (PNG or JPEG, any size) and masks/<image
stem>.png (pupil = any non-zero value). Frames are letterboxed to the model input as evaluate and predict see them.
Without --val-data, a seeded fifth of the people validates (a person = the file name's part before the first
underscore: alice_0001.png); with one person only, a fifth of the frames does (said in a warning). Frames whose mask
is missing, unreadable or of another size are named in a warning and left out; frames without a pupil are left out.

Runs train(cfg) with the few-shot recipe below (the usual MLflow run, checkpoints, progress bar and resume), scores
the validation frames with the starting model and the fine-tuned one (the default mask of evaluate), and prints both
and where the ONNX model is (DIR/finetuned.onnx). The recipe (FEW_SHOT) was chosen on synthetic frames of a camera
family held out of pretraining (README, "Adapt to your camera"); every field is a flag.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from training.config import TrainConfig, add_config_arguments, config_from_args
from training.data import BadInput, FramesSplit, is_frames_folder, person_of
from training.engine import train
from training.evaluate import evaluate_model
from training.models import pretrained_card

# The few-shot recipe (10-200 frames): the shipped weights, a lower learning rate than pretraining, enough epochs
# for ~10 frames to be seen a few hundred times, crops at full pixel scale around the pupil, eager (short runs).
FEW_SHOT = {"epochs": 30, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 1, "crop": "256x384", "early_stopping_patience": 0, "overlay_every": 0,
            "num_workers": 0, "compile": "off"}


def check_frames(folder: Path, what: str) -> FramesSplit:
    """Every usable frame of a folder of your own frames; raises ValueError with one line when there are none."""
    if not folder.is_dir():
        raise ValueError(f"{what} {folder}: no such folder")
    if not is_frames_folder(folder):
        missing = [name for name in ("images", "masks") if not (folder / name).is_dir()]
        raise ValueError(f"{what} {folder}: no {' and no '.join(f'{name}/' for name in missing)} folder (expected {folder}/images/*.png and "
                         f"{folder}/masks/<same name>.png, pupil = non-zero)")
    quiet = logging.getLogger("training.data")
    level, quiet.level = quiet.level, logging.ERROR  # bad frames are reported below: one line when none is usable
    try:
        frames = FramesSplit(folder, "all", columns=["image", "label"])
    except FileNotFoundError as error:
        raise ValueError(f"{what} {error}") from error
    finally:
        quiet.setLevel(level)
    if len(frames) == 0:
        reason = f"{len(frames.bad)} bad, e.g. {frames.bad[0]}" if frames.bad else f"{frames.empty} masks without a pupil"
        raise ValueError(f"{what} {folder}: no usable frame ({reason})")
    for message in frames.bad:
        print(f"warning: left out {message}", file=sys.stderr)
    return frames


def checkpoint_variant(path: Path) -> str:
    """The model variant a .pt training checkpoint records (a bare state_dict: the shipped weights' variant)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for a file that is not a checkpoint
        raise ValueError(f"--model {path}: not a loadable .pt checkpoint ({str(error).splitlines()[0][:200]})") from error
    return state.get("config", {}).get("model_variant") or pretrained_card()["variant"]


def validation_folder(data: Path, out: Path) -> Path:
    """The held-out frames of --data (data.grouped_split, as training validates) as a folder evaluate reads: links
    under out/validation_frames/."""
    held = FramesSplit(data, "validation", columns=["image", "label"])
    folder = out / "validation_frames"
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for image_path, mask_path in held.items:
        os.symlink(image_path.resolve(), folder / "images" / image_path.name)
        os.symlink(mask_path.resolve(), folder / "masks" / mask_path.name)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="your labelled frames: images/ + masks/")
    parser.add_argument("--val-data", type=Path, help="frames to validate on (images/ + masks/); default: a held-out person of --data")
    parser.add_argument("--model", default="pretrained", help="'pretrained' (the shipped weights) or a .pt checkpoint / state_dict to start from")
    add_config_arguments(parser, TrainConfig(**FEW_SHOT))
    args = parser.parse_args(argv)
    out = Path(args.output_dir or "finetune_output").resolve()
    try:
        train_frames = check_frames(args.data, "--data")
        val_frames = check_frames(args.val_data, "--val-data") if args.val_data else None
        if args.model != "pretrained" and not Path(args.model).is_file():
            raise ValueError(f"--model {args.model}: no such checkpoint")
        variant = args.model_variant or (pretrained_card()["variant"] if args.model == "pretrained" else checkpoint_variant(Path(args.model)))
        start_model = "pretrained" if args.model == "pretrained" else args.model
        out.mkdir(parents=True, exist_ok=True)
        val_folder = args.val_data if args.val_data else validation_folder(args.data, out)
        defaults = TrainConfig(**FEW_SHOT, dataset=str(args.data), val_dataset=str(args.val_data or ""), model_variant=variant,
                               pretrained=args.model == "pretrained", init_from="" if args.model == "pretrained" else str(args.model),
                               output_dir=str(out / "runs"), run_name="finetune")
        args.output_dir = None  # taken above: the runs go below it
        cfg = config_from_args(args, defaults)
    except (ValueError, BadInput, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    people = len({person_of(image.name) for image, _ in train_frames.items})
    left_out = f" ({len(train_frames.bad)} bad, {train_frames.empty} without a pupil: left out)" if train_frames.bad or train_frames.empty else ""
    print(f"fine-tuning {start_model} ({variant}) on {args.data}: {len(train_frames)} usable frames of {people} people{left_out}; validating on "
          f"{'the frames of' if val_frames else 'held-out people of --data, linked in'} {val_folder}", flush=True)
    start = time.perf_counter()
    before = evaluate_model(start_model, val_folder, out / "eval_before", timing=False)
    result = train(cfg)
    if result.onnx_path is None:
        print("error: training exported no ONNX model", file=sys.stderr)
        return 1
    onnx = out / "finetuned.onnx"
    shutil.copyfile(result.onnx_path, onnx)
    after = evaluate_model(onnx, val_folder, out / "eval_after", timing=False)
    rows = [("pupil IoU (mean)", "pupil_iou_mean", "{:.3f}"), ("centre error (median, px)", "center_error_median", "{:.2f}"),
            ("centres within 5 px", "detection_rate", "{:.1%}"), ("boundary offset (mean, px)", "boundary_offset_mean", "{:+.2f}")]
    print(f"\nvalidation frames ({after['frames']}), {after['postprocess']} mask of {after['looks_per_frame']} looks:   before -> after")
    for label, key, fmt in rows:
        print(f"  {label:28s} {fmt.format(before[key]):>8s} -> {fmt.format(after[key])}")
    print(f"\nfine-tuned ONNX model  {onnx} ({onnx.stat().st_size / 1024:.0f} KB)\ncheckpoints            {result.run_dir}\n"
          f"reports                {out / 'eval_before'}, {out / 'eval_after'}\ndone in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
