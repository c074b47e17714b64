"""Losses: hand-computed cases, invariants, edge cases and gradients."""

import math

import numpy as np
import pytest
import torch

from training.losses import CombinedLoss, alpha_schedule, generalized_dice_loss, surface_loss, weighted_cross_entropy
from training.preprocess import distance_maps


def _disk_mask(h=32, w=32, cx=16, cy=16, r=6):
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint8)


def _batch(mask):
    target = torch.from_numpy(mask).long()[None]
    dist = torch.from_numpy(distance_maps(mask))[None]
    return target, dist


def _logits_from_probs(p_pupil):
    p = torch.as_tensor(p_pupil, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
    return torch.stack([torch.log(1 - p), torch.log(p)], dim=0)[None]


def test_weighted_cross_entropy_by_hand():
    """Scenario: Weighted cross-entropy"""
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 1]]])
    weights = torch.tensor([[[0.0, 1.0]]])
    # pixel 0: p=1/2 -> ln 2, weight 1; pixel 1: p=3/4 -> ln(4/3), weight 2
    expected = (math.log(2) + 2 * math.log(4 / 3)) / 2
    assert weighted_cross_entropy(logits, target, weights).item() == pytest.approx(expected, rel=1e-6)
    assert weighted_cross_entropy(logits, target).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)


def test_generalized_dice_by_hand():
    """Scenario: Generalized Dice"""
    target = torch.tensor([[[0, 1]]])  # one background, one pupil pixel
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # p(bg), p(pupil) at each pixel
    logits = probs.log()[None, :, None, :]  # (1, 2, 1, 2)
    # weights 1/1^2 for both classes; intersection = 0.5 + 0.5; union = (1 + 1) + (1 + 1)
    assert generalized_dice_loss(logits, target).item() == pytest.approx(1 - 2 * 1.0 / 4.0, abs=1e-5)


def test_dice_is_zero_for_a_perfect_prediction_and_one_for_the_inverse():
    mask = _disk_mask()
    target, _ = _batch(mask)
    perfect = _logits_from_probs(mask.astype(np.float32))
    inverse = _logits_from_probs(1 - mask.astype(np.float32))
    assert generalized_dice_loss(perfect, target).item() < 1e-3
    assert generalized_dice_loss(inverse, target).item() > 0.99


def test_surface_loss_falls_as_prediction_approaches_the_label():
    """Scenario: Surface loss falls toward the label"""
    mask = _disk_mask()
    target, dist = _batch(mask)
    start = np.full(mask.shape, 0.5, np.float32)
    values = []
    for t in np.linspace(0.0, 1.0, 11):
        p = (1 - t) * start + t * mask
        values.append(surface_loss(_logits_from_probs(p), target, dist).item())
    assert all(b < a for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.0, abs=1e-6)
    assert min(values) >= -1e-9  # never negative: cannot pull the total below zero


def test_surface_loss_penalizes_far_errors_more_than_near_ones():
    mask = _disk_mask(64, 64, 32, 32, 8)
    target, dist = _batch(mask)
    near, far = mask.astype(np.float32).copy(), mask.astype(np.float32).copy()
    near[32, 42] = 1.0  # 2 px outside the disk
    far[32, 60] = 1.0  # 20 px outside
    assert surface_loss(_logits_from_probs(far), target, dist) > surface_loss(_logits_from_probs(near), target, dist)


@pytest.mark.parametrize("case", ["empty", "all_pupil", "batch_of_one"])
def test_combined_loss_is_finite_with_gradients_on_edge_cases(case):
    """Scenario: Edge cases stay finite"""
    h, w = 24, 40
    mask = {"empty": np.zeros((h, w), np.uint8), "all_pupil": np.ones((h, w), np.uint8), "batch_of_one": _disk_mask(h, w, 20, 12, 5)}[case]
    target, dist = _batch(mask)
    logits = torch.randn(1, 2, h, w, requires_grad=True)
    weights = torch.zeros(1, h, w)
    out = CombinedLoss()(logits, target, weights, dist, alpha=0.5)
    assert set(out) == {"loss", "ce", "dice", "surface"}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_combined_loss_is_the_weighted_sum_of_its_parts():
    """Scenario: Combined loss reports its components"""
    torch.manual_seed(0)
    mask = _disk_mask()
    target, dist = _batch(mask)
    logits = torch.randn(1, 2, 32, 32)
    weights = torch.rand(1, 32, 32)
    out = CombinedLoss()(logits, target, weights, dist, alpha=0.3)
    assert out["loss"].item() == pytest.approx(out["ce"].item() + 0.3 * out["dice"].item() + 0.7 * out["surface"].item(), rel=1e-6)
    assert out["loss"].item() > 0


def test_loss_of_a_split_batch_averages_to_the_whole_batch():
    """Scenario: Batch decomposable for DDP"""
    torch.manual_seed(0)
    masks = [_disk_mask(32, 32, 10 + 3 * i, 16, 4 + i) for i in range(4)]
    target = torch.stack([torch.from_numpy(m).long() for m in masks])
    dist = torch.stack([torch.from_numpy(distance_maps(m)) for m in masks])
    logits, weights = torch.randn(4, 2, 32, 32), torch.rand(4, 32, 32)
    loss = CombinedLoss()
    whole = loss(logits, target, weights, dist, 0.4)["loss"]
    halves = [loss(logits[s], target[s], weights[s], dist[s], 0.4)["loss"] for s in (slice(0, 2), slice(2, 4))]
    assert whole.item() == pytest.approx(sum(halves).item() / 2, rel=1e-5)


def test_alpha_decays_linearly_from_start_to_end():
    """Scenario: Alpha schedule"""
    values = [alpha_schedule(e, 5, start=1.0, end=0.0) for e in range(5)]
    assert values == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert alpha_schedule(10, 5, 1.0, 0.2) == pytest.approx(0.2)
    assert alpha_schedule(2, 100, 1.0, 0.0, decay_epochs=3) == pytest.approx(0.0)


def test_two_class_terms_equal_the_softmax_forms():
    """Scenario: Combined loss reports its components

    The two-class model's loss runs on one logit difference (sigmoid, no one-hot); it must equal the C-class
    softmax formulas term by term, empty and all-pupil labels included."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    logits = torch.randn(3, 2, 20, 30) * 3
    target = (torch.rand(3, 20, 30) > 0.8).long()
    target[1], target[2] = 0, 1
    weights, dist = torch.rand(3, 20, 30) * 10, torch.randn(3, 2, 20, 30)
    probs, onehot = logits.softmax(dim=1), F.one_hot(target, 2).permute(0, 3, 1, 2).float()
    area_weights = 1.0 / onehot.sum(dim=(2, 3)).clamp_min(1.0) ** 2
    dice = (1 - (2 * (area_weights * (probs * onehot).sum(dim=(2, 3))).sum(1) + 1e-6) / ((area_weights * (probs + onehot).sum(dim=(2, 3))).sum(1) + 1e-6)).mean()
    expected = {"ce": (F.cross_entropy(logits, target, reduction="none") * (1 + weights)).mean(), "dice": dice, "surface": ((probs - onehot) * dist).mean()}
    got = CombinedLoss()(logits, target, weights, dist, alpha=0.3)
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name
    assert weighted_cross_entropy(logits, target, weights).item() == pytest.approx(expected["ce"].item(), rel=1e-5)
    assert generalized_dice_loss(logits, target).item() == pytest.approx(expected["dice"].item(), rel=1e-5)
    assert surface_loss(logits, target, dist).item() == pytest.approx(expected["surface"].item(), rel=1e-5, abs=1e-7)
