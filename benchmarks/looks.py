"""What each way of looking at a frame costs: `predict_frame` (preprocessing, the model, mapping back) with the
shipped model, one look (`--no-zoom`) against the default three looks (training.inference.zoomed) and with --flips,
on generator frames resized to the sizes cameras give (no real frame).

    python benchmarks/looks.py [--frames 20] [--threads 1]

Times are medians per frame; ratios are to one look at the same size, measured in the same run (this machine is noisy).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from training.inference import ZOOM_DIAMETERS, load_predictor, predict_frame
from training.synthetic import render_frame

SIZES = ((128, 128), (240, 320), (400, 640), (480, 640))  # (height, width): close-up, small, OpenEDS, VGA


def median_ms(predictor, frames: list[np.ndarray]) -> float:
    predict_frame(predictor, frames[0])
    times = []
    for frame in frames:
        start = time.perf_counter()
        predict_frame(predictor, frame)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (0: all)")
    args = parser.parse_args()
    ways = {"one look": load_predictor("pretrained", args.threads),
            "3 looks (default)": load_predictor("pretrained", args.threads, zoom=ZOOM_DIAMETERS),
            "3 looks, flips": load_predictor("pretrained", args.threads, flips=True, zoom=ZOOM_DIAMETERS)}
    rendered = [render_frame(0, index, index)[0] for index in range(args.frames)]
    print(f"{'frame size':>10s} " + " ".join(f"{name + ' ms':>22s} {'x one':>6s}" for name in ways))
    for height, width in SIZES:
        frames = [cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in rendered]
        times = {name: median_ms(predictor, frames) for name, predictor in ways.items()}
        print(f"{f'{height}x{width}':>10s} " + " ".join(f"{ms:22.2f} {ms / times['one look']:6.2f}" for ms in times.values()))


if __name__ == "__main__":
    main()
