"""Evaluation: the model's outputs on a whole split, in large batches under inference_mode."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import DeviceLoader, Split, to_model_input
from .distributed import SINGLE, Context, gather_in_order
from .runtime import autocast


@dataclass
class Evaluation:
    logits: torch.Tensor  # (N, classes) float32, on the CPU, in the split's order
    labels: torch.Tensor  # (N,) int64
    loss: float           # mean loss over the split
    accuracy: float       # fraction 0..1

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @property
    def count(self) -> int:
        return len(self.labels)


@torch.inference_mode()
def predict_logits(model: nn.Module, split: Split, *, mean, std, device, precision="fp32",
                   batch_size=1000, channels_last=True, tta=False, context: Context = SINGLE) -> torch.Tensor:
    """Logits for every image of the split, in order (float32, on the CPU). Under torchrun each
    process predicts every world-th image and the rows are gathered, so each image counts once."""
    was_training = model.training
    model.eval()
    if context.enabled:
        mine = split.subset(torch.arange(context.rank, len(split), context.world, device=split.labels.device))
        local = predict_logits(model, mine, mean=mean, std=std, device=device, precision=precision,
                               batch_size=batch_size, channels_last=channels_last, tta=tta).to(device)
        model.train(was_training)
        return gather_in_order(local, len(split), context).cpu()
    loader = DeviceLoader(split, batch_size, shuffle=False, device=device)
    outputs = []
    for images, _ in loader.batches():
        inputs = to_model_input(images, mean, std, channels_last)
        with autocast(device, precision):
            logits = model(inputs).float()
            if tta:  # flip test-time augmentation: no choice is made, only both views averaged
                logits = (logits + model(inputs.flip(3)).float()) / 2
        outputs.append(logits)
    model.train(was_training)
    return torch.cat(outputs).cpu()


def evaluate(model: nn.Module, split: Split, *, mean, std, device, precision="fp32", batch_size=1000,
             channels_last=True, label_smoothing=0.0, tta=False, context: Context = SINGLE) -> Evaluation:
    """Loss (the training criterion) and accuracy of the model over the whole split."""
    logits = predict_logits(model, split, mean=mean, std=std, device=device, precision=precision,
                            batch_size=batch_size, channels_last=channels_last, tta=tta, context=context)
    labels = split.labels.cpu()
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    return Evaluation(logits, labels, loss, accuracy)
