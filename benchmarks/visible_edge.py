"""Where a set's label edges, and a model's predicted edges, lie against the pupil edge the frame itself shows.

    python benchmarks/visible_edge.py FOLDER [FOLDER ...] [--model pretrained]

A label-free yardstick for "too big" / "too small": two sets' annotators may draw the same pupil at different places
in its dark-to-iris transition, and pupil IoU against each set's labels then rewards each set's habit. Here, for
every labelled frame (images/ + masks/ folders, or any source training.evaluate reads), the frame's median radial
profile around the label's centroid (120 rays, every 0.25 px) is taken, and the pupil's visible edge is the radius
where that profile rises fastest (within 0.5x-1.6x the label's radius + 4 px: the pupil-to-iris step, not the iris's
rim). Printed by fifths of label radius (px of the frame's own grid):

- label / edge: the label's area-equivalent radius over the visible edge's (1 = on the steepest rise);
- label at: where the label's radius sits in the transition (0 = the pupil's own gray, the median within half the
  label's radius; 1 = the iris's, 2-5 px beyond the edge);
- with --model, prediction / edge and prediction at: the same for the model's predicted mask (evaluate's default
  post-process).

On the generator's exact labels (`python -m training.synthetic --output-dir syn --num-images 600 --seed 7`, then this
on `syn --split train`: 389 frames) it reads label / edge 0.97-1.00 and label at 0.36-0.52 for pupils of 8.6 px
radius and up; smaller ones read 0.86 / 0.38 (blur spans a few of their pixels). A model that sits at the visible
edge on every camera is right about the pupil; a set whose labels sit far inside it (a low "label at") has annotators
who trace the dark core, and IoU against it rewards a model that learns that habit. The measure is
training.metrics.visible_edge; evaluate reports its two ratios for every frame (label_vs_edge, prediction_vs_edge).
"""

from __future__ import annotations

import argparse

import numpy as np

from training.data import iter_frames
from training.inference import load_predictor, predict_frame, pupil_mask
from training.metrics import area_radius, visible_edge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="images/ + masks/ folders (or precompute output)")
    parser.add_argument("--model", default="", help="also place this model's predicted pupils (.onnx, .pt or pretrained)")
    parser.add_argument("--split", default="test", help="split of a precompute output (default test)")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    predictor = load_predictor(args.model) if args.model else None
    for source in args.data:
        rows, empty = [], 0
        for frame in iter_frames(source, args.split, args.limit):
            if not frame.mask.any():
                empty += 1
                continue
            edge = visible_edge(frame.image, frame.mask)
            row = {"label_r": edge.label_r, "label / edge": edge.label_r / edge.edge_r, "label at": edge.label_at}
            if predictor is not None:
                predicted_r = area_radius(pupil_mask(predict_frame(predictor, frame.image, frame.preprocessed)))
                row.update({"prediction / edge": predicted_r / edge.edge_r, "prediction at": edge.place(predicted_r)})
            rows.append(row)
        if not rows:
            print(f"{source}: no frame with a labelled pupil ({empty} without one)")
            continue
        radius = np.array([row["label_r"] for row in rows])
        cuts = np.quantile(radius, np.linspace(0, 1, 6))
        print(f"{source}: {len(rows)} frames" + (f" ({empty} without a labelled pupil left out)" if empty else ""))
        columns = ("label / edge", "label at", "prediction / edge", "prediction at")
        print("| label radius (px) | frames | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 2) + "|")
        for low, high in zip(cuts[:-1], cuts[1:]):
            part = [row for row in rows if low <= row["label_r"] <= high]
            cells = [f"{np.median([row[name] for row in part]):.2f}" if name in part[0] else "-" for name in columns]
            print(f"| {low:.1f}-{high:.1f} | {len(part)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
