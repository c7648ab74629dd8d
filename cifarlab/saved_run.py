"""A finished run read back from its folder: its settings, its summary and its model."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from . import __version__
from .config import ENVIRONMENT_KEY, TrainConfig, make_config, read_config_file
from .data import Split
from .data.datasets import load_test_split
from .errors import CifarlabError, ConfigError
from .evaluate import Evaluation, evaluate
from .rundir import RunFolder
from .runtime import EMULATED_BF16, bf16_is_emulated, cuda_has_native_bf16, resolve_device, resolve_precision
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


def written_by(folder: RunFolder) -> str | None:
    """The cifarlab version that wrote the run, as its config.yaml records it (None if it does not)."""
    try:
        values = yaml.safe_load(folder.file("config.yaml").read_text(encoding="utf-8")) or {}
        return str(values.get(ENVIRONMENT_KEY, {}).get("cifarlab")) if isinstance(values, dict) else None
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def run_config(folder: RunFolder, overrides: dict | None = None) -> TrainConfig:
    """The run's settings from its config.yaml, with `overrides` laid over them. A run written by another
    version of cifarlab whose settings this one cannot read is refused in one line naming that version."""
    if not folder.file("config.yaml").is_file():
        raise CifarlabError(f"{folder.path} is not a cifarlab run folder (no config.yaml)")
    try:
        return make_config({**read_config_file(folder.file("config.yaml")), **(overrides or {})})
    except ConfigError as exc:
        version = written_by(folder)
        if exc.name in ("data", "data_dir") or version in (None, __version__):
            raise
        raise CifarlabError(f"{folder.path} was written by cifarlab {version}, whose settings cifarlab "
                            f"{__version__} cannot read ({exc}); open it with cifarlab {version}") from None


def finished_run(path, overrides: dict | None = None,
                 needs: str = "model.safetensors") -> tuple[RunFolder, TrainConfig, dict]:
    """The folder, settings and summary of the finished run at `path`, or one line saying why there is none.
    `needs` is the file that only a finished run has and the caller uses: the model, or just the summary."""
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise CifarlabError(f"no run folder at {path}")
    cfg = run_config(folder, overrides)
    if not folder.file(needs).is_file():
        raise CifarlabError(f"{folder.path} holds no finished run (no {needs}); if it was stopped, "
                            f"finish it with: cifarlab train --resume {folder.path}")
    return folder, cfg, folder.read_json("summary.json")


def read_saved_run(path: Path, data_dir: str | None = None, device: str | None = None,
                   overrides: dict | None = None) -> SavedRun:
    """The finished run in folder `path`; `overrides` replace settings that only shape its report."""
    folder, cfg, summary = finished_run(path, {**(overrides or {}), **({"data_dir": data_dir} if data_dir else {})})
    target = resolve_device(device or cfg.device)
    model, info = load_model(folder.file("model.safetensors"), device=target)
    precision = evaluation_precision(summary, target)
    if bf16_is_emulated(precision, target):
        print(f"cifarlab: note: the run trained in bf16, so it is evaluated in bf16 to give its own numbers; "
              f"{EMULATED_BF16}", file=sys.stderr)
    return SavedRun(folder, cfg, summary, model, info, target, precision)


def evaluation_precision(summary: dict, target: torch.device) -> str:
    """The run's own precision on its own kind of device, so the numbers agree exactly; on another kind of
    device, or on a GPU that only emulates the bf16 the run trained in (a T4 evaluating an A100's run),
    the precision this device trains in."""
    trained = summary.get("precision", "fp32")
    same_kind = target.type == str(summary.get("device", "")).split(":")[0]
    emulated_on_gpu = trained == "bf16" and target.type == "cuda" and not cuda_has_native_bf16()
    return trained if same_kind and not emulated_on_gpu else resolve_precision("auto", target)


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
                    tta=run.cfg.tta, tta_shift=run.cfg.tta_shift, pad_mode=run.cfg.crop_pad_mode)


def evaluate_saved(run: SavedRun) -> dict:
    split, _ = test_split(run)
    result = evaluate_test(run, split)
    correct = int((result.predictions == result.labels).sum())
    return {"test_accuracy": result.accuracy, "test_loss": result.loss, "test_images": result.count,
            "test_correct": correct, "summary_test_accuracy": run.summary.get("test_accuracy"),
            "device": str(run.device), "precision": run.precision}


def report_saved(run: SavedRun) -> None:
    """Write the run's figures and report.html again, from model.safetensors and metrics.csv."""
    from .explain.report import ReportInputs, write_report
    from .rundir import read_metrics

    split, _ = test_split(run)
    history = read_metrics(run.folder.file("metrics.csv")) if run.folder.file("metrics.csv").is_file() else []
    write_report(run.folder, ReportInputs(cfg=run.cfg, info=run.info, model=run.model, test_split=split,
                                          evaluation=evaluate_test(run, split), history=history,
                                          summary=run.summary, device=run.device))
