"""Loss functions by name. Both take the model's raw scores (logits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LogSoftmaxNLL(nn.Module):
    """Negative log-likelihood of log-softmax outputs, with optional label smoothing.

    NLL expects log-probabilities; fed raw scores it can go negative. Here the log-softmax is always
    applied first, so the loss is >= 0. (Mathematically this equals cross-entropy.)
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_probs, target)
        if self.label_smoothing:
            loss = (1 - self.label_smoothing) * loss - self.label_smoothing * log_probs.mean(1).mean()
        return loss


def create_loss(name: str, label_smoothing: float = 0.0) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "nll":
        return LogSoftmaxNLL(label_smoothing)
    raise ValueError(f"unknown loss {name!r}")
