"""Run a pupil model on images, folders or videos: overlays plus a per-frame pupil ellipse table.

    python -m training.predict --model best_efficientvit_model.onnx frame.png more_frames/ clip.mp4 --output-dir pred/
    python -m training.predict --model pretrained my_frames/ --save-masks        # draft masks to correct: my_frames/masks/

For each frame: the dataset's preprocessing (training.preprocess.prepare_frame: gamma + CLAHE, letterbox to the
model input), ONNX Runtime, the pupil probability mapped back to the frame, then two more looks centred on the pupil
found, zoomed so that it is 60 and 100 px across in the model input, their probabilities averaged
(training.inference.zoomed; --zoom PX ... sets the sizes, --no-zoom keeps the first look alone), the largest region's ellipse
(training.preprocess.fit_ellipse) of the predicted mask (--postprocess: by default that ellipse, filled;
training.inference.pupil_mask). Writes pred/overlays/*.png (or pred/<video>_overlay.mp4 for a video) and
pred/predictions.csv + predictions.json with frame, cx, cy, rx, ry, angle (pixels/degrees, frame coordinates),
confidence (mean pupil probability inside the predicted region; 0 when no pupil is found).

--save-masks (model-assisted labelling) also writes each image's predicted pupil as a mask PNG (pupil 255, the rest 0,
the image's size) into masks/ beside the images/ folder that holds it (or beside the image), the layout training and
evaluate read: correct them in any image editor instead of drawing them from nothing. A mask that is already there
is never overwritten (it may hold your corrections) unless --overwrite-masks. --flips averages the model over each
frame and its flips (4x the work, better drafts on real frames: training.inference.flip_averaged).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from training import preprocess
from training.data import IMAGE_SUFFIXES, is_frames_folder
from training.files import atomic_write_bytes
from training.inference import DEFAULT_POSTPROCESS, ZOOM_DIAMETERS, Predictor, add_postprocess_option, load_predictor, predict_frame, pupil_mask
from training.visualize import PREDICTION_COLOR, outline

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
FIELDS = ["source", "frame", "cx", "cy", "rx", "ry", "angle", "confidence"]


def predict_ellipse(predictor: Predictor, frame: np.ndarray, postprocess: str = DEFAULT_POSTPROCESS) -> tuple[dict[str, float], np.ndarray]:
    """One frame -> (ellipse record, binary mask on the frame's grid; training.inference.pupil_mask)."""
    probability = predict_frame(predictor, frame)
    mask = pupil_mask(probability, postprocess)
    ellipse = preprocess.fit_ellipse(mask)
    if ellipse is None:
        return {"cx": np.nan, "cy": np.nan, "rx": np.nan, "ry": np.nan, "angle": np.nan, "confidence": 0.0}, mask
    return {"cx": ellipse.cx, "cy": ellipse.cy, "rx": ellipse.rx, "ry": ellipse.ry, "angle": ellipse.angle,
            "confidence": float(probability[mask > 0].mean())}, mask


def draw(frame: np.ndarray, record: dict[str, float], mask: np.ndarray) -> np.ndarray:
    canvas = outline(frame, [(mask, PREDICTION_COLOR)])
    if np.isfinite(record["cx"]):
        cv2.ellipse(canvas, ((record["cx"], record["cy"]), (2 * record["rx"], 2 * record["ry"]), record["angle"]), (0, 0, 255), 1, cv2.LINE_AA)
        cv2.drawMarker(canvas, (round(record["cx"]), round(record["cy"])), (0, 0, 255), cv2.MARKER_CROSS, 8, 1)
    return canvas


def expand_inputs(inputs: list[str]) -> Iterator[Path]:
    for item in inputs:
        path = Path(item)
        if path.is_dir() and is_frames_folder(path):  # a folder of your frames: its images
            yield from sorted(p for p in (path / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such image, folder or video")


def mask_path(image: Path) -> Path:
    """Where --save-masks writes an image's mask: masks/<stem>.png beside the images/ folder that holds it, else
    beside the image."""
    folder = image.parent.parent if image.parent.name == "images" else image.parent
    return folder / "masks" / f"{image.stem}.png"


def save_mask(image: Path, mask: np.ndarray, overwrite: bool = False) -> bool:
    """Writes the mask (pupil 255) at mask_path(image), atomically; False (nothing written) when one is there."""
    path = mask_path(image)
    if path.exists() and not overwrite:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", (mask > 0).astype(np.uint8) * 255)
    if not ok:
        raise ValueError(f"{path}: could not encode the mask")
    atomic_write_bytes(path, encoded.tobytes())
    return True


def predict_paths(model: str, inputs: list[str], output_dir: str | Path, postprocess: str = DEFAULT_POSTPROCESS, save_masks: bool = False,
                  overwrite_masks: bool = False, flips: bool = False, zoom: tuple[float, ...] = ZOOM_DIAMETERS) -> list[dict]:
    """Predicts every input; returns one record per frame. With save_masks, each image's record says whether its
    mask was written ("mask": written | kept, the one there stays). flips: training.inference.flip_averaged; zoom:
    training.inference.zoomed (none: one look)."""
    predictor = load_predictor(model, flips=flips, zoom=zoom)
    output_dir = Path(output_dir)
    (output_dir / "overlays").mkdir(parents=True, exist_ok=True)
    records = []
    for path in expand_inputs(inputs):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            records += _predict_video(predictor, path, output_dir, postprocess)
            continue
        frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if frame is None:  # one bad file never stops the others: named here and left out
            print(f"warning: skipped {path}: not a readable image", file=sys.stderr, flush=True)
            continue
        record, mask = predict_ellipse(predictor, frame, postprocess)
        cv2.imwrite(str(output_dir / "overlays" / f"{path.stem}.png"), draw(frame, record, mask))
        records.append({"source": str(path), "frame": 0, **record})
        if save_masks:
            records[-1]["mask"] = "written" if save_mask(path, mask, overwrite_masks) else "kept"
    with open(output_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    (output_dir / "predictions.json").write_text(json.dumps([{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in records], indent=1))
    return records


def _predict_video(predictor: Predictor, path: Path, output_dir: Path, postprocess: str = DEFAULT_POSTPROCESS) -> list[dict]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer, records, index = None, [], 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            record, mask = predict_ellipse(predictor, frame, postprocess)
            canvas = draw(frame, record, mask)
            if writer is None:
                writer = cv2.VideoWriter(str(output_dir / f"{path.stem}_overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (canvas.shape[1], canvas.shape[0]))
            writer.write(canvas)
            records.append({"source": str(path), "frame": index, **record})
            index += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".onnx model, .pt checkpoint, or 'pretrained' (the shipped weights)")
    parser.add_argument("inputs", nargs="+", help="images, folders of images, or video files")
    parser.add_argument("--output-dir", default="predictions")
    add_postprocess_option(parser)
    parser.add_argument("--save-masks", action="store_true", help="also write each image's predicted pupil to masks/<stem>.png beside its images/ folder (to correct, then train on)")
    parser.add_argument("--overwrite-masks", action="store_true", help="with --save-masks: replace masks that are already there (default: keep them)")
    args = parser.parse_args(argv)
    try:
        records = predict_paths(args.model, args.inputs, args.output_dir, args.postprocess, args.save_masks, args.overwrite_masks, args.flips, tuple(args.zoom))
    except (FileNotFoundError, ValueError) as error:  # a missing input, a bad model (ModelLoadError) or an unreadable video
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = sum(1 for r in records if r["confidence"] > 0)
    print(f"{len(records)} frames, pupil found in {found}; results in {Path(args.output_dir) / 'predictions.csv'}")
    if args.save_masks:
        written = [r for r in records if r.get("mask") == "written"]
        kept = sum(1 for r in records if r.get("mask") == "kept")
        folders = sorted({str(mask_path(Path(r["source"])).parent) for r in written})
        print(f"masks: {len(written)} written to {', '.join(folders) or '-'}; {kept} already there and kept (--overwrite-masks replaces them)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
