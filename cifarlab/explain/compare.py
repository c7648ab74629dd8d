"""Several runs side by side: a table, and their test-accuracy curves in one figure."""

from __future__ import annotations

from pathlib import Path

from ..config import read_config_file
from ..errors import CifarlabError
from ..rundir import RunFolder, read_metrics
from . import plots

RECIPE_KEYS = ("augment", "optimizer", "lr", "scheduler", "batch_size")


def recipe(settings: dict) -> str:
    parts = []
    for key in RECIPE_KEYS:
        value = settings.get(key)
        parts.append(f"{key}={'+'.join(value) if isinstance(value, list) else value}")
    for key in ("norm", "dropout", "stages"):
        if key in settings and settings[key] not in (None, 0, "batch", 4):
            parts.append(f"{key}={settings[key]}")
    return " ".join(parts)


def compare_runs(run_dirs: list[str], figure_path: str | Path) -> str:
    """The comparison table as text; the figure of test-accuracy curves is written to `figure_path`."""
    rows, curves = [], []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        if not folder.path.is_dir():
            raise CifarlabError(f"no run folder at {run_dir}")
        summary = folder.read_json("summary.json")
        settings = read_config_file(folder.file("config.yaml"))
        history = read_metrics(folder.file("metrics.csv"))
        name = folder.path.name
        curves.append((name, history))
        rows.append([name, summary.get("model", "?"), recipe(settings), str(summary.get("epochs", "?")),
                     f"{summary['test_accuracy']:.2%}", f"{summary.get('train_seconds', 0):.0f}s"])
    plots.save_png(plots.compare_figure(curves), Path(figure_path))
    header = ["run", "model", "recipe", "epochs", "test acc", "train time"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [header, *rows]]
    return "\n".join(lines) + f"\n(test-accuracy curves: {figure_path})"
