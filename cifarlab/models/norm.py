"""Normalisation layers chosen by name, declared in NORMS: batch, layer, group, ghost.

Each entry is a builder `(groups, ghost_splits) -> (channels -> layer)`. All four have the same
parameters (a scale and a shift per channel), so a model's parameter count does not depend on the choice.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

NORMS = Registry("norm")


class GhostBatchNorm2d(nn.BatchNorm2d):
    """Ghost BatchNorm (Hoffer et al., 2017): in training, each of `splits` contiguous virtual
    sub-batches is normalised with its own statistics; the running statistics are updated with their
    mean and used in eval, exactly as BatchNorm does. With splits=1 it is BatchNorm."""

    def __init__(self, num_features: int, splits: int = 2, **kwargs):
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = min(self.splits, len(x))
        if not self.training or splits == 1:
            return super().forward(x)
        running_mean = self.running_mean.repeat(splits, 1)  # each split updates its own copy
        running_var = self.running_var.repeat(splits, 1)
        if len(x) % splits == 0:
            out = self._normalise_equal_splits(x, splits, running_mean, running_var)
        else:
            out = torch.cat([self._batch_norm(chunk, mean, var, self.weight, self.bias) for chunk, mean, var
                             in zip(x.tensor_split(splits), running_mean, running_var)])
        with torch.no_grad():  # the mean of the updated copies is the update by the splits' mean statistics
            self.running_mean.copy_(running_mean.mean(0))
            self.running_var.copy_(running_var.mean(0))
            self.num_batches_tracked += 1
        return out

    def _batch_norm(self, x, running_mean, running_var, weight, bias):
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, self.momentum, self.eps)

    def _normalise_equal_splits(self, x, splits, running_mean, running_var):
        """All splits in one batch_norm call (a loop over the splits is several times slower on a CPU):
        channel c of split s becomes channel s*C + c of an (N/splits, splits*C, H, W) tensor."""
        n, c, h, w = x.shape
        grouped = x.unflatten(0, (splits, n // splits)).transpose(0, 1).reshape(n // splits, splits * c, h, w)
        normalised = self._batch_norm(grouped, running_mean.view(-1), running_var.view(-1),
                                      self.weight.repeat(splits), self.bias.repeat(splits))
        out = torch.empty_like(x)  # in x's memory format: channels_last stays channels_last
        out.unflatten(0, (splits, n // splits)).copy_(normalised.unflatten(1, (splits, c)).transpose(0, 1))
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", splits={self.splits}"


def layer_norm(channels: int) -> nn.GroupNorm:
    """LayerNorm for images: each sample normalised over (C, H, W), a scale and shift per channel."""
    return nn.GroupNorm(1, channels)


NORMS.register("batch", lambda groups, splits: nn.BatchNorm2d, help="BatchNorm")
NORMS.register("layer", lambda groups, splits: layer_norm, help="each sample over C, H, W")
NORMS.register("group", lambda groups, splits: partial(nn.GroupNorm, groups), help="GroupNorm, --norm-groups")
NORMS.register("ghost", lambda groups, splits: partial(GhostBatchNorm2d, splits=splits),
               help="Ghost BatchNorm, --ghost-splits")


def norm_factory(name: str = "batch", groups: int = 8, ghost_splits: int = 2):
    """A callable channels -> normalisation layer."""
    return NORMS[name](groups, ghost_splits)
