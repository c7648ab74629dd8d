"""Averages of the weights over training steps.

WeightAverage (--ema-decay): an exponential moving average (EMA) of the weights; it is the model that is
evaluated, saved and explained, while training goes on updating the ordinary weights.

After every optimisation step each floating-point parameter and buffer (BatchNorm's running statistics
included) moves a share of the way to the trained model's value:
    average = d * average + (1 - d) * weight,   d = min(decay, (1 + t) / (10 + t)) at update t,
so the average forgets its random start within the first few dozen steps (timm's EMA warm-up) and then
smooths over about 1 / (1 - decay) steps. Integer buffers (BatchNorm's batch counter) are copied.

Not torch.optim.swa_utils.AveragedModel: its update tests a step counter on the host and copies it
to the device every step, which on CUDA makes the host wait for the device each step. Here an update
is one foreach kernel on the device and the step counter is a Python int.

Lookahead (--lookahead-every): a slow copy of the weights that feeds back into training; see its class.
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


class Lookahead:
    """Lookahead (Zhang et al. 2019, "k steps forward, 1 step back") with the scheduled pull of Keller
    Jordan's airbench: every `every` optimisation steps a slow copy of the weights (and BatchNorm
    statistics) moves towards the trained ones, and the trained ones are reset onto it:
        slow = d * slow + (1 - d) * weights;  weights = slow,   d = 0.95 ** every * (t / total) ** 3
    at step t of `total`. Early in training d is about 0 and nothing changes; towards the end, while the
    lr anneals, each reset undoes about d of the last `every` steps' moves, which damps their noise. The
    last step always resets, so the finished model is the slow copy. Unlike WeightAverage, the average
    feeds back into training, and no second model is kept: only the slow tensors."""

    PULL_PER_STEP = 0.95

    def __init__(self, model: nn.Module, every: int, total_steps: int):
        self.every, self.total_steps, self.updates = every, total_steps, 0
        floats = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self._names, self._weights = list(floats), list(floats.values())
        self._slow = [w.detach().clone() for w in self._weights]

    def current_decay(self) -> float:
        return self.PULL_PER_STEP ** self.every * min(1.0, self.updates / self.total_steps) ** 3

    @torch.no_grad()
    def update(self) -> None:
        """Called after every optimisation step; acts on every `every`-th and on the last."""
        self.updates += 1
        if self.updates % self.every and self.updates < self.total_steps:
            return
        torch._foreach_lerp_(self._slow, self._weights, 1.0 - self.current_decay())
        for weight, kept in zip(self._weights, self._slow):
            weight.copy_(kept)

    def state_dict(self) -> dict:
        return dict(zip(self._names, self._slow))

    def load_state_dict(self, slow: dict, updates: int) -> None:
        for name, kept in zip(self._names, self._slow):
            kept.copy_(slow[name])
        self.updates = updates
