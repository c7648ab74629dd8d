"""The learning-rate range test (Smith, 2017; as in fastai and torch-lr-finder).

The learning rate grows exponentially from `start_lr` to `end_lr` over `steps` training batches; the
loss is smoothed with a bias-corrected exponential moving average; the test stops once the smoothed
loss exceeds `diverge` times its best value. The suggested peak learning rate for OneCycle is the
point of steepest descent of the smoothed loss against log(lr), looked for before the loss minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .explain.plots import Figure

from .optim import set_lr


@dataclass(repr=False)
class RangeTest:
    """The result of the LR range test: `suggestion` is a peak lr for onecycle; `plot()` draws the test."""

    lrs: list[float]
    losses: list[float]     # smoothed
    raw_losses: list[float]
    suggestion: float
    diverged: bool

    def plot(self) -> Figure:
        """The smoothed and raw loss against the lr (log scale), the suggestion marked."""
        return range_test_figure(self)

    def __repr__(self) -> str:
        end = "stopped when the loss diverged" if self.diverged else "reached the largest lr"
        return (f"LR range test over {len(self.lrs)} batches ({end}): suggested max lr {self.suggestion:.4g}; "
                ".plot() draws it")


def suggest_lr(lrs: list[float], losses: list[float], skip_start: int = 10) -> float:
    """The lr where the smoothed loss falls fastest against log(lr), before its minimum. The first
    `skip_start` points are left out: the moving average is still mostly noise there."""
    log_lrs, losses_arr = np.log(np.asarray(lrs)), np.asarray(losses)
    end = int(np.argmin(losses_arr)) + 1
    half = max(2, len(losses_arr) // 20)  # slope over a window: single steps are mostly batch noise
    centres = np.arange(max(skip_start, half), end - half)
    if len(centres) == 0:
        return float(np.exp(log_lrs[end - 1]) / 10)
    slopes = (losses_arr[centres + half] - losses_arr[centres - half]) / (log_lrs[centres + half] - log_lrs[centres - half])
    return float(np.exp(log_lrs[centres[int(np.argmin(slopes))]]))


def lr_range_test(step: Callable[[], float], optimizer, *, start_lr=1e-5, end_lr=10.0, steps=200,
                  smoothing=0.95, diverge=4.0, progress=None) -> RangeTest:
    """Run `step()` (one training step returning its loss) with exponentially growing lr."""
    factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    lrs, losses, raw = [], [], []
    average, best, diverged = 0.0, math.inf, False
    for i in range(steps):
        lr = start_lr * factor**i
        set_lr(optimizer, lr)
        loss = float(step())
        if not math.isfinite(loss):
            diverged = True
            break
        average = smoothing * average + (1 - smoothing) * loss
        smoothed = average / (1 - smoothing ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        raw.append(loss)
        best = min(best, smoothed)
        if progress:
            progress(i, lr, smoothed)
        if i > 10 and smoothed > diverge * best:
            diverged = True
            break
    if not lrs:
        raise ValueError("the loss was not finite even at the smallest learning rate")
    return RangeTest(lrs, losses, raw, suggest_lr(lrs, losses), diverged)


def range_test_figure(result: RangeTest) -> Figure:
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    ax.plot(result.lrs, result.raw_losses, color="0.75", linewidth=0.8, label="loss per batch")
    ax.plot(result.lrs, result.losses, color="tab:blue", label="smoothed loss")
    ax.axvline(result.suggestion, color="tab:red", linestyle="--", label=f"suggested max lr {result.suggestion:.3g}")
    ax.set_xscale("log")
    low, high = min(result.losses), max(result.losses[: max(3, len(result.losses) // 5)])
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.5 * (high - low + 1e-9))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return figure
