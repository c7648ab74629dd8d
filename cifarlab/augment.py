"""Training augmentations applied to a whole batch at once, on the batch's device.

Each image draws its own random parameters. Every augmentation is a pure function of the batch and
explicit parameters (`crop_at`, `flip_where`, `cutout_at`, `rotate_by`), which the tests pin down,
plus a thin random wrapper that draws those parameters from a generator. Images are float tensors in
0..1 (before normalisation), so the zero fill of padding, CutOut and rotation is black, as with
torchvision's RandomCrop(32, padding=4) on a PIL image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def crop_at(images: torch.Tensor, padding: int, size: int, top: torch.Tensor, left: torch.Tensor):
    """Zero-pad each side by `padding`, then cut a size x size window at (top[i], left[i]) per image."""
    padded = F.pad(images, (padding,) * 4)
    steps = torch.arange(size, device=images.device)
    rows = (top.view(-1, 1) + steps).view(-1, size, 1)
    cols = (left.view(-1, 1) + steps).view(-1, 1, size)
    batch = torch.arange(len(images), device=images.device).view(-1, 1, 1)
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (N, size, size, C) -> (N, C, size, size)


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose mask is True."""
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(3), images)


def cutout_at(images: torch.Tensor, size: int, center_y: torch.Tensor, center_x: torch.Tensor):
    """Zero a size x size square per image, rows [cy - size//2, cy - size//2 + size) and likewise
    for columns, clipped at the borders."""
    _, _, height, width = images.shape
    y = torch.arange(height, device=images.device).view(1, height, 1)
    x = torch.arange(width, device=images.device).view(1, 1, width)
    y0 = (center_y - size // 2).view(-1, 1, 1)
    x0 = (center_x - size // 2).view(-1, 1, 1)
    inside = (y >= y0) & (y < y0 + size) & (x >= x0) & (x < x0 + size)
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def rotate_by(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by degrees[i] (bilinear, zero fill outside)."""
    radians = degrees.to(images.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class Augmenter:
    """The training augmentations named in a config, in a fixed order: crop, flip, rotate, cutout."""

    names: tuple[str, ...] = ("crop", "flip")
    crop_size: int = 32
    crop_padding: int = 4
    cutout_size: int = 16
    rotate_degrees: float = 5.0

    @classmethod
    def from_config(cls, cfg) -> "Augmenter":
        return cls(tuple(cfg.augment), cfg.crop_size, cfg.crop_padding, cfg.cutout_size, cfg.rotate_degrees)

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 share: tuple[int, int, int] | None = None) -> torch.Tensor:
        """Augment a batch. `share` = (rank, world, global batch size) when the batch is one process's
        share of a global batch: parameters are drawn for the global batch and this share's taken, so
        an image gets the same augmentation however many processes train."""
        n, _, height, width = images.shape
        device = images.device
        rank, world, total = share or (0, 1, n)

        def draw(values: torch.Tensor) -> torch.Tensor:
            return values[rank::world]

        def draw_int(high):
            return draw(torch.randint(0, high, (total,), generator=generator, device=device))

        if "crop" in self.names:
            span = height + 2 * self.crop_padding - self.crop_size + 1
            images = crop_at(images, self.crop_padding, self.crop_size, draw_int(span), draw_int(span))
            height, width = images.shape[-2:]
        if "flip" in self.names:
            images = flip_where(images, draw_int(2).bool())
        if "rotate" in self.names and self.rotate_degrees > 0:
            angles = (draw(torch.rand(total, generator=generator, device=device)) * 2 - 1) * self.rotate_degrees
            images = rotate_by(images, angles)
        if "cutout" in self.names:
            images = cutout_at(images, self.cutout_size, draw_int(height), draw_int(width))
        return images
