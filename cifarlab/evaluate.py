"""Evaluation: the model's outputs on a whole split, in large batches under inference_mode."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .augment import crop_at
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


def tta_views(tta: bool, shift: int = 0) -> list[tuple[int, bool]]:
    """The views test-time augmentation averages, as (offset, mirrored): the image itself; with `tta`
    its mirror; with a `shift` also the image moved `shift` pixels down-right (offset 0) and up-left
    (offset 2 x shift), each also mirrored. Offsets index the image padded by `shift` on each side the
    way the training crop pads (view_of's pad_mode), so the moved views look like training crops."""
    views = [(shift, False)]
    if tta:
        views.append((shift, True))
        for offset in (0, 2 * shift) if shift else ():
            views += [(offset, False), (offset, True)]
    return views


def view_of(images: torch.Tensor, shift: int, offset: int, mirrored: bool, pad_mode: str = "zeros") -> torch.Tensor:
    """One test-time view of a batch (see tta_views); the batch itself for the plain view. `pad_mode`: what a
    moved view's uncovered border holds, as the run's crop_pad_mode."""
    if offset == shift and not mirrored:
        return images
    n, size = len(images), images.shape[-1]
    at = torch.full((n,), offset, device=images.device)
    return crop_at(images, shift, size, at, at, torch.full((n,), mirrored, device=images.device), pad_mode)


@torch.inference_mode()
def predict_logits(model: nn.Module, split: Split, *, mean, std, device, precision="fp32",
                   batch_size=1000, channels_last=True, tta=False, tta_shift=0, pad_mode="zeros",
                   context: Context = SINGLE) -> torch.Tensor:
    """Logits for every image of the split, in order (float32, on the CPU); under test-time augmentation
    the mean of the views' logits (no choice is made among them). Under torchrun each process predicts
    every world-th image and the rows are gathered, so each image counts once."""
    was_training = model.training
    model.eval()
    if context.enabled:
        mine = split.subset(torch.arange(context.rank, len(split), context.world, device=split.labels.device))
        local = predict_logits(model, mine, mean=mean, std=std, device=device, precision=precision,
                               batch_size=batch_size, channels_last=channels_last, tta=tta,
                               tta_shift=tta_shift, pad_mode=pad_mode).to(device)
        model.train(was_training)
        return gather_in_order(local, len(split), context).cpu()
    loader = DeviceLoader(split, batch_size, shuffle=False, device=device)
    views = tta_views(tta, tta_shift)
    outputs = []
    for images, _ in loader.batches():
        logits = 0
        for offset, mirrored in views:
            inputs = to_model_input(view_of(images, tta_shift, offset, mirrored, pad_mode), mean, std,
                                    channels_last)
            with autocast(device, precision):
                logits = logits + model(inputs).float()
        outputs.append(logits / len(views))
    model.train(was_training)
    return torch.cat(outputs).cpu()


def evaluate(model: nn.Module, split: Split, *, mean, std, device, precision="fp32", batch_size=1000,
             channels_last=True, label_smoothing=0.0, tta=False, tta_shift=0, pad_mode="zeros",
             context: Context = SINGLE) -> Evaluation:
    """Loss (the training criterion) and accuracy of the model over the whole split."""
    logits = predict_logits(model, split, mean=mean, std=std, device=device, precision=precision,
                            batch_size=batch_size, channels_last=channels_last, tta=tta, tta_shift=tta_shift,
                            pad_mode=pad_mode, context=context)
    labels = split.labels.cpu()
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    return Evaluation(logits, labels, loss, accuracy)
