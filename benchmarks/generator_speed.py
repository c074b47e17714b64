"""Synthetic generator speed on one core, beside a baseline timed in the same run.

    python benchmarks/generator_speed.py [--frames 120] [--repeats 3]

Renders frames with training.synthetic.render_frame in this process with OpenCV limited to one thread (what one
worker of `generate --workers N` does), and times the PNG encoding every written frame needs anyway as the
baseline. Prints frames/s per core from the median time per frame (what the code costs) and from the total time
(throughput, stalls of a shared machine included), and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2

from training.synthetic import FAMILIES, render_frame


def frames_per_second(function, count: int, repeats: int) -> tuple[float, float]:
    """(frames/s from the median time per frame, frames/s from the total time)."""
    times = []
    for _ in range(repeats):
        for index in range(count):
            start = time.perf_counter()
            function(index)
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times), len(times) / sum(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    image, _ = render_frame(0, 0, 0)  # warm-up (imports, caches)
    png = frames_per_second(lambda i: cv2.imencode(".png", image), args.frames, args.repeats)
    print(f"{'what':<22} {'median f/s':>11} {'total f/s':>10} {'x PNG encode':>13}")
    print(f"{'PNG encode (baseline)':<22} {png[0]:11.1f} {png[1]:10.1f} {1.0:13.2f}")
    mixed = frames_per_second(lambda i: render_frame(1, i, i // 8), args.frames, args.repeats)
    print(f"{'render, all families':<22} {mixed[0]:11.1f} {mixed[1]:10.1f} {mixed[0] / png[0]:13.2f}")
    for family in FAMILIES:
        rates = frames_per_second(lambda i: render_frame(1, i, i // 8, family=family), max(8, args.frames // 4), args.repeats)
        print(f"{'  ' + family:<22} {rates[0]:11.1f} {rates[1]:10.1f} {rates[0] / png[0]:13.2f}")
    print(f"generator={mixed[0]:.1f} frames/s per core (median frame time; {mixed[1]:.1f} from the total time)")


if __name__ == "__main__":
    main()
