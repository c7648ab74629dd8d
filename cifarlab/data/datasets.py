"""The splits a run trains and is judged on, held in memory as uint8 tensors.

`load_splits` reads the data (CIFAR batches or an image folder), takes the stratified seeded subsets
asked for, holds out the validation images from the training split, and computes the per-channel
mean and std on the training images alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError
from .cifar import SPECS, load_cifar
from .folder import load_folder


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, 32, 32) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "Split":
        return Split(self.images[index], self.labels[index])

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Splits:
    train: Split
    val: Split | None
    test: Split
    classes: list[str]
    mean: tuple[float, float, float]  # per channel, of the training images scaled to 0..1
    std: tuple[float, float, float]


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """All indices, ordered so that every prefix is a stratified random sample.

    Each class is shuffled, and its k-th image gets the key (k + u) / class_size with u uniform in
    [0, 1): sorting by key interleaves the classes in proportion to their sizes.
    """
    generator = torch.Generator().manual_seed(seed)
    keys = torch.empty(len(labels), dtype=torch.float64)
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        shuffled = members[torch.randperm(len(members), generator=generator)]
        jitter = torch.rand(len(members), generator=generator, dtype=torch.float64)
        keys[shuffled] = (torch.arange(len(members), dtype=torch.float64) + jitter) / len(members)
    return torch.argsort(keys, stable=True)


def stratified_subset(split: Split, count: int, seed: int) -> Split:
    """A seeded random subset of `count` images with the class proportions of `split`."""
    if count >= len(split):
        return split
    return split.subset(torch.sort(stratified_order(split.labels, seed)[:count]).values)


def hold_out(split: Split, count: int, seed: int) -> tuple[Split, Split]:
    """(rest, held_out): `count` stratified random images taken out of `split`."""
    order = stratified_order(split.labels, seed)
    held, rest = torch.sort(order[:count]).values, torch.sort(order[count:]).values
    return split.subset(rest), split.subset(held)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, as fractions of 255 (computed in float64)."""
    flat = images.permute(1, 0, 2, 3).reshape(3, -1).to(torch.float64) / 255.0
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).tolist())


def read_data(data: str, data_dir: str, progress: bool = True, train: bool = True):
    if data in SPECS:
        return load_cifar(data, data_dir, train)
    return load_folder(data, progress, train)


def as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))


def test_subset(test: Split, limit_test, seed: int) -> Split:
    """The test split a run is judged on: all of it, or its stratified subset of limit_test images."""
    return stratified_subset(test, limit_test, seed + 1) if limit_test else test


def load_test_split(data: str, data_dir: str, *, limit_test=None, seed=0, progress=True) -> tuple[Split, list]:
    """Only the test split (as load_splits would give it) and the class names; the training images
    are not read."""
    _, _, test_x, test_y, classes = read_data(data, data_dir, progress, train=False)
    return test_subset(as_split(test_x, test_y), limit_test, seed), classes


def load_splits(data: str, data_dir: str, *, limit_train=None, limit_test=None, val_split=0, seed=0,
                progress=True) -> Splits:
    train_x, train_y, test_x, test_y, classes = read_data(data, data_dir, progress)
    train, test = as_split(train_x, train_y), test_subset(as_split(test_x, test_y), limit_test, seed)
    if limit_train:
        train = stratified_subset(train, limit_train, seed)
    val = None
    if val_split:
        if val_split >= len(train):
            raise DataError(f"val_split: {val_split} images cannot be held out of {len(train)} training images")
        train, val = hold_out(train, val_split, seed + 2)
    if len(train) == 0 or len(test) == 0:
        raise DataError("the training and test splits must each hold at least one image")
    mean, std = channel_stats(train.images)
    return Splits(train, val, test, classes, mean, std)
