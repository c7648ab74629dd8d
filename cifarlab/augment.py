"""Training augmentations applied to a whole batch at once, on the batch's device.

Each augmentation is a small class in the registry AUGMENTATIONS, declared in the order they run: it
draws each image's random parameters (`draw`) and applies them (`apply`, a pure function of the batch
and those parameters, like `crop_at`, `flip_where`, `cutout_at`, `rotate_by` below, which the tests pin
down). `Augmenter` runs the ones a config names. Where several can be done in one pass over the batch,
a `FastPath` says which it covers, and is taken only when it covers every active augmentation.

Images are float tensors in 0..1 (before normalisation), so the zero fill of padding, CutOut and
rotation is black, as with torchvision's RandomCrop(32, padding=4) on a PIL image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .registry import Registry


CROP_PAD_MODES = ("zeros", "reflect")
# Where a CutOut square may fall: its centre anywhere, clipped at the border (DeVries & Taylor 2017), or
# wholly inside the image, so it always hides size x size pixels (hlb-CIFAR10 and airbench).
CUTOUT_PLACEMENTS = ("center", "inside")


def crop_at(images: torch.Tensor, padding: int, size: int, top: torch.Tensor, left: torch.Tensor,
            flip: torch.Tensor | None = None, pad_mode: str = "zeros") -> torch.Tensor:
    """Pad each side by `padding` (zeros, or the image mirrored at its border: `pad_mode` reflect), then
    cut a size x size window at (top[i], left[i]) per image; where flip[i] is True the window is read
    right to left (the crop, then mirrored). One gather over the flattened padded pixels."""
    n, channels = images.shape[:2]
    padded = F.pad(images, (padding,) * 4, mode="reflect") if pad_mode == "reflect" else F.pad(images, (padding,) * 4)
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




LUMA = (0.299, 0.587, 0.114)  # the grey of an RGB pixel, as torchvision's rgb_to_grayscale weighs it


def grey(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def jitter_colours(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                   saturation: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter without hue, in a fixed order, with one factor per image: brightness
    scales the pixels, contrast moves them away from the image's mean grey, saturation away from each
    pixel's own grey (a factor of 1 changes nothing; each result is clipped to 0..1)."""
    def per_image(factor):
        return factor.to(images.dtype).view(-1, 1, 1, 1)

    images = (images * per_image(brightness)).clamp(0, 1)
    mean = grey(images).mean((2, 3), keepdim=True)
    images = torch.lerp(mean.expand_as(images), images, per_image(contrast)).clamp(0, 1)
    return torch.lerp(grey(images).expand_as(images), images, per_image(saturation)).clamp(0, 1)


class Sampler:
    """Each image's random numbers, drawn from one generator in the order the augmentations ask for them.
    With `share` = (rank, world, global batch size) the batch is one process's share of a global batch:
    numbers are drawn for the whole global batch and this share's taken, so an image gets the same
    augmentation however many processes train. `flips`, if given, decides the mirroring instead of a coin
    toss (see alternating_flips)."""

    def __init__(self, n: int, generator: torch.Generator, device, share: tuple[int, int, int] | None = None,
                 flips: torch.Tensor | None = None):
        self.generator, self.device, self.flips = generator, device, flips
        self.rank, self.world, self.total = share or (0, 1, n)

    def ints(self, high: int) -> torch.Tensor:
        """A whole number in [0, high) per image."""
        drawn = torch.randint(0, high, (self.total,), generator=self.generator, device=self.device)
        return drawn[self.rank::self.world]

    def uniform(self) -> torch.Tensor:
        """A number in [0, 1) per image."""
        return torch.rand(self.total, generator=self.generator, device=self.device)[self.rank::self.world]


AUGMENTATIONS = Registry("augmentation")  # in the order they run


class Augmentation:
    """One training augmentation, built from a config's settings. `draw` takes each image's parameters
    from the sampler (so they come in a fixed order); `apply` is a pure function of the images and them."""

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def active(self) -> bool:
        """False where the settings make it do nothing (a rotation by up to 0 degrees)."""
        return True

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def draw(self, sampler: Sampler, height: int, width: int) -> dict:
        raise NotImplementedError

    def apply(self, images: torch.Tensor, params: dict) -> torch.Tensor:
        raise NotImplementedError


@AUGMENTATIONS.register("jitter", help="brightness, contrast and saturation each scaled by a factor from "
                                      "[1 - s, 1 + s], s = --jitter-strength")
class Jitter(Augmentation):
    def draw(self, sampler, height, width):
        low, high = max(0.0, 1 - self.cfg.jitter_strength), 1 + self.cfg.jitter_strength
        return {name: low + (high - low) * sampler.uniform() for name in ("brightness", "contrast", "saturation")}

    def apply(self, images, params):
        return jitter_colours(images, params["brightness"], params["contrast"], params["saturation"])


@AUGMENTATIONS.register("crop", help="a --crop-size window of the image padded by --crop-padding on each side")
class Crop(Augmentation):
    def output_size(self, height, width):
        return self.cfg.crop_size, self.cfg.crop_size

    def draw(self, sampler, height, width):
        span = height + 2 * self.cfg.crop_padding - self.cfg.crop_size + 1
        return {"top": sampler.ints(span), "left": sampler.ints(span)}

    def apply(self, images, params):
        return crop_at(images, self.cfg.crop_padding, self.cfg.crop_size, params["top"], params["left"],
                       pad_mode=self.cfg.crop_pad_mode)


@AUGMENTATIONS.register("flip", help="mirrored left-right, see --flip-mode")
class Flip(Augmentation):
    def draw(self, sampler, height, width):
        coins = sampler.ints(2).bool()  # drawn even when `flips` decides, so later draws do not depend on it
        return {"flip": coins if sampler.flips is None else sampler.flips.to(coins.device)}

    def apply(self, images, params):
        return flip_where(images, params["flip"])


@AUGMENTATIONS.register("rotate", help="turned by up to --rotate-degrees either way")
class Rotate(Augmentation):
    @property
    def active(self):
        return self.cfg.rotate_degrees > 0

    def draw(self, sampler, height, width):
        return {"degrees": (sampler.uniform() * 2 - 1) * self.cfg.rotate_degrees}

    def apply(self, images, params):
        return rotate_by(images, params["degrees"])


@AUGMENTATIONS.register("cutout", help="a black --cutout-size square at a random place, see --cutout-placement")
class Cutout(Augmentation):
    def draw(self, sampler, height, width):
        if self.cfg.cutout_placement == "center":
            return {"center_y": sampler.ints(height), "center_x": sampler.ints(width)}
        size = self.cfg.cutout_size  # inside: the square's top-left corner anywhere it fits
        return {"center_y": sampler.ints(max(height - size, 0) + 1) + size // 2,
                "center_x": sampler.ints(max(width - size, 0) + 1) + size // 2}

    def apply(self, images, params):
        return cutout_at(images, self.cfg.cutout_size, params["center_y"], params["center_x"])


@dataclass(frozen=True)
class FastPath:
    """Several augmentations in one pass over the batch instead of one pass each (the gather gives the same
    pixels; the resampling differs only where crop_flip_rotate says). Taken only when every active
    augmentation is one it `covers`, those it `needs` are active, and `fits` accepts their settings;
    otherwise each augmentation runs on its own, with the same random draws."""

    name: str
    covers: frozenset
    needs: frozenset
    run: Callable[[dict, torch.Tensor, dict], torch.Tensor]
    fits: Callable[[dict, torch.Tensor], bool] = lambda steps, images: True

    def takes(self, steps: dict, images: torch.Tensor) -> bool:
        return self.needs <= steps.keys() <= self.covers and self.fits(steps, images)


def _one_resampling(steps: dict, images: torch.Tensor, params: dict) -> torch.Tensor:
    n, _, height, width = images.shape
    zeros = torch.zeros(n, dtype=torch.long, device=images.device)
    hide = (cutout_mask(steps["cutout"].cfg.cutout_size, params["center_y"], params["center_x"], height, width)
            if "cutout" in steps else None)
    padding = steps["crop"].cfg.crop_padding if "crop" in steps else 0
    return crop_flip_rotate(images, padding, params.get("top", zeros), params.get("left", zeros),
                            params.get("flip", zeros.bool()), params["degrees"], hide)


def _crop_keeps_size_with_zeros(steps: dict, images: torch.Tensor) -> bool:
    crop = steps.get("crop")
    return crop is None or (crop.cfg.crop_size == images.shape[-1] == images.shape[-2]
                            and crop.cfg.crop_pad_mode == "zeros")


def _one_gather(steps: dict, images: torch.Tensor, params: dict) -> torch.Tensor:
    cfg = steps["crop"].cfg
    return crop_at(images, cfg.crop_padding, cfg.crop_size, params["top"], params["left"], params["flip"],
                   cfg.crop_pad_mode)


FAST_PATHS = (
    FastPath("crop, flip, rotation and CutOut as one resampling", frozenset({"crop", "flip", "rotate", "cutout"}),
             frozenset({"rotate"}), _one_resampling, _crop_keeps_size_with_zeros),
    FastPath("crop and flip as one gather", frozenset({"crop", "flip"}), frozenset({"crop", "flip"}), _one_gather),
)


class Augmenter:
    """The training augmentations a config names, run in the registry's order."""

    def __init__(self, cfg):
        built = {name: AUGMENTATIONS[name](cfg) for name in AUGMENTATIONS if name in cfg.augment}
        self.steps = {name: step for name, step in built.items() if step.active}

    @classmethod
    def from_config(cls, cfg) -> "Augmenter":
        return cls(cfg)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.steps)

    def draw(self, images: torch.Tensor, generator: torch.Generator,
             share: tuple[int, int, int] | None = None, flip: torch.Tensor | None = None) -> dict:
        """Random parameters for each image, from each active augmentation in turn (see Sampler)."""
        sampler = Sampler(len(images), generator, images.device, share, flip)
        height, width = images.shape[-2:]
        params = {}
        for step in self.steps.values():
            params.update(step.draw(sampler, height, width))
            height, width = step.output_size(height, width)
        return params

    def fast_path(self, images: torch.Tensor) -> FastPath | None:
        return next((path for path in FAST_PATHS if self.steps and path.takes(self.steps, images)), None)

    def apply(self, images: torch.Tensor, params: dict) -> torch.Tensor:
        path = self.fast_path(images)
        if path is not None:
            return path.run(self.steps, images, params)
        for step in self.steps.values():
            images = step.apply(images, params)
        return images

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 share: tuple[int, int, int] | None = None, flip: torch.Tensor | None = None) -> torch.Tensor:
        return self.apply(images, self.draw(images, generator, share, flip))
