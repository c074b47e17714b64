"""The one preprocessing module, on hand-made masks with known answers."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import preprocess


def test_binarize_keeps_only_the_pupil_class():
    """Scenario: Binarize the pupil"""
    label = np.array([[0, 1, 2, 3], [3, 3, 2, 0]], np.uint8)
    assert preprocess.binarize(label).tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]]
    assert preprocess.binarize(label).dtype == np.uint8


def test_gamma_then_clahe_matches_opencv_with_the_documented_parameters():
    """Scenario: Gamma 0.8 then CLAHE"""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (400, 640), dtype=np.uint8)
    lut = np.clip(np.round(255 * (np.arange(256) / 255) ** 0.8), 0, 255).astype(np.uint8)
    expected = cv2.createCLAHE(clipLimit=1.5, tileGridSize=(8, 8)).apply(lut[image])
    assert np.array_equal(preprocess.preprocess_image(image), expected)
    assert preprocess.apply_gamma(np.array([[0, 64, 255]], np.uint8)).tolist() == [[0, 84, 255]]  # lifts darks
    with pytest.raises(TypeError):
        preprocess.preprocess_image(image.astype(np.float32))


@settings(max_examples=30, deadline=None)
@given(cx=st.floats(120, 520), cy=st.floats(100, 300), a=st.floats(6, 60), ratio=st.floats(0.4, 1.0), angle=st.floats(0, 179))
def test_ellipse_fit_recovers_a_drawn_ellipse(cx, cy, a, ratio, angle):
    """Scenario: Ellipse fit"""
    mask = np.zeros((400, 640), np.uint8)
    cv2.ellipse(mask, ((cx, cy), (2 * a, 2 * a * ratio), angle), 1, -1)
    fit = preprocess.fit_ellipse(mask)
    assert fit is not None
    assert abs(fit.cx - cx) < 1.0 and abs(fit.cy - cy) < 1.0
    assert sorted([fit.rx, fit.ry]) == pytest.approx(sorted([a, a * ratio]), abs=1.2)
    ncx, ncy, nrx, nry = fit.normalized(400, 640)
    assert (ncx, ncy) == pytest.approx((fit.cx / 640, fit.cy / 400))


def test_ellipse_fit_fallbacks_for_tiny_and_degenerate_masks():
    """Scenario: Ellipse fit"""
    empty = np.zeros((50, 50), np.uint8)
    assert preprocess.fit_ellipse(empty) is None
    one = empty.copy()
    one[10, 20] = 1
    fit = preprocess.fit_ellipse(one)
    assert (fit.cx, fit.cy, fit.rx, fit.ry) == (20.0, 10.0, 0.5, 0.5)
    line = empty.copy()
    line[25, 5:45] = 1  # a straight line: cv2.fitEllipse degenerates, the second-moment ellipse answers
    fit = preprocess.fit_ellipse(line)
    assert (fit.cx, fit.cy) == pytest.approx((24.5, 25.0), abs=1e-6)
    assert fit.rx == pytest.approx(2 * np.sqrt((40**2 - 1) / 12 + 1 / 12))  # semi-axis 2 sqrt(variance), 40-px line
    assert fit.ry == pytest.approx(2 * np.sqrt(1 / 12)) and fit.angle == pytest.approx(0.0)
    two = empty.copy()
    two[5:8, 5:8] = 1
    two[20:40, 20:40] = 1  # the largest region wins
    assert preprocess.fit_ellipse(two).cx == pytest.approx(29.5, abs=0.6)


def test_spatial_weights_mark_the_boundary_band():
    """Scenario: Spatial weights on the boundary"""
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    weights = preprocess.spatial_weights(mask)
    assert weights.dtype == np.float32
    assert weights[10, 10] == 0 and weights[0, 0] == 0  # deep inside, far outside
    assert weights[5, 10] == preprocess.BOUNDARY_WEIGHT and weights[4, 10] == preprocess.BOUNDARY_WEIGHT
    assert set(np.unique(weights)) == {0.0, preprocess.BOUNDARY_WEIGHT}


def test_signed_distance_maps_by_hand():
    """Scenario: Signed distance maps"""
    mask = np.zeros((11, 11), np.uint8)
    mask[5, 3:8] = 1  # a horizontal bar
    maps = preprocess.distance_maps(mask)
    diagonal = np.hypot(10, 10)
    assert maps.shape == (2, 11, 11) and maps.dtype == np.float32
    pupil, background = maps[1], maps[0]
    assert pupil[5, 5] == pytest.approx(0.0)  # bar pixels touch the outside: edge pixels are 0
    assert pupil[2, 5] == pytest.approx(3 / diagonal)  # 3 px above the bar
    assert pupil[5, 0] == pytest.approx(3 / diagonal)  # 3 px left of the bar's end
    assert (pupil[mask == 1] <= 0).all() and (pupil[mask == 0] > 0).all()
    assert (background[mask == 0] <= 0).all() and (background[mask == 1] > 0).all()
    assert not preprocess.distance_maps(np.zeros((5, 5), np.uint8)).any()  # empty: all zero


def _generator_masks():
    from training.synthetic import render_frame

    masks = [(render_frame(3, i, i // 2)[1] == 3).astype(np.uint8) for i in range(24)]
    masks[0][:, :6] = 1  # pupil regions that touch the frame's edges
    masks[1][150:170, 630:] = 1
    masks[2][390:, 300:320] = 1
    return [m for m in masks if m.any()]


def _maps_with_threads(masks, threads):
    cv2.setNumThreads(threads)
    return [preprocess.distance_maps(m) for m in masks]


def test_weights_inside_the_pupil_box_equal_the_whole_frame_gradient():
    """Scenario: Spatial weights on the boundary"""

    def whole_frame(mask):  # the gradient on the whole frame, as precompute ran it before the box
        inside = (mask > 0).astype(np.uint8)
        return cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32) * np.float32(preprocess.BOUNDARY_WEIGHT)

    for mask in _generator_masks():
        assert np.array_equal(preprocess.spatial_weights(mask), whole_frame(mask))


def test_distance_maps_on_the_pupil_box_equal_the_whole_frame_in_any_process():
    """Scenario: Signed distance maps"""
    import multiprocessing

    def whole_frame(mask):  # both transforms on the whole frame
        inside = (mask > 0).astype(np.uint8)
        signed = preprocess.exact_distance(1 - inside) - preprocess.exact_distance(inside) + inside
        diagonal = np.float32(1.0 / np.hypot(mask.shape[0] - 1, mask.shape[1] - 1))
        return np.stack([np.float32(1.0) - signed, signed]) * diagonal

    masks = _generator_masks()
    threads = cv2.getNumThreads()
    try:
        here = _maps_with_threads(masks, threads)
        single = _maps_with_threads(masks, 1)
    finally:
        cv2.setNumThreads(threads)
    with multiprocessing.get_context("fork").Pool(1) as pool:  # as a precompute worker computes them
        forked = pool.apply(_maps_with_threads, (masks, threads))
    for mask, maps, one, other in zip(masks, here, single, forked):
        assert np.array_equal(maps, whole_frame(mask))
        assert np.array_equal(maps, one) and np.array_equal(maps, other)


def test_stored_distance_maps_keep_16_significant_bits():
    """Scenario: Signed distance maps"""
    for mask in _generator_masks()[:6]:
        exact = preprocess.distance_maps(mask)
        stored = preprocess.label_targets(mask)["dist_map"]
        assert not (stored.view(np.uint32) & 0xFF).any()  # the dropped bits are zero
        assert np.all(np.abs(stored - exact) <= np.abs(exact) * 2.0**-preprocess.DIST_MAP_BITS)
        assert np.array_equal(np.sign(stored), np.sign(exact))
    values = np.array([1.0 + 2**-17, 1.0 + 2**-16, -(1.0 + 2**-16), 3.0], np.float32)  # a step of 2^-15 at 1.0
    assert preprocess.round_significand(values, 16).tolist() == [1.0, 1.0 + 2**-15, -(1.0 + 2**-15), 3.0]


def test_preprocess_sample_produces_every_dataset_column():
    image = np.full((400, 640), 90, np.uint8)
    label = np.zeros((400, 640), np.uint8)
    cv2.circle(label, (320, 200), 30, 3, -1)
    sample = preprocess.preprocess_sample(image, label)
    assert set(sample) == {"image", "label", "spatial_weights", "dist_map", "cx", "cy", "rx", "ry", "angle", "preprocessed"}
    assert sample["cx"] == pytest.approx(320 / 640, abs=1e-3) and sample["cy"] == pytest.approx(200 / 400, abs=1e-3)
    assert sample["rx"] == pytest.approx(30 / 640, abs=2e-3) and sample["ry"] == pytest.approx(30 / 400, abs=3e-3)
