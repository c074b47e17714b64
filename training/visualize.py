"""Overlays for people to look at: mask outlines drawn on a frame. Pure numpy/cv2, no project imports."""

from __future__ import annotations

import cv2
import numpy as np

LABEL_COLOR = (0, 0, 255)  # red (BGR)
PREDICTION_COLOR = (0, 255, 0)  # green


def outline(frame: np.ndarray, masks: list[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    """A BGR copy of a gray or BGR uint8 frame with each (mask, color) region's outer contour drawn 1 px wide."""
    canvas = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    for mask, color in masks:
        contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, color, 1)
    return canvas
