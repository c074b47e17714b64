"""The protocol behind visionassist-finetune's defaults: adapt to a camera the model has never seen, on synthetic frames.

    python -m training.pretrain --num-images 3000 --families openeds,offaxis,face --output-dir hold --weights-dir hold/w
    python benchmarks/few_shot.py --model hold/w/base_synthetic.pt --family closeup --sizes 5,10,20,50 --output-dir fs/
    python benchmarks/few_shot.py ... --recipe epochs=15,lr=0.001 --real-data meye=REAL/meye face=REAL/face_val
    python benchmarks/few_shot.py --model training/weights/base_synthetic.pt --sizes 8 --test-people 20 --erode 2 --recipe freeze_encoder=true

A camera family held out of pretraining stands in for your camera: frames of it are written as images/ + masks/
folders by person (subject), N labelled frames (the first people's) fine-tune the model with visionassist-finetune
(validating on 3 other people), and the frames of every remaining person score it before and after. With
--real-data, each fine-tuned model is also scored on real frames, to check that adapting to one camera does not
forget real eyes. With --erode PX every mask is eroded by PX pixels: annotators who draw tighter than the generator's
labels (the camera then differs in its labels as well as its look). Prints one table: frames, people, pupil IoU,
centres within 5 px and mean boundary offset before -> after.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from training import finetune
from training.evaluate import evaluate_model
from training.synthetic import FRAMES_PER_SUBJECT, render_frame


def write_people(folder: Path, family: str, people: range, seed: int, erode: int = 0) -> Path:
    """FRAMES_PER_SUBJECT frames of each subject in `people` (family forced), named person<id>_<k>.png; masks eroded by
    `erode` px (frames whose pupil erodes away are left out)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for person in people:
        for k in range(FRAMES_PER_SUBJECT):
            image, label = render_frame(seed, person * FRAMES_PER_SUBJECT + k, person, family)
            mask = (label == 3).astype(np.uint8)
            mask = cv2.erode(mask, kernel) if erode else mask
            if mask.any():
                cv2.imwrite(str(folder / "images" / f"person{person:03d}_{k}.png"), image)
                cv2.imwrite(str(folder / "masks" / f"person{person:03d}_{k}.png"), mask * 255)
    return folder


def subset(source: Path, folder: Path, count: int) -> Path:
    """The first `count` frames of `source` (sorted: whole people first) as their own folder."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for image in sorted((source / "images").glob("*.png"))[:count]:
        shutil.copy(image, folder / "images" / image.name)
        shutil.copy(source / "masks" / image.name, folder / "masks" / image.name)
    return folder


def recipe_flag(key: str, value: str) -> str:
    """One --recipe override as a visionassist-finetune flag: key=true/false for switches, else --key=value."""
    flag = key.replace("_", "-")
    if value.lower() in ("true", "false"):
        return f"--{flag}" if value.lower() == "true" else f"--no-{flag}"
    return f"--{flag}={value}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".pt weights pretrained without --family")
    parser.add_argument("--family", default="closeup")
    parser.add_argument("--sizes", default="5,10,20,50")
    parser.add_argument("--recipe", default="", help="overrides of the few-shot recipe, e.g. epochs=15,lr=0.0003,freeze_encoder=true")
    parser.add_argument("--erode", type=int, default=0, help="erode every mask by this many pixels (tighter annotators)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--test-people", type=int, default=25)
    parser.add_argument("--real-data", nargs="*", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--output-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="few_shot_")))
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    out = args.output_dir
    train_people = -(-max(sizes) // FRAMES_PER_SUBJECT)
    pool = write_people(out / "pool", args.family, range(0, train_people), args.seed, args.erode)
    val = write_people(out / "val", args.family, range(1000, 1003), args.seed, args.erode)
    test = write_people(out / "test", args.family, range(2000, 2000 + args.test_people), args.seed, args.erode)
    real = dict(item.split("=", 1) for item in args.real_data)
    overrides = [recipe_flag(key, value) for key, value in (kv.split("=", 1) for kv in args.recipe.split(",") if kv)]
    before = evaluate_model(args.model, test, out / "test_before", timing=False)
    real_before = {name: evaluate_model(args.model, folder, out / f"{name}_before", timing=False) for name, folder in real.items()}
    rows = []
    for size in sizes:
        start = time.perf_counter()
        data = subset(pool, out / f"train_{size}", size)
        run = out / f"ft_{size}"
        assert finetune.main(["--data", str(data), "--val-data", str(val), "--model", args.model, "--output-dir", str(run), *overrides]) == 0
        after = evaluate_model(run / "finetuned.onnx", test, out / f"test_after_{size}", timing=False)
        real_after = {name: evaluate_model(run / "finetuned.onnx", folder, run / f"{name}_after", timing=False) for name, folder in real.items()}
        people = len({p.name.split("_")[0] for p in (data / "images").glob("*.png")})
        rows.append((size, people, after, real_after, (time.perf_counter() - start) / 60))
    print(f"\nfamily {args.family}, recipe {finetune.FEW_SHOT} {args.recipe or ''}; test: {before['frames']} frames of {args.test_people} other people")
    print(f"{'frames':>6s} {'people':>6s} {'pupil IoU':>16s} {'within 5 px':>16s} {'offset (px)':>16s} {'minutes':>8s}  " + "  ".join(f"{name} IoU" for name in real))
    for size, people, after, real_after, minutes in rows:
        real_cells = "  ".join(f"{real_before[n]['pupil_iou_mean']:.3f} -> {real_after[n]['pupil_iou_mean']:.3f}" for n in real)
        print(f"{size:6d} {people:6d} {before['pupil_iou_mean']:.3f} -> {after['pupil_iou_mean']:.3f} "
              f"{before['detection_rate']:6.1%} -> {after['detection_rate']:6.1%} "
              f"{before['boundary_offset_mean']:+6.2f} -> {after['boundary_offset_mean']:+6.2f} {minutes:8.1f}  {real_cells}")


if __name__ == "__main__":
    main()
