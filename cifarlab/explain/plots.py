"""The report's figures, drawn with matplotlib's object API (no global pyplot state) and saved as PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib.figure
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..rundir import write_atomic

SPLIT_STYLE = {"train": ("tab:blue", "-"), "val": ("tab:orange", "--"), "test": ("tab:green", "-")}


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that Jupyter shows inline as the value of a cell, even where pyplot (and with
    it the inline backend's display hook) was never imported; built with the object API, so it never
    joins pyplot's global figures and is never shown twice."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_png(figure: Figure, path: Path, dpi: int = 110) -> None:
    write_atomic(Path(path), png_bytes(figure, dpi))


def curves_title(summary: dict) -> str:
    return f"{summary.get('model')} on {summary.get('data')}"


def _series(history: list[dict], key: str):
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def curves_figure(history: list[dict], title: str = "") -> Figure:
    """Loss, accuracy and learning rate per epoch; each split named in the legend."""
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
    for split, (color, style) in SPLIT_STYLE.items():
        for ax, key, scale in ((loss_ax, "loss", 1), (acc_ax, "acc", 100)):
            epochs, values = _series(history, f"{split}_{key}")
            if values:
                ax.plot(epochs, [v * scale for v in values], style, color=color, marker="o", markersize=3,
                        label=split)
    epochs, lrs = _series(history, "lr")
    lr_ax.plot(epochs, lrs, color="tab:purple", marker="o", markersize=3, label="lr at epoch start")
    for ax, label in ((loss_ax, "loss"), (acc_ax, "accuracy (%)"), (lr_ax, "learning rate")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    return figure


def per_class_figure(rows: list[dict], classes: list[str], overall: float) -> Figure:
    figure = Figure(figsize=(max(6, 0.55 * len(classes) + 2), 4), layout="constrained")
    ax = figure.subplots()
    accuracies = [100 * r["accuracy"] for r in rows]
    bars = ax.bar(range(len(classes)), accuracies, color="tab:blue")
    ax.axhline(100 * overall, color="tab:red", linestyle="--", label=f"overall {overall:.2%}")
    if len(classes) <= 20:  # on white, so the overall line never runs through a number
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2, bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 5 else 0, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 118)  # room above the bars for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("test accuracy per class")
    ax.legend(loc="upper center")
    return figure


def precision_recall_figure(precision: np.ndarray, recall: np.ndarray, classes: list[str]) -> Figure:
    figure = Figure(figsize=(max(6, 0.7 * len(classes) + 2), 4), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(classes))
    for offset, values, name, colour in ((-0.2, precision, "precision", "tab:orange"),
                                         (0.2, recall, "recall", "tab:blue")):
        ax.bar(positions + offset, 100 * np.asarray(values), width=0.4, label=name, color=colour)
    ax.set_xticks(positions, classes, rotation=45 if len(classes) > 5 else 0, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 120)  # room above the bars for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("test precision and recall per class")
    ax.legend(loc="upper center", ncol=2)
    return figure


def confusion_figure(confusion: np.ndarray, classes: list[str]) -> Figure:
    n = len(classes)
    size = max(6, 0.55 * n + 2)
    figure = Figure(figsize=(size, size * 0.85), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8, label="test images")
    if n <= 20:
        threshold = confusion.max() / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if confusion[i, j] > threshold else "black")
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"test confusion matrix ({int(confusion.sum())} images)")
    return figure


def image_grid(panels: list[np.ndarray], titles: list[str], columns: int, title: str = "",
               panel_inches: float = 1.9) -> Figure:
    """Pictures (H, W, 3) uint8 in a grid, each with its title, drawn pixel-sharp."""
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(figsize=(columns * panel_inches, rows * (panel_inches + 0.45)), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).flatten()
    for ax in axes:
        ax.axis("off")
    for ax, panel, text in zip(axes, panels, titles):
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(text, fontsize=8.5)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


def to_hwc(image_uint8_chw) -> np.ndarray:
    return np.asarray(image_uint8_chw).transpose(1, 2, 0)


def compare_figure(runs: list[tuple[str, list[dict]]]) -> Figure:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    for name, history in runs:
        epochs, values = _series(history, "test_acc")
        ax.plot(epochs, [100 * v for v in values], marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure
