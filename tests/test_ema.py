"""ModelEma: the weight average that validation, best.pt and ONNX export use when --ema-decay is set."""

import pytest
import torch
from torch import nn

from training.ema import ModelEma


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_average_follows_the_documented_update():
    """Scenario: Weight averaging (EMA)"""
    model = _model()
    ema = ModelEma(model, decay=0.99)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(), model.state_dict().values()))
    assert not any(p.requires_grad for p in ema.module.parameters())
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.fill_(5)
    ema.update(model)  # first update: d = min(0.99, 1/10) = 0.1
    state = ema.module.state_dict()
    assert torch.allclose(state["0.weight"], 0.1 * before["0.weight"] + 0.9 * model[0].weight)
    assert torch.allclose(state["1.running_mean"], 0.1 * before["1.running_mean"] + 0.9 * model[1].running_mean)
    assert state["1.num_batches_tracked"].item() == 5  # integer buffers are copied
    for _ in range(2000):
        ema.update(model)
    assert ema.current_decay() == 0.99  # the warm-up ramp ends at the configured decay
    assert torch.allclose(ema.module[0].weight, model[0].weight)


def test_state_round_trips_and_bad_decay_fails():
    """Scenario: Weight averaging (EMA)"""
    model = _model()
    ema = ModelEma(model, decay=0.9)
    ema.update(model)
    other = ModelEma(_model(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and other.current_decay() == ema.current_decay()
    with pytest.raises(ValueError, match="decay"):
        ModelEma(model, decay=1.0)
