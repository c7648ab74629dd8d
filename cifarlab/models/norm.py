"""Normalisation layers chosen by name: batch, layer, group, ghost.

All four have the same parameters (a scale and a shift per channel), so a model's parameter count
does not depend on the choice.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "layer", "group", "ghost")


class GhostBatchNorm2d(nn.BatchNorm2d):
    """Ghost BatchNorm (Hoffer et al., 2017): in training, each of `splits` contiguous virtual
    sub-batches is normalised with its own statistics; the running statistics are updated with their
    mean and used in eval, exactly as BatchNorm does. With splits=1 it is BatchNorm."""

    def __init__(self, num_features: int, splits: int = 2, **kwargs):
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        chunks = x.tensor_split(min(self.splits, len(x)))
        out = [F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps) for c in chunks]
        with torch.no_grad():
            mean = torch.stack([c.mean((0, 2, 3)) for c in chunks]).mean(0)
            var = torch.stack([c.var((0, 2, 3), unbiased=True) for c in chunks]).mean(0)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(var.to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked += 1
        return torch.cat(out)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", splits={self.splits}"


def layer_norm(channels: int) -> nn.GroupNorm:
    """LayerNorm for images: each sample normalised over (C, H, W), a scale and shift per channel."""
    return nn.GroupNorm(1, channels)


def norm_factory(name: str = "batch", groups: int = 8, ghost_splits: int = 2):
    """A callable channels -> normalisation layer."""
    if name == "batch":
        return nn.BatchNorm2d
    if name == "layer":
        return layer_norm
    if name == "group":
        return partial(nn.GroupNorm, groups)
    if name == "ghost":
        return partial(GhostBatchNorm2d, splits=ghost_splits)
    raise ValueError(f"unknown norm {name!r}; known: {', '.join(NORMS)}")
