"""Pupil centre from the ellipse regressor vs from an ellipse fitted to the segmentation model's mask, same split.

    python benchmarks/ellipse_vs_segmentation.py SEG.onnx ELLIPSE.onnx DATASET_DIR

Centre error (px) against the ellipse fitted to the label, detection rate within 5 px, ONNX Runtime 1-thread
latency on a real validation frame, file size.
"""
import sys

import numpy as np
from training.data import open_split
from training.evaluate import load_predictor, latency_ms
from training import preprocess
from training.metrics import center_statistics
seg_onnx, ell_onnx, data = sys.argv[1], sys.argv[2], sys.argv[3]
ds = open_split(data, "validation")
seg, ell = load_predictor(seg_onnx, threads=1), load_predictor(ell_onnx, threads=1)
seg_err, ell_err = [], []
first = preprocess.to_model_input(ds[0]["image"])
for i in range(len(ds)):
    s = ds[i]
    truth = preprocess.fit_ellipse(s["label"])
    x = preprocess.to_model_input(s["image"])
    mask = (preprocess.pupil_probability(seg.run(x))[0] > 0.5).astype(np.uint8)
    fit = preprocess.fit_ellipse(mask)
    seg_err.append(np.hypot(fit.cx - truth.cx, fit.cy - truth.cy) if fit else np.inf)
    out = ell.run(x)[0]
    ell_err.append(np.hypot(out[0] * 640 - truth.cx, out[1] * 400 - truth.cy))
for name, errs, model in (("segmentation + fitEllipse", seg_err, seg), ("EllipseRegressor", ell_err, ell)):
    st = center_statistics(errs)
    print(f"{name:28s} centre error mean {st['center_error_mean']:.2f} median {st['center_error_median']:.2f} p95 {st['center_error_p95']:.2f} px, "
          f"detection@5px {st['detection_rate']:.3f}, ORT 1-thread {latency_ms(model.onnx_bytes, 1, frame=first):.2f} ms, {len(model.onnx_bytes)/1024:.0f} KB")
