"""The run folder: every file a run leaves behind, each written atomically (temp file, then rename)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import CifarlabError
from .registry import Registry

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                  "epoch_seconds", "train_images_per_sec")


@dataclass(frozen=True)
class RunFile:
    """One file (or folder) of a run folder: what writes it and what it holds. A report figure also carries
    `draw` (ReportInputs -> Figure, or None where there is nothing to show) and the `note` under its heading
    in report.html (text, or a function of the ReportInputs)."""

    made_by: str
    title: str
    marks_a_run: bool = False  # its presence means the folder holds a run (--overwrite needed to replace it)
    draw: Callable | None = None
    note: str | Callable = ""
    beside: Callable | None = None  # HTML shown next to the figure (the per-class table)


# Every file a run writes, declared once: --overwrite removes them all, so no file of an old run survives;
# the report draws the figures in this order, and TensorBoard shows them. The report's own files are
# declared in explain/report.py, beside the code that writes them, when it is imported (training imports it).
RUN_FILES = Registry("run file")
for _name, _title in (("config.yaml", "the resolved settings: `cifarlab train --config` repeats the run"),
                      ("metrics.csv", "loss, accuracy and lr per epoch"),
                      ("summary.json", "the headline numbers and the whole recipe"),
                      ("model.safetensors", "the final model's weights and what rebuilds it"),
                      ("checkpoint.safetensors", "everything --resume needs, at the last epoch or interruption")):
    RUN_FILES.register(_name, RunFile("training", _title, marks_a_run=True))
RUN_FILES.register("model_summary.txt", RunFile("training", "the layer table (torchinfo)"))
RUN_FILES.register("lr_find.png", RunFile("training with --lr auto", "the LR range test"))
RUN_FILES.register("tensorboard", RunFile("training with --tensorboard", "TensorBoard logs"))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Every file cifarlab writes goes through here: written to a temporary file in the same folder, flushed
    to disk, then renamed over `path`, so a crash leaves the old file or the new one, never half of one. On
    any failure (a full disk) the temporary file is removed and the error goes on."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(tmp, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8", "newline": ""})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def default_run_path(model: str, root: str = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{model}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{stamp}-{model}-{suffix}"
    return path


def holds_run(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES if RUN_FILES[name].marks_a_run)


def clear_run(path: Path) -> None:
    """Remove every file a run writes (and nothing else the folder holds)."""
    import shutil

    for name in RUN_FILES:
        if (path / name).is_dir():
            shutil.rmtree(path / name, ignore_errors=True)
        else:
            (path / name).unlink(missing_ok=True)


def format_metric(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | None, model: str, overwrite: bool = False) -> "RunFolder":
        path = Path(out) if out else default_run_path(model)
        if path.exists() and not path.is_dir():
            raise CifarlabError(f"out: {path} exists and is not a folder")
        if path.is_dir() and holds_run(path) and not overwrite:
            raise CifarlabError(f"out: {path} already holds a run; choose another folder, or pass "
                                "--overwrite to replace it (--resume to continue it)")
        try:
            path.mkdir(parents=True, exist_ok=True)
            if overwrite:
                clear_run(path)
            probe = path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise CifarlabError(f"out: cannot write to {path} ({exc.strerror or exc})") from None
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.file(name), text)

    def write_json(self, name: str, obj) -> None:
        self.write_text(name, json.dumps(obj, indent=2) + "\n")

    def write_metrics(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        for row in rows:
            writer.writerow([format_metric(row.get(col)) for col in METRIC_COLUMNS])
        self.write_text("metrics.csv", buffer.getvalue())

    def read_json(self, name: str) -> dict:
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CifarlabError(f"{self.path} has no {name}: is it a cifarlab run folder?") from None
        except (OSError, ValueError) as exc:
            raise CifarlabError(f"{self.file(name)} cannot be read: {exc}") from None


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """metrics.csv as a list of dicts of floats (None where empty)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in rows]
