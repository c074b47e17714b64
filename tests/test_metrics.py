"""Metrics: accumulated confusion counts, property tests, pupil centre and detection rate."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.metrics import SegmentationMeter, binary_iou, center_error, center_statistics, pupil_center, scores_from_confusion

masks = arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 1))


@settings(max_examples=60, deadline=None)
@given(pred=masks, data=st.data())
def test_every_score_is_in_the_unit_interval(pred, data):
    """Scenario: Scores are bounded"""
    target = data.draw(arrays(np.uint8, pred.shape, elements=st.integers(0, 1)))
    meter = SegmentationMeter()
    meter.update(torch.from_numpy(pred), torch.from_numpy(target))
    scores = meter.compute()
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["pupil_iou"] == pytest.approx(binary_iou(pred, target))  # and each is the score it names


@settings(max_examples=40, deadline=None)
@given(mask=masks)
def test_identical_masks_score_one(mask):
    """Scenario: Identical masks score 1"""
    meter = SegmentationMeter()
    meter.update(mask, mask)
    assert all(v == 1.0 for v in meter.compute().values())
    assert binary_iou(mask, mask) == 1.0


@settings(max_examples=40, deadline=None)
@given(pred=masks, data=st.data())
def test_iou_and_dice_are_symmetric(pred, data):
    """Scenario: Symmetric scores"""
    target = data.draw(arrays(np.uint8, pred.shape, elements=st.integers(0, 1)))
    a, b = SegmentationMeter(), SegmentationMeter()
    a.update(pred, target)
    b.update(target, pred)
    sa, sb = a.compute(), b.compute()
    for key in ("miou", "pupil_iou", "dice", "pixel_accuracy"):
        assert sa[key] == pytest.approx(sb[key])
    assert sa["precision"] == pytest.approx(sb["recall"])
    assert binary_iou(pred, target) == pytest.approx(binary_iou(target, pred))


def test_counts_accumulate_over_the_split_not_per_batch_ratios():
    """Scenario: Metrics from accumulated counts"""
    meter = SegmentationMeter()
    # batch 1: 1 pupil pixel, found; batch 2: 3 pupil pixels, none found
    meter.update(np.array([1, 0, 0, 0]), np.array([1, 0, 0, 0]))
    meter.update(np.array([0, 0, 0, 0]), np.array([1, 1, 1, 0]))
    scores = meter.compute()
    assert scores["pupil_iou"] == pytest.approx(1 / 4)  # the mean of per-batch IoUs would be 0.5
    assert scores["recall"] == pytest.approx(1 / 4)
    assert scores["precision"] == 1.0
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["iou_class0"] == pytest.approx(4 / 7)
    assert scores["miou"] == pytest.approx((4 / 7 + 1 / 4) / 2)
    assert scores["dice"] == pytest.approx(2 / (2 + 3))


def test_empty_masks_are_explicit():
    """Scenario: Empty masks"""
    empty = np.zeros((8, 8), np.uint8)
    scores = scores_from_confusion(SegmentationMeter().matrix + np.array([[64, 0], [0, 0]]))
    assert scores["pupil_iou"] == 1.0 and scores["dice"] == 1.0  # nothing to find, nothing invented
    assert pupil_center(empty) is None
    assert math.isnan(center_error(empty, empty))  # no true centre: left out of centre statistics
    disk = np.zeros((8, 8), np.uint8)
    disk[3:5, 3:5] = 1
    assert math.isinf(center_error(empty, disk))  # a missed pupil is a miss, not a zero error
    assert binary_iou(empty, disk) == 0.0


def test_pupil_center_from_a_known_ellipse():
    """Scenario: Pupil centre and detection rate"""
    import cv2

    mask = np.zeros((400, 640), np.uint8)
    cv2.ellipse(mask, (300, 180), (40, 25), 30, 0, 360, 1, -1)
    for method in ("ellipse", "centroid"):
        cx, cy = pupil_center(mask, method)
        assert (cx, cy) == pytest.approx((300, 180), abs=0.6)
    shifted = np.roll(mask, 3, axis=1)
    assert center_error(shifted, mask) == pytest.approx(3.0, abs=0.6)
    stats = center_statistics([1.0, 4.0, 6.0, float("inf"), float("nan")])
    assert stats["detection_rate"] == pytest.approx(2 / 4)
    assert stats["center_error_median"] == pytest.approx(5.0)
    assert stats["center_error_mean"] == pytest.approx(11 / 3)


def test_center_uses_the_largest_region():
    mask = np.zeros((100, 100), np.uint8)
    mask[10:13, 10:13] = 1  # speck
    mask[50:70, 40:60] = 1  # pupil
    assert pupil_center(mask) == pytest.approx((49.5, 59.5), abs=0.6)


def test_predict_classes_equals_argmax_including_ties():
    from training.metrics import predict_classes

    logits = torch.randn(2, 2, 5, 7)
    logits[0, :, 0, 0] = 0.5  # a tie goes to class 0, as with argmax
    assert torch.equal(predict_classes(logits), logits.argmax(dim=1))
    three = torch.randn(1, 3, 4, 4)
    assert torch.equal(predict_classes(three), three.argmax(dim=1))


def _disc(radius: float, centre=(50.3, 50.7), size: int = 101) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) <= radius * radius).astype(np.uint8)


def test_boundary_offset_is_signed_and_in_pixels():
    """Scenario: Boundary offset and area ratio"""
    from training.metrics import area_ratio, boundary_offset

    label = _disc(20)
    assert boundary_offset(label, label) == 0.0
    for grown in (1, 2, 4):
        # within ~10 % on a pixel grid (edge pixels of a digital disc do not all sit half a pixel inside its edge)
        assert boundary_offset(_disc(20 + grown), label) == pytest.approx(grown, rel=0.12)  # too big: +
        assert boundary_offset(_disc(20 - grown), label) == pytest.approx(-grown, rel=0.12)  # too small: -
    square, bigger = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)
    square[10:20, 10:20], bigger[9:21, 9:21] = 1, 1
    assert boundary_offset(bigger, square) == pytest.approx(1.0, abs=0.05) == -boundary_offset(square, bigger)
    shifted = np.roll(label, 3, axis=1)  # the right size in the wrong place: no net offset
    assert abs(boundary_offset(shifted, label)) < 0.3
    assert math.isnan(boundary_offset(np.zeros_like(label), label)) and math.isnan(boundary_offset(label, np.zeros_like(label)))
    assert area_ratio(_disc(40), _disc(20)) == pytest.approx(4.0, rel=0.05)
    assert math.isnan(area_ratio(label, np.zeros_like(label)))
