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


def crop_at(images: torch.Tensor, padding: int, size: int, top: torch.Tensor, left: torch.Tensor,
            flip: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-pad each side by `padding`, then cut a size x size window at (top[i], left[i]) per image;
    where flip[i] is True the window is read right to left (the crop, then mirrored). One gather over
    the flattened padded pixels."""
    n, channels = images.shape[:2]
    padded = F.pad(images, (padding,) * 4)
    width = padded.shape[-1]
    steps = torch.arange(size, device=images.device)
    columns = steps if flip is None else torch.where(flip.view(-1, 1), steps.flip(0), steps)
    rows = (top.view(-1, 1) + steps).view(n, size, 1)
    cols = (left.view(-1, 1) + columns).view(n, 1, size)
    index = (rows * width + cols).view(n, 1, size * size).expand(n, channels, size * size)
    return padded.flatten(2).gather(2, index).view(n, channels, size, size)


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose mask is True."""
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(3), images)


def cutout_mask(size: int, center_y: torch.Tensor, center_x: torch.Tensor, height: int, width: int):
    """(N, height, width) True inside each image's size x size square: rows [cy - size//2,
    cy - size//2 + size) and likewise for columns, clipped at the borders."""
    y = torch.arange(height, device=center_y.device).view(1, height, 1)
    x = torch.arange(width, device=center_x.device).view(1, 1, width)
    y0 = (center_y - size // 2).view(-1, 1, 1)
    x0 = (center_x - size // 2).view(-1, 1, 1)
    return (y >= y0) & (y < y0 + size) & (x >= x0) & (x < x0 + size)


def cutout_at(images: torch.Tensor, size: int, center_y: torch.Tensor, center_x: torch.Tensor):
    """Zero each image's cutout_mask square."""
    _, _, height, width = images.shape
    return images.masked_fill(cutout_mask(size, center_y, center_x, height, width).unsqueeze(1), 0.0)


def rotation_matrices(degrees: torch.Tensor, dtype) -> torch.Tensor:
    radians = degrees.to(dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (N, 2, 2)


def sampling_grid(linear: torch.Tensor, shift: torch.Tensor, height: int, width: int,
                  hide: torch.Tensor | None = None) -> torch.Tensor:
    """The (N, height, width, 2) grid that F.affine_grid(theta, align_corners=False) gives for
    theta = [linear | shift]: output pixel p (normalised, pixel centres at (2k + 1) / size - 1) reads
    the input at linear[i] @ p + shift[i]. Built by broadcasting straight into the grid's two
    planes, several times faster on the CPU than affine_grid. Output pixels where `hide` (N, height,
    width) is True are pointed far outside the image, so the resampling gives them zero: a CutOut that
    costs no pass over the images."""
    dtype, device = linear.dtype, linear.device
    x = ((torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1).view(1, 1, width)
    y = ((torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1).view(1, height, 1)
    grid = torch.empty(len(linear), height, width, 2, dtype=dtype, device=device)
    for k in (0, 1):  # the source's x, then its y
        along_x = linear[:, k, 0].view(-1, 1, 1) * x
        along_y = linear[:, k, 1].view(-1, 1, 1) * y + shift[:, k].view(-1, 1, 1)
        torch.add(along_x, along_y, out=grid[..., k])
    if hide is not None:
        grid[..., 0].masked_fill_(hide, 4.0)  # two image widths beyond the border: only zeros there
    return grid


def resample(images: torch.Tensor, linear: torch.Tensor, shift: torch.Tensor,
             hide: torch.Tensor | None = None) -> torch.Tensor:
    """Output pixel p (normalised coordinates) takes the input at linear[i] @ p + shift[i]
    (bilinear, zero outside the image); pixels where `hide` is True are zero."""
    _, _, height, width = images.shape
    grid = sampling_grid(linear.to(images.dtype), shift.to(images.dtype), height, width, hide)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_by(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by degrees[i] (bilinear, zero fill outside)."""
    linear = rotation_matrices(degrees, images.dtype)
    return resample(images, linear, torch.zeros(len(images), 2, dtype=images.dtype, device=images.device))


def crop_flip_rotate(images: torch.Tensor, padding: int, top, left, flip, degrees,
                     hide: torch.Tensor | None = None) -> torch.Tensor:
    """crop_at (same size as the image), then flip_where, then rotate_by, as one resampling: the
    pixel of the output at p comes from the input at S R p + t, S mirroring x for flipped images,
    R the rotation and t the crop's offset from the centre position. One difference from the three
    steps in turn: where the rotation brings in pixels from beyond the crop window, they come from the
    image rather than from the crop's zero padding (as torchvision's RandomAffine does). Pixels where
    `hide` is True come out zero (a CutOut after the rotation, at no extra cost)."""
    _, _, height, width = images.shape
    linear = rotation_matrices(degrees, images.dtype)
    mirror = torch.where(flip, -1.0, 1.0).to(images.dtype)
    linear = linear * torch.stack([mirror, torch.ones_like(mirror)], 1).unsqueeze(2)  # scale row x
    shift = torch.stack([(left - padding).to(images.dtype) * 2 / width,
                         (top - padding).to(images.dtype) * 2 / height], 1)
    return resample(images, linear, shift, hide)


def alternating_flips(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Whether each of n training images is mirrored in `epoch` (counted from 1) under flip_mode
    alternate: a coin toss per image in the first epoch (seeded by the run, not the epoch), then the
    opposite of the epoch before. Any two epochs running then show every image both ways, where coin
    tosses each epoch show a quarter of the images the same way twice (K. Jordan, "94% on CIFAR-10 in
    3.29 seconds", 2024, who found it worth more the shorter the training)."""
    first = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)).bool()
    return first ^ (epoch % 2 == 0)


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

    def draw(self, images: torch.Tensor, generator: torch.Generator,
             share: tuple[int, int, int] | None = None, flip: torch.Tensor | None = None) -> dict:
        """Random parameters for each image. `share` = (rank, world, global batch size) when the batch is
        one process's share of a global batch: parameters are drawn for the global batch and this
        share's taken, so an image gets the same augmentation however many processes train. `flip`, if
        given, decides the mirroring instead of a coin toss (see alternating_flips); the coins are drawn
        all the same, so the other parameters do not depend on it."""
        n, _, height, width = images.shape
        device = images.device
        rank, world, total = share or (0, 1, n)

        def ints(high):
            return torch.randint(0, high, (total,), generator=generator, device=device)[rank::world]

        params = {}
        if "crop" in self.names:
            span = height + 2 * self.crop_padding - self.crop_size + 1
            params["top"], params["left"] = ints(span), ints(span)
            height = width = self.crop_size
        if "flip" in self.names:
            coins = ints(2).bool()
            params["flip"] = coins if flip is None else flip.to(coins.device)
        if "rotate" in self.names and self.rotate_degrees > 0:
            uniform = torch.rand(total, generator=generator, device=device)[rank::world]
            params["degrees"] = (uniform * 2 - 1) * self.rotate_degrees
        if "cutout" in self.names:
            params["center_y"], params["center_x"] = ints(height), ints(width)
        return params

    def apply(self, images: torch.Tensor, params: dict) -> torch.Tensor:
        """The augmentations with the given parameters, in as few passes over the batch as they allow:
        crop and flip as one gather; with a rotation, crop, flip, rotation and CutOut as one resampling."""
        n, _, height, width = images.shape
        if "degrees" in params and self.crop_size == height:
            zeros = torch.zeros(n, dtype=torch.long, device=images.device)
            cropped = "top" in params
            hide = (cutout_mask(self.cutout_size, params["center_y"], params["center_x"], height, width)
                    if "center_y" in params else None)
            return crop_flip_rotate(images, self.crop_padding if cropped else 0,
                                    params["top"] if cropped else zeros, params["left"] if cropped else zeros,
                                    params.get("flip", zeros.bool()), params["degrees"], hide)
        if "top" in params:
            images = crop_at(images, self.crop_padding, self.crop_size, params["top"], params["left"],
                             params.get("flip"))
        elif "flip" in params:
            images = flip_where(images, params["flip"])
        if "degrees" in params:
            images = rotate_by(images, params["degrees"])
        if "center_y" in params:
            images = cutout_at(images, self.cutout_size, params["center_y"], params["center_x"])
        return images

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 share: tuple[int, int, int] | None = None, flip: torch.Tensor | None = None) -> torch.Tensor:
        return self.apply(images, self.draw(images, generator, share, flip))
