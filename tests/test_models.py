"""Model contract: every variant, shapes, gradients, parameter and ONNX budgets, speed-relevant structure."""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.export import (
    MAX_ONNX_BYTES,
    check_parity,
    export_bytes,
    export_onnx,
    ort_session,
    parity_bound,
)
from training.models import VARIANTS, TinyEfficientViTSeg, build_model, count_parameters
from training.models.efficientvit import CascadedGroupAttention, ConvBN


def test_default_model_matches_the_documented_config():
    """Scenario: Default model"""
    model = TinyEfficientViTSeg()
    cfg = model.config
    assert (cfg.embed_dims, cfg.depths, cfg.num_heads) == ((8, 16, 24), (1, 1, 1), (0, 1, 2))
    assert count_parameters(model) < 60_000
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 1, 400, 640))
    assert out.shape == (1, 2, 400, 640)


def test_stride_four_head_resolves_inside_its_block():
    """Scenario: Sub-pixel heads"""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    with torch.no_grad():
        model.head.fine.free.zero_()  # the stride-4 head alone
        model.head.coarse.weight.normal_()
        logits = model(torch.rand(1, 1, 64, 96))[0, 1]
    blocks = logits.reshape(16, 4, 24, 4)  # (block row, row in block, block col, col in block)
    spread = blocks.amax(dim=(1, 3)) - blocks.amin(dim=(1, 3))
    assert (spread > 1e-3).all()  # nearest upsampling of one stride-4 logit would make every block flat


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_keeps_the_contract(variant):
    """Scenario: Every variant keeps the contract"""
    torch.manual_seed(0)
    model = build_model(variant)
    assert count_parameters(model) < 60_000
    x = torch.rand(2, 1, 96, 160)
    out = model(x)
    assert out.shape == (2, 2, 96, 160)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_largest_variant_uses_the_parameter_budget():
    """Scenario: Every variant keeps the contract"""
    assert max(count_parameters(build_model(v)) for v in VARIANTS) > 45_000


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match="tiny"):
        build_model("huge")


@settings(max_examples=12, deadline=None)
@given(height=st.integers(9, 130), width=st.integers(9, 130), batch=st.integers(1, 2))
def test_any_input_size_gives_logits_of_the_same_size(height, width, batch):
    """Scenario: Any input size"""
    model = build_model("tiny").eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 1, height, width))
    assert out.shape == (batch, 2, height, width)
    assert torch.isfinite(out).all()


def test_cascaded_group_attention_feeds_each_head_the_previous_output():
    """Scenario: Cascaded group attention"""
    torch.manual_seed(0)
    attn = CascadedGroupAttention(dim=8, key_dim=4, num_heads=2, attn_ratio=1.0).eval()
    attn.proj = torch.nn.Identity()  # expose the per-head outputs: channels 0-3 head 1, 4-7 head 2
    assert [q.c.in_channels for q in attn.qkvs] == [4, 4]  # each head takes its own channel split
    x = torch.rand(1, 8, 5, 5)
    x2 = x.clone()
    x2[:, :4] += 1.0  # perturb only the first head's split
    with torch.no_grad():
        before, after = attn(x), attn(x2)
    assert not torch.allclose(before[:, 4:], after[:, 4:])  # head 2 saw head 1's output
    x3 = x.clone()
    x3[:, 4:] += 1.0  # perturb only the second head's split
    with torch.no_grad():
        assert torch.allclose(attn(x3)[:, :4], before[:, :4])  # head 1 does not see head 2


def test_stride_two_path_reads_local_contrast_of_the_image():
    """Scenario: High-resolution skip"""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        model.head.fine.free.normal_()  # untrained init may be near zero
        full = model(x)
        brighter = model(x + 0.2)  # every gray level up: a zero-mean kernel sees no change
        model.head.fine.free.zero_()
        coarse = model(x)  # the stride-4 head alone
        coarse_brighter = model(x + 0.2)
        poked = x.clone()
        poked[0, 0, 33, 41] += 0.5
        model.head.fine.free.normal_()
        moved = model(poked)[0, 1] - model(x)[0, 1]
    fine = (full - coarse)[0, 1]  # what the stride-2 path adds, (64, 64)
    assert fine.abs().max() > 1e-3  # it contributes ...
    blocks = fine.reshape(16, 4, 16, 4).permute(0, 2, 1, 3).reshape(-1, 16)
    assert (blocks - blocks.mean(1, keepdim=True)).abs().max() > 1e-3  # ... detail finer than the stride-4 blocks
    inner = (slice(2, -2), slice(2, -2))  # away from the zero padding at the frame's border
    assert torch.allclose((brighter - coarse_brighter)[0, 1][inner], fine[inner], atol=1e-5)  # ... from contrast, not the gray level
    assert moved[32:34, 40:42].abs().max() > 1e-4  # one input pixel reaches the logits at that pixel
    assert model.head.fine.stride == (2, 2)


def test_two_class_heads_compute_one_logit_map():
    """Scenario: Sub-pixel heads"""
    model = build_model("tiny").eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 40, 56))
    assert torch.equal(logits[:, 0], torch.zeros_like(logits[:, 0]))  # the background logit is the softmax's reference
    assert model.head.coarse.out_channels == 16 and model.head.fine.out_channels == 4


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fused_model_is_numerically_identical(variant):
    """Scenario: Conv-BN fusion for export"""
    torch.manual_seed(0)
    model = build_model(variant)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for _ in range(3):
            model(torch.rand(2, 1, 64, 96))
    model.eval()
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        expected = model(x)
        fused = model.fuse()
        assert not any(isinstance(m, ConvBN) for m in fused.modules())
        assert torch.allclose(fused(x), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_exports_a_small_self_contained_onnx(variant, tmp_path):
    """Scenario: ONNX export under 300 KB"""
    torch.manual_seed(0)
    model = build_model(variant).eval()
    path = export_onnx(model, tmp_path / f"{variant}.onnx")
    assert path.stat().st_size < MAX_ONNX_BYTES
    assert [p.name for p in tmp_path.iterdir()] == [f"{variant}.onnx"]  # no .onnx.data beside it
    session = ort_session(path)
    for batch in (1, 3):
        x = np.random.default_rng(batch).random((batch, 1, 400, 640), dtype=np.float32)
        (out,) = session.run(None, {"image": x})
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        assert out.shape == (batch, 2, 400, 640)
        assert np.abs(out - expected).max() <= parity_bound(expected, 1e-4)


def test_parity_check_catches_a_wrong_export():
    """Scenario: ONNX export under 300 KB"""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    data = export_bytes(model)
    assert check_parity(model, data, (1, 1, 400, 640)) <= 1e-4
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.head.coarse.bias.add_(0.01)  # an export that lost a constant, say
    with pytest.raises(AssertionError, match="differs from torch"):
        check_parity(shifted, data, (1, 1, 400, 640))


def test_attention_logits_stay_bounded_and_the_model_well_conditioned():
    """Scenario: ONNX export under 300 KB

    Trained models grew query-key logits past 200 (the weights shipped before: up to 234), which made float32 outputs
    drift from float64 (6e-3 at a logit scale of 19 in one run) and failed the export parity check. Cosine attention
    bounds the logits by the clamped temperature, however large queries, keys or the learned temperature grow."""
    from training.models.efficientvit import MAX_LOGIT_SCALE

    torch.manual_seed(0)
    model = build_model("base").eval()
    attention = next(m for m in model.modules() if isinstance(m, CascadedGroupAttention))
    with torch.no_grad():
        attention.logit_scale.fill_(10.0)  # asks for a temperature of e^10
        q, k = torch.randn(2, attention.key_dim, 49) * 1e4, torch.randn(2, attention.key_dim, 49) * 1e4
        logits = attention.attention_logits(q, k, head=0)
    assert float(logits.abs().max()) <= math.exp(MAX_LOGIT_SCALE) * (1 + 1e-5) and math.exp(MAX_LOGIT_SCALE) == pytest.approx(100.0)
    assert float(logits.abs().max()) > 50  # aligned pairs still reach a sharp attention
    example = torch.rand(2, 1, 400, 640)
    with torch.no_grad():
        single = model(example)
        double = copy.deepcopy(model).double()(example.double())
    assert float((single.double() - double).abs().max()) <= 1e-5 * max(float(single.abs().max()), 1.0)  # float32 ~ float64
    assert check_parity(model, export_bytes(model), (1, 1, 400, 640)) <= parity_bound(single.numpy(), 1e-4)
