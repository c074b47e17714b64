"""Run a pupil model on images, folders or videos: overlays plus a per-frame pupil ellipse table.

    python -m training.predict --model best_efficientvit_model.onnx frame.png more_frames/ clip.mp4 --output-dir pred/

For each frame: the dataset's preprocessing (training.preprocess.prepare_frame: gamma + CLAHE, letterbox to the
model input), ONNX Runtime, the pupil probability mapped back to the frame, the largest region's ellipse
(training.preprocess.fit_ellipse) of the predicted mask (--postprocess: by default the largest region's convex
hull; training.inference.pupil_mask). Writes pred/overlays/*.png (or pred/<video>_overlay.mp4 for a video) and
pred/predictions.csv + predictions.json with frame, cx, cy, rx, ry, angle (pixels/degrees, frame coordinates),
confidence (mean pupil probability inside the predicted region; 0 when no pupil is found).
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
from training.inference import Predictor, add_postprocess_option, load_predictor, predict_frame, pupil_mask
from training.visualize import PREDICTION_COLOR, outline

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv"}
FIELDS = ["source", "frame", "cx", "cy", "rx", "ry", "angle", "confidence"]


def predict_ellipse(predictor: Predictor, frame: np.ndarray, postprocess: str = "hull") -> tuple[dict[str, float], np.ndarray]:
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
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such image, folder or video")


def predict_paths(model: str, inputs: list[str], output_dir: str | Path, postprocess: str = "hull") -> list[dict]:
    predictor = load_predictor(model)
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
    with open(output_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(records)
    (output_dir / "predictions.json").write_text(json.dumps([{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in records], indent=1))
    return records


def _predict_video(predictor: Predictor, path: Path, output_dir: Path, postprocess: str = "hull") -> list[dict]:
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
    args = parser.parse_args(argv)
    try:
        records = predict_paths(args.model, args.inputs, args.output_dir, args.postprocess)
    except (FileNotFoundError, ValueError) as error:  # a missing input, a bad model (ModelLoadError) or an unreadable video
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = sum(1 for r in records if r["confidence"] > 0)
    print(f"{len(records)} frames, pupil found in {found}; results in {Path(args.output_dir) / 'predictions.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
