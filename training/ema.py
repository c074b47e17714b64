"""Exponential moving average (EMA) of a model's weights: timm's ModelEmaV2 averaging (every parameter and buffer)
with the num_updates warm-up of TensorFlow's tf.train.ExponentialMovingAverage.

    ema = ModelEma(model, decay=0.995)
    ...optimizer.step(); ema.update(model)
    validate(ema.module)

After each optimizer step every floating-point parameter and buffer (BatchNorm running statistics included) moves
towards the training model: ema = d * ema + (1 - d) * model, with d = min(decay, (1 + n) / (10 + n)) after n
updates, so the average follows the fast-changing early weights and then settles to a horizon of about
1 / (1 - decay) steps. Integer buffers (BatchNorm's batch counter) are copied. The averaged weights are what
validation, best.pt selection, ONNX export and overlays use when `--ema-decay` is set.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from training.checkpoint import state_dict_cpu, unwrap


class ModelEma:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        source = unwrap(model).state_dict()
        for name, average in self.module.state_dict().items():
            value = source[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": state_dict_cpu(self.module), "updates": self.updates}  # the decay is in the run's config

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
