"""Pupil centre from the ellipse regressor vs from an ellipse fitted to the segmentation model's mask, same split.

    python benchmarks/ellipse_vs_segmentation.py SEG.onnx ELLIPSE.onnx DATASET_DIR [--split validation]

Centre error (px) against the ellipse fitted to the label, detection rate within 5 px, ONNX Runtime 1-thread
latency on a real frame of the split, file size.
"""

from __future__ import annotations

import argparse

import numpy as np

from training import preprocess
from training.data import open_split
from training.inference import latency_ms, load_predictor
from training.metrics import center_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("segmentation_model")
    parser.add_argument("ellipse_model")
    parser.add_argument("dataset")
    parser.add_argument("--split", default="validation")
    args = parser.parse_args()
    samples = open_split(args.dataset, args.split)
    segmenter, regressor = load_predictor(args.segmentation_model, threads=1), load_predictor(args.ellipse_model, threads=1)
    errors: dict[str, list[float]] = {"segmentation + fitEllipse": [], "EllipseRegressor": []}
    first = preprocess.to_model_input(samples[0]["image"])
    for index in range(len(samples)):
        sample = samples[index]
        truth = preprocess.fit_ellipse(sample["label"])
        frame = preprocess.to_model_input(sample["image"])
        mask = (preprocess.pupil_probability(segmenter.run(frame))[0] > 0.5).astype(np.uint8)
        fitted = preprocess.fit_ellipse(mask)
        errors["segmentation + fitEllipse"].append(np.hypot(fitted.cx - truth.cx, fitted.cy - truth.cy) if fitted else np.inf)
        cx, cy = regressor.run(frame)[0][:2]
        errors["EllipseRegressor"].append(np.hypot(cx * frame.shape[3] - truth.cx, cy * frame.shape[2] - truth.cy))
    for (name, errs), model in zip(errors.items(), (segmenter, regressor)):
        stats = center_statistics(errs)
        print(f"{name:28s} centre error mean {stats['center_error_mean']:.2f} median {stats['center_error_median']:.2f} "
              f"p95 {stats['center_error_p95']:.2f} px, detection@5px {stats['detection_rate']:.3f}, "
              f"ORT 1-thread {latency_ms(model.onnx_bytes, 1, frame=first):.2f} ms, {len(model.onnx_bytes) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
