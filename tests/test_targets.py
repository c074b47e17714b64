"""Label-derived targets on the training device against the exact CPU reference (cv2)."""

import numpy as np
import pytest
import torch

from training import preprocess
from training.losses import surface_loss
from training.synthetic import FAMILIES, render_frame
from training.targets import DISTANCE_ERROR_BOUND_PX, distance_maps, label_targets, pupil_boxes, spatial_weights

DIAGONAL = float(np.hypot(399, 639))


@pytest.fixture(scope="module")
def masks() -> torch.Tensor:
    """Pupil masks as the generator draws them: every camera family, small to large pupils, eyes cut by the edge."""
    out = [preprocess.binarize(render_frame(7, index, index % 5, family)[1]) for index, family in enumerate(list(FAMILIES) * 4)]
    out.append(np.zeros((400, 640), np.uint8))  # a closed eye
    tiny = np.zeros((400, 640), np.uint8)
    tiny[200:203, 300:302] = 1  # smaller than a coarse cell
    out.append(tiny)
    edge = np.zeros((400, 640), np.uint8)
    edge[380:, 600:] = 1  # cut by two edges
    out.append(edge)
    return torch.from_numpy(np.stack(out))


def test_spatial_weights_equal_the_cpu_reference(masks):
    """Scenario: Device targets against the CPU reference"""
    expected = np.stack([preprocess.spatial_weights(m) for m in masks.numpy()])
    assert np.array_equal(spatial_weights(masks).numpy(), expected)


def test_exact_distance_maps_at_full_resolution(masks):
    """Scenario: Device targets against the CPU reference"""
    expected = np.stack([preprocess.distance_maps(m) for m in masks.numpy()])
    assert np.abs(distance_maps(masks, factor=1).numpy() - expected).max() * DIAGONAL < 1e-3


def test_coarse_distance_maps_stay_within_the_stated_bound(masks):
    """Scenario: Device targets against the CPU reference

    The default (factor 4) is within DISTANCE_ERROR_BOUND_PX of cv2's exact transform at every pixel, keeps
    every sign (<= 0 inside the class, >= 0 outside) and is all zeros for an empty mask."""
    expected = np.stack([preprocess.distance_maps(m) for m in masks.numpy()])
    approx = distance_maps(masks).numpy()
    error = np.abs(approx - expected) * DIAGONAL
    assert error.max() <= DISTANCE_ERROR_BOUND_PX and error.mean() < 1.5
    pupil = masks.numpy() > 0
    assert (approx[:, 1][pupil] <= 0).all() and (approx[:, 1][~pupil & pupil.any(axis=(1, 2))[:, None, None]] > 0).all()
    assert np.allclose(approx[:, 0] + approx[:, 1], np.where(pupil.any(axis=(1, 2)), 1.0 / DIAGONAL, 0.0)[:, None, None], atol=1e-6)
    assert not approx[-3].any()


def test_surface_loss_falls_as_the_prediction_approaches_the_label(masks):
    """Scenario: Device targets against the CPU reference (the surface term with device maps still ranks predictions)"""
    import cv2

    label = masks[:12].long()
    maps = label_targets(masks[:12])["dist_map"]
    losses = []
    for grow in (12, 6, 3, 0):
        grown = np.stack([cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) if grow else m for m in masks[:12].numpy()])
        logits = torch.from_numpy(np.stack([1.0 - grown, grown], axis=1).astype(np.float32) * 20.0)
        losses.append(float(surface_loss(logits, label, maps)))
    assert losses == sorted(losses, reverse=True) and losses[-1] < 1e-6 < losses[0]


def test_targets_read_only_the_pupil_box_yet_match_the_whole_frame(masks):
    """Scenario: Device targets against the CPU reference (bounding boxes, a frame that is all pupil)"""
    boxes = pupil_boxes(masks)
    for mask, box in zip(masks.numpy(), boxes):
        ys, xs = np.nonzero(mask)
        assert box == ((ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else None)
    full = torch.ones((1, 400, 640), dtype=torch.uint8)
    assert np.array_equal(spatial_weights(full).numpy(), preprocess.spatial_weights(full[0].numpy())[None])
    assert not distance_maps(full).any() and not distance_maps(full, factor=1).any()
    assert np.abs(distance_maps(full, factor=1).numpy()[0] - preprocess.distance_maps(full[0].numpy())).max() < 1e-6
