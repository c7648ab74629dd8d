"""Shuffled batches cut from tensors that already sit on the training device.

No Dataset, no worker processes: an epoch is one random permutation, and a batch is one gather
from the uint8 image tensor. The permutation of epoch e depends only on (seed, e), so an epoch can
be replayed exactly, for instance after a resume.
"""

from __future__ import annotations

import enum
from typing import Iterator

import torch

from .datasets import Split


class Stream(enum.IntEnum):
    """The run's random streams, one per use, so that no two uses share draws (and adding draws to one,
    such as a new augmentation, leaves the others as they were)."""

    SHUFFLE = 0  # the order of the training images, per epoch
    AUGMENT = 1  # each image's augmentation parameters, per epoch
    LR_FIND = 2  # the LR range test's batches and their augmentation
    FLIPS = 3  # the first epoch's coin per image under --flip-mode alternate


def epoch_seed(seed: int, epoch: int, stream: Stream = Stream.SHUFFLE) -> int:
    """A distinct 63-bit seed per (run seed, epoch, stream)."""
    return (seed * 1_000_003 + epoch * 7_919 + int(stream) * 104_729) % (2**63 - 1)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) of each batch; a last batch of one image joins the one before it, because
    BatchNorm cannot normalise a single image in training mode."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


class DeviceLoader:
    """Iterates (uint8 images, labels) batches of a split held on `device`."""

    def __init__(self, split: Split, batch_size: int, *, shuffle: bool, seed: int = 0, device="cpu"):
        self.split = split.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(batch_bounds(len(self.split), self.batch_size))

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.split)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, Stream.SHUFFLE))
        return torch.randperm(n, generator=generator).to(self.device, non_blocking=True)

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, _, _ in self.shards(epoch):
            yield images, labels

    def shards(self, epoch: int = 0, rank: int = 0, world: int = 1):
        """(images, labels, global batch size, positions in the split): process `rank`'s share of every
        global batch, items rank, rank + world, ... of it. With one process, the whole batch."""
        order = self.order(epoch)
        for start, end in batch_bounds(len(order), self.batch_size):
            index = order[start:end][rank::world]
            # index_select, not images[index]: on the CPU advanced indexing of a 4-d uint8 tensor
            # is over ten times slower
            yield (self.split.images.index_select(0, index), self.split.labels.index_select(0, index),
                   end - start, index)


def to_model_input(images: torch.Tensor, mean, std, channels_last: bool = True) -> torch.Tensor:
    """uint8 or 0..1 float images -> normalised float32 in the memory format the model runs in."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    images = (images - mean_t) / std_t
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images
