"""Evaluate a segmentation model on a split or on your own frames, and write the numbers a user asks for.

    python -m training.evaluate --model best_efficientvit_model.onnx --data D --output-dir eval/
    python -m training.evaluate --model runs/x/best.pt --data D/dataset --split test --output-dir eval/
    python -m training.evaluate --model m.onnx --data my_frames/ --output-dir eval/   # images/*.png + masks/*.png
    python -m training.evaluate --model pretrained --data cam_a/ cam_b/ --output-dir eval/ --min-pupil-px 30
    python -m training.evaluate --model m.onnx --data D --output-dir eval/ --mlflow-run-id RUN_ID

--data: one or more of a precompute output, a raw OpenEDS folder, or a plain folder with images/*.png and
masks/*.png of the same names (pupil = 255, anything else 0). Frames of another size are letterboxed to the model
input and the predictions mapped back. Each frame gets two more looks centred on the pupil found, zoomed so that it is
60 and 100 px across in the model input, and their mean is scored (training.inference.zoomed; --no-zoom: one look).
Per data folder: report.json and report.md (pupil IoU mean/median, mIoU, Dice, pixel accuracy, precision, recall,
centre error median/p95 from an ellipse fitted to the predicted mask, detection rate within 5 px, the same by pupil
size, ONNX Runtime latency at 1 and all threads), confusion_matrix.png, per_image.csv and worst/*.png (image | label |
prediction side by side). With several folders each gets its own sub-folder and summary.md holds one table. An
unreadable image or mask is named in a warning, counted in the report and left out (--strict makes it fatal); a
missing path or a bad model exits 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from training import preprocess
from training.data import BadInput, iter_frames
from training.inference import (DEFAULT_POSTPROCESS, ZOOM_DIAMETERS, ModelLoadError, Predictor, add_postprocess_option, latency_ms, load_predictor,
                                predict_frame, pupil_mask)
from training.metrics import SegmentationMeter, area_ratio, binary_iou, boundary_offset, center_error, center_statistics, scores_from_confusion, visible_edge
from training.visualize import LABEL_COLOR, PREDICTION_COLOR, outline

log = logging.getLogger("training.evaluate")
POSTPROCESS_TEXT = {"ellipse": "the ellipse fitted to the region above probability 0.5 with the most pupil probability, filled (--postprocess ellipse)",
                    "hull": "convex hull of the region above probability 0.5 with the most pupil probability (--postprocess hull)",
                    "region": "the region above probability 0.5 with the most pupil probability (--postprocess region)",
                    "none": "every pixel above probability 0.5 (--postprocess none)"}
SIZE_BINS = ((0, 10), (10, 20), (20, 40), (40, 80), (80, float("inf")))  # pupil diameter in px on the frame's grid


def pupil_size_bin(mask: np.ndarray) -> str:
    """The frame's pupil size class by equivalent diameter, e.g. "10-20px"; "none" for an empty label."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return "none"
    diameter = 2.0 * np.sqrt(area / np.pi)
    return _bin_name(*next(b for b in SIZE_BINS if b[0] <= diameter < b[1]))


def _bin_name(low: float, high: float) -> str:
    return f">={low}px" if high == float("inf") else f"{low}-{high}px"


def evaluate_model(model: str | os.PathLike | Predictor, data: str | os.PathLike, output_dir: str | os.PathLike, split: str = "validation",
                   worst_k: int = 6, limit: int = 0, timing: bool = True, min_pupil_px: int = 0, strict: bool = False,
                   postprocess: str = DEFAULT_POSTPROCESS, flips: bool = False, zoom: tuple[float, ...] = ZOOM_DIAMETERS) -> dict[str, Any]:
    """Scores `model` (a path, "pretrained" or a loaded Predictor, whose own flips and zoom stand; `flips`: a path's
    model flip-averaged, training.inference.flip_averaged; `zoom`: its second looks, training.inference.zoomed, none
    for one look) on the frames of `data` and writes the report files.
    Frames whose label has fewer than `min_pupil_px` pupil pixels are left out (and counted). The predicted mask is
    `training.inference.pupil_mask(probability, postprocess)`: by default the ellipse fitted to the strongest region above 0.5 (DEFAULT_POSTPROCESS)."""
    output_dir = Path(output_dir)
    (output_dir / "worst").mkdir(parents=True, exist_ok=True)
    predictor = model if isinstance(model, Predictor) else load_predictor(model, flips=flips, zoom=zoom)
    meter = SegmentationMeter()
    rows, keep, timing_input, bad, too_small = [], [], None, ([] if not strict else None), 0
    for frame in iter_frames(data, split, limit, bad):
        if min_pupil_px and np.count_nonzero(frame.mask) < min_pupil_px:
            too_small += 1
            continue
        if timing_input is None:
            timing_input = preprocess.prepare_frame(frame.image, predictor.input_height, predictor.input_width, frame.preprocessed)[0]
        probability = predict_frame(predictor, frame.image, frame.preprocessed)
        predicted = pupil_mask(probability, postprocess)
        meter.update(predicted, frame.mask)
        error = center_error(predicted, frame.mask)
        edge = visible_edge(frame.image, frame.mask) if frame.mask.any() else None
        rows.append({"filename": frame.name, "pupil_iou": binary_iou(predicted, frame.mask), "center_error_px": error,
                     "boundary_offset_px": boundary_offset(predicted, frame.mask), "area_ratio": area_ratio(predicted, frame.mask),
                     "label_vs_edge": edge.ratio(frame.mask) if edge else float("nan"),
                     "prediction_vs_edge": edge.ratio(predicted) if edge else float("nan"),
                     "label_pixels": int(frame.mask.sum()), "predicted_pixels": int(predicted.sum()), "pupil_size": pupil_size_bin(frame.mask)})
        keep.append((rows[-1]["pupil_iou"], frame.name, frame.image, frame.mask, predicted))
        keep = sorted(keep, key=lambda item: item[0])[:worst_k]  # only the k worst frames stay in memory
    if not rows:
        raise ValueError(f"{data}: no frames found for split {split!r}" + (f" ({too_small} below --min-pupil-px {min_pupil_px})" if too_small else ""))
    scores = scores_from_confusion(meter.matrix)
    ious = np.array([row["pupil_iou"] for row in rows])
    report: dict[str, Any] = {
        "model": predictor.source, "data": str(data), "split": split, "frames": len(rows),
        "bad_inputs": len(bad or []), "bad_input_messages": bad or [], "frames_below_min_pupil_px": too_small, "min_pupil_px": min_pupil_px,
        "postprocess": postprocess, "flips": predictor.views > 1, "zoom": list(predictor.zoom), "looks_per_frame": predictor.looks,
        "pupil_iou_mean": float(ious.mean()), "pupil_iou_median": float(np.median(ious)), "pupil_iou_split": scores["pupil_iou"],
        "miou": scores["miou"], "dice": scores["dice"], "pixel_accuracy": scores["pixel_accuracy"],
        "precision": scores["precision"], "recall": scores["recall"],
        **center_statistics([row["center_error_px"] for row in rows]),
        **boundary_statistics(rows),
        "by_pupil_size": _by_size(rows),
        "confusion_matrix": meter.matrix.tolist(),
        "onnx_bytes": len(predictor.onnx_bytes),
    }
    if timing:  # one look at a real frame (flip-averaged: the batch of its 4 views); a zoomed frame costs looks_per_frame of them
        timing_input = np.repeat(timing_input, predictor.views, axis=0)
        report["latency_ms_1_thread"] = latency_ms(predictor.onnx_bytes, 1, frame=timing_input)
        report["latency_ms_all_threads"] = latency_ms(predictor.onnx_bytes, 0, frame=timing_input)
        report["threads_all"] = os.cpu_count()
    _write_outputs(report, rows, keep, output_dir)
    return report


BOUNDARY_KEYS = ("boundary_offset_mean", "boundary_offset_median", "area_ratio_median", "label_vs_edge_median", "prediction_vs_edge_median")


def boundary_statistics(rows: list[dict]) -> dict[str, float]:
    """Mean and median signed boundary offset (px on the frame's grid, + = predicted pupil too big), median area
    ratio (predicted / label) and the median label and predicted radius over the frame's visible edge
    (training.metrics.visible_edge), all over the frames where both the label and the prediction hold a pupil."""
    offsets = np.array([row["boundary_offset_px"] for row in rows], dtype=np.float64)
    both = np.isfinite(offsets)
    if not both.any():
        return {key: float("nan") for key in BOUNDARY_KEYS}
    median = lambda key: float(np.median(np.array([row[key] for row in rows], dtype=np.float64)[both]))
    return {"boundary_offset_mean": float(offsets[both].mean()), "boundary_offset_median": float(np.median(offsets[both])),
            "area_ratio_median": median("area_ratio"), "label_vs_edge_median": median("label_vs_edge"),
            "prediction_vs_edge_median": median("prediction_vs_edge")}


def _by_size(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    names = [_bin_name(low, high) for low, high in SIZE_BINS] + ["none"]
    for name in names:
        chosen = [row for row in rows if row["pupil_size"] == name]
        if chosen:
            out[name] = {"frames": len(chosen), "pupil_iou_mean": float(np.mean([r["pupil_iou"] for r in chosen])),
                         **{k: v for k, v in center_statistics([r["center_error_px"] for r in chosen]).items() if k in ("detection_rate", "center_error_median")},
                         **boundary_statistics(chosen)}
    return out


def _write_outputs(report: dict[str, Any], rows: list[dict], worst: list, output_dir: Path) -> None:
    with open(output_dir / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for rank, (iou, name, image, mask, predicted) in enumerate(worst, 1):
        cv2.imwrite(str(output_dir / "worst" / f"{rank:02d}_{Path(name).stem}.png"), side_by_side(image, mask, predicted, f"{name} IoU {iou:.3f}"))
    _confusion_png(np.array(report["confusion_matrix"]), output_dir / "confusion_matrix.png")
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    (output_dir / "report.md").write_text(_markdown(report))


def side_by_side(image: np.ndarray, mask: np.ndarray, predicted: np.ndarray, title: str = "") -> np.ndarray:
    """image | label (red outline) | prediction (green outline), one BGR strip with a caption on each panel."""
    panels = [outline(image, []), outline(image, [(mask, LABEL_COLOR)]), outline(image, [(predicted, PREDICTION_COLOR)])]
    scale = max(1.0, 240.0 / image.shape[0])  # small frames get readable captions
    if scale > 1:
        panels = [cv2.resize(p, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for p in panels]
    for panel, caption in zip(panels, (title, "label", "prediction")):
        cv2.putText(panel, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(panel, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def _confusion_png(matrix: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normalized = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    labels = ["background", "pupil"]
    axis.set_xticks([0, 1], labels), axis.set_yticks([0, 1], labels)
    axis.set_xlabel("predicted"), axis.set_ylabel("label")
    for i in range(2):
        for j in range(2):
            axis.text(j, i, f"{normalized[i, j]:.3f}\n({matrix[i, j]:,})", ha="center", va="center", color="black" if normalized[i, j] < 0.6 else "white", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation of `{Path(report['model']).name}`", "", f"Data: `{report['data']}` (split {report['split']}, {report['frames']} frames)", "",
             "| metric | value |", "|---|---|"]
    keys = ["pupil_iou_mean", "pupil_iou_median", "pupil_iou_split", "miou", "dice", "pixel_accuracy", "precision", "recall",
            "center_error_median", "center_error_p95", "detection_rate", *BOUNDARY_KEYS,
            "latency_ms_1_thread", "latency_ms_all_threads", "onnx_bytes"]
    for key in keys:
        if key in report:
            value = report[key]
            lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    if report.get("by_pupil_size"):
        lines += ["", "By pupil size (equivalent diameter of the label on the frame's own grid):", "",
                  "| pupil size | frames | pupil IoU mean | detection@5px | boundary offset px (mean) | area ratio (median) | label / visible edge | prediction / visible edge |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {row['frames']} | {row['pupil_iou_mean']:.4f} | {row['detection_rate']:.3f} | {row['boundary_offset_mean']:+.2f} | {row['area_ratio_median']:.2f} | "
                  f"{row['label_vs_edge_median']:.2f} | {row['prediction_vs_edge_median']:.2f} |"
                  for name, row in report["by_pupil_size"].items()]
    if report.get("bad_inputs"):
        lines += ["", f"{report['bad_inputs']} bad input(s) left out:"] + [f"- {message}" for message in report["bad_input_messages"]]
    if report.get("frames_below_min_pupil_px"):
        lines += ["", f"{report['frames_below_min_pupil_px']} frame(s) with fewer than {report['min_pupil_px']} pupil pixels left out."]
    looks = (f"the mean of {len(report['zoom'])} second looks centred on the pupil the first look found, zoomed so that it is "
             f"{' and '.join(f'{d:g}' for d in report['zoom'])} px across in the model input (--zoom; latency is of one look, a frame takes "
             f"{report['looks_per_frame']})") if report.get("zoom") else "one look at the letterboxed frame (--no-zoom)"
    lines += ["", f"Predicted mask: {POSTPROCESS_TEXT[report['postprocess']]}, from the pupil probability of {looks}"
              + (", each averaged over the frame and its 3 flips (--flips)." if report.get("flips") else "."),
              "Centre errors use the centre of an ellipse fitted to the largest predicted region; a frame with no",
              "predicted pupil counts as a miss (infinite error). Detection rate: share of frames within 5 px.",
              "Boundary offset: mean signed distance of the predicted pupil's edge from the label's, in pixels of the frame's",
              "own grid (+ = predicted too big, - = too small); area ratio: predicted / labelled pupil area.",
              "Label / visible edge and prediction / visible edge (label-free): each one's area-equivalent radius over the radius",
              "where the frame's own median radial profile around the label's centre rises fastest (the pupil-to-iris step), 1 =",
              "on it. Annotators differ: a set whose labels read well under 1 traces the pupil's dark core, and pupil IoU against",
              "it rewards a model that learns that habit; the prediction's figure says where the model's edge lies whatever the",
              "labels. All of these over the frames where label and prediction hold a pupil.",
              "", "![confusion matrix](confusion_matrix.png)", ""]
    return "\n".join(lines)


def log_to_mlflow(report: dict[str, Any], output_dir: Path, run_id: str, tracking_uri: str | None = None) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    metrics = {f"eval_{k}": float(v) for k, v in report.items() if isinstance(v, (int, float)) and np.isfinite(v)}
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    client.log_artifacts(run_id, str(output_dir), "evaluation")


SUMMARY_KEYS = ("frames", "pupil_iou_mean", "pupil_iou_median", "detection_rate", "center_error_median", "precision", "recall",
                "boundary_offset_mean", "area_ratio_median", "label_vs_edge_median", "prediction_vs_edge_median", "bad_inputs")


def summary_table(reports: dict[str, dict[str, Any]]) -> str:
    """One markdown row per data folder."""
    lines = ["| data | " + " | ".join(SUMMARY_KEYS) + " |", "|---" * (len(SUMMARY_KEYS) + 1) + "|"]
    for name, report in reports.items():
        cells = [f"{report[k]:.4f}" if isinstance(report[k], float) else str(report[k]) for k in SUMMARY_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _folder_names(paths: list[str]) -> list[str]:
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", Path(p).resolve().name) or "data" for p in paths]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".onnx model, .pt checkpoint, or 'pretrained' (the shipped weights)")
    parser.add_argument("--data", required=True, nargs="+", help="precompute output, raw OpenEDS folder, or images/ + masks/ folder (several: one table)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--worst-k", type=int, default=6)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--min-pupil-px", type=int, default=0, help="leave out frames whose label has fewer pupil pixels (default: keep all)")
    parser.add_argument("--strict", action="store_true", help="a bad image or mask is fatal (default: named, counted and left out)")
    add_postprocess_option(parser)
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="skip the ONNX Runtime latency measurement")
    parser.add_argument("--mlflow-run-id", help="log the report into this existing MLflow run")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        predictor = load_predictor(args.model, flips=args.flips, zoom=tuple(args.zoom))
        reports = {}
        names = _folder_names(args.data)
        for name, data in zip(names, args.data):
            out = Path(args.output_dir) / name if len(args.data) > 1 else Path(args.output_dir)
            reports[name] = report = evaluate_model(predictor, data, out, args.split, args.worst_k, args.limit, args.timing, args.min_pupil_px, args.strict,
                                                     args.postprocess)  # the predictor's own flips and zoom
            if args.mlflow_run_id:
                log_to_mlflow(report, out, args.mlflow_run_id, args.tracking_uri)
            print(f"{name}: pupil IoU mean {report['pupil_iou_mean']:.4f} median {report['pupil_iou_median']:.4f} | mIoU {report['miou']:.4f} | "
                  f"centre error median {report['center_error_median']:.2f} px, detection@5px {report['detection_rate']:.3f} | "
                  f"boundary offset {report['boundary_offset_mean']:+.2f} px, radius / visible edge {report['prediction_vs_edge_median']:.2f} "
                  f"(label {report['label_vs_edge_median']:.2f}) | "
                  f"latency {report.get('latency_ms_1_thread', float('nan')):.2f} ms (1 thread) | {report['bad_inputs']} bad inputs -> {out / 'report.md'}")
    except (FileNotFoundError, ValueError, BadInput, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if len(reports) > 1:
        table = summary_table(reports)
        (Path(args.output_dir) / "summary.md").write_text(f"# Evaluation of `{predictor.source}`\n\n" + table)
        (Path(args.output_dir) / "summary.json").write_text(json.dumps({k: {key: r[key] for key in SUMMARY_KEYS} for k, r in reports.items()}, indent=2))
        print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
