"""Several runs side by side: a table, and their test-accuracy curves in one figure."""

from __future__ import annotations

import os

import pandas as pd
from matplotlib.figure import Figure

from ..config import TrainConfig
from ..rundir import read_metrics
from ..saved_run import finished_run
from . import plots

RECIPE_KEYS = ("augment", "optimizer", "lr", "scheduler", "batch_size")


def recipe(cfg: TrainConfig) -> str:
    parts = []
    for key in RECIPE_KEYS:
        value = getattr(cfg, key)
        parts.append(f"{key}={'+'.join(value) if isinstance(value, list) else value}")
    for key in ("norm", "dropout", "stages"):
        if getattr(cfg, key) not in (None, 0, "batch", 4):
            parts.append(f"{key}={getattr(cfg, key)}")
    return " ".join(parts)


def compare_runs(run_dirs: list[str | os.PathLike]) -> tuple[pd.DataFrame, Figure]:
    """A row per run (test accuracy of the final model on the whole test split, validation accuracy
    where the run held a split out, train time) and a figure of the runs' test-accuracy curves."""
    rows, curves = [], []
    for run_dir in run_dirs:
        folder, cfg, summary = finished_run(run_dir, needs="summary.json")  # the weights are not needed
        curves.append((folder.path.name, read_metrics(folder.file("metrics.csv"))))
        rows.append({"run": folder.path.name, "model": summary.get("model"), "recipe": recipe(cfg),
                     "epochs": summary.get("epochs"), "test_accuracy": summary["test_accuracy"],
                     "val_accuracy": summary.get("val_accuracy"), "train_seconds": summary.get("train_seconds")})
    return pd.DataFrame(rows), plots.compare_figure(curves)


def table_text(table: pd.DataFrame) -> str:
    """The comparison as aligned text for the terminal."""
    shown = table.assign(
        test_accuracy=table["test_accuracy"].map("{:.2%}".format),
        val_accuracy=table["val_accuracy"].map(lambda v: "" if pd.isna(v) else f"{v:.2%}"),
        train_seconds=table["train_seconds"].map(lambda v: "" if pd.isna(v) else f"{v:.0f}s"))
    return shown.rename(columns={"test_accuracy": "test acc", "val_accuracy": "val acc",
                                 "train_seconds": "train time"}).to_string(index=False)
