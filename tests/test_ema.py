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


def test_resuming_a_checkpoint_without_an_average_starts_it_at_the_resumed_weights():
    """Scenario: Weight averaging (EMA) (--ema-decay added when resuming a run that kept none)"""
    from training.checkpoint import TrainState

    trained = _model()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(3.0)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint = TrainState(trained, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), epoch=2).state_dict({}, 1)
    fresh = _model()
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1)
    state = TrainState(fresh, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0), torch.amp.GradScaler("cpu", enabled=False),
                       ema=ModelEma(fresh, 0.99))
    state.load_state_dict(checkpoint)
    assert state.epoch == 2
    assert all(torch.equal(a, b) for a, b in zip(state.ema.module.state_dict().values(), trained.state_dict().values()))
