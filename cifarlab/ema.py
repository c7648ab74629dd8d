"""An exponential moving average (EMA) of the weights: with --ema-decay it is the model that is
evaluated, saved and explained, while training goes on updating the ordinary weights.

After every optimisation step each floating-point parameter and buffer (BatchNorm's running statistics
included) moves a share of the way to the trained model's value:
    average = d * average + (1 - d) * weight,   d = min(decay, (1 + t) / (10 + t)) at update t,
so the average forgets its random start within the first few dozen steps (timm's EMA warm-up) and then
smooths over about 1 / (1 - decay) steps. Integer buffers (BatchNorm's batch counter) are copied.

Not torch.optim.swa_utils.AveragedModel: its update tests a step counter on the host and copies it
to the device every step, which on CUDA makes the host wait for the device each step. Here an update
is one foreach kernel on the device and the step counter is a Python int.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        # Its parameters keep requires_grad: no optimizer holds them, and Grad-CAM needs the graph.
        self.module = copy.deepcopy(model).eval()
        # state_dict() tensors share storage with the modules' own, so updating them updates the average.
        # The model's tensors are updated in place by the optimizer and by checkpoint loading: the
        # references stay valid for the whole run.
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self._floats = ([a for a, _ in pairs if a.is_floating_point()], [w for a, w in pairs if a.is_floating_point()])
        self._others = [(a, w) for a, w in pairs if not a.is_floating_point()]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        averaged, trained = self._floats
        torch._foreach_lerp_(averaged, trained, 1.0 - self.current_decay())
        for mine, theirs in self._others:
            mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, weights: dict, updates: int) -> None:
        self.module.load_state_dict(weights)
        self.updates = updates
