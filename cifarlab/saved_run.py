"""A finished run read back from its folder: its settings, its summary and its model."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig, make_config, read_config_file
from .data import Split
from .data.datasets import load_test_split
from .errors import CifarlabError
from .evaluate import Evaluation, evaluate
from .rundir import RunFolder
from .runtime import EMULATED_BF16, bf16_is_emulated, resolve_device, resolve_precision
from .weights import load_model


@dataclass
class SavedRun:
    folder: RunFolder
    cfg: TrainConfig
    summary: dict
    model: nn.Module
    info: dict  # model.safetensors metadata: model, classes, mean, std, ...
    device: torch.device
    precision: str


def load_run(path: Path, data_dir: str | None = None, device: str | None = None,
             overrides: dict | None = None) -> SavedRun:
    """The run in folder `path`; `overrides` replace settings that only shape its report."""
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise CifarlabError(f"no run folder at {path}")
    values = read_config_file(folder.file("config.yaml"))
    values.update(overrides or {})
    if data_dir:
        values["data_dir"] = data_dir
    cfg = make_config(values)
    summary = folder.read_json("summary.json")
    target = resolve_device(device or cfg.device)
    model, info = load_model(folder.file("model.safetensors"), device=target)
    # On the run's own kind of device, the run's precision, so the numbers agree exactly.
    same_kind = target.type == str(summary.get("device", "")).split(":")[0]
    precision = summary.get("precision", "fp32") if same_kind else resolve_precision("auto", target)
    if bf16_is_emulated(precision, target):
        print(f"cifarlab: note: the run trained in bf16, so it is evaluated in bf16 to give its own numbers; "
              f"{EMULATED_BF16}", file=sys.stderr)
    return SavedRun(folder, cfg, summary, model, info, target, precision)


def test_split(run: SavedRun) -> tuple[Split, list[str]]:
    """The run's test split, read again with the run's own data settings."""
    cfg = run.cfg
    split, classes = load_test_split(cfg.data, cfg.data_dir, limit_test=cfg.limit_test, seed=cfg.seed,
                                     progress=cfg.progress)
    if classes != run.info["classes"]:
        raise CifarlabError(f"the data's classes ({', '.join(classes)}) differ from the model's "
                            f"({', '.join(run.info['classes'])})")
    return split, classes


def evaluate_test(run: SavedRun, split: Split) -> Evaluation:
    return evaluate(run.model, split, mean=run.info["mean"], std=run.info["std"], device=run.device,
                    precision=run.precision, batch_size=run.cfg.eval_batch_size,
                    channels_last=bool(run.info.get("channels_last")), label_smoothing=run.cfg.label_smoothing,
                    tta=run.cfg.tta, tta_shift=run.cfg.tta_shift)


def evaluate_saved(run: SavedRun) -> dict:
    split, _ = test_split(run)
    result = evaluate_test(run, split)
    correct = int((result.predictions == result.labels).sum())
    return {"test_accuracy": result.accuracy, "test_loss": result.loss, "test_images": result.count,
            "test_correct": correct, "summary_test_accuracy": run.summary.get("test_accuracy"),
            "device": str(run.device), "precision": run.precision}


def report_saved(run: SavedRun) -> None:
    """Write the run's figures and report.html again, from model.safetensors and metrics.csv."""
    from .explain.report import write_report
    from .rundir import read_metrics

    split, _ = test_split(run)
    history = read_metrics(run.folder.file("metrics.csv")) if run.folder.file("metrics.csv").is_file() else []
    write_report(run.folder, model=run.model, info=run.info, cfg=run.cfg, test_split=split,
                 evaluation=evaluate_test(run, split), history=history, summary=run.summary, device=run.device)
