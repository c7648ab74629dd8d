"""The Python API, the same code path as the command line."""

from __future__ import annotations

import os
from pathlib import Path

from .config import FIELDS, TrainConfig, make_config, read_config_file
from .errors import ConfigError

# Settings that may differ when a run is resumed: none of them changes what the model learns.
RESUMABLE = {"epochs", "progress", "device", "data_dir", "test_every", "report", "misclassified",
             "misclassified_order", "cam", "cam_layer", "cam_true_class", "tensorboard", "out", "overwrite", "tta",
             "tta_shift",
             "compile"}


def resolve_config(config: str | os.PathLike | dict | TrainConfig | None = None, **settings) -> TrainConfig:
    """A checked TrainConfig from a YAML file, a dict or a TrainConfig, with `settings` laid over it."""
    if isinstance(config, TrainConfig):
        return make_config(settings, base=config)
    values = read_config_file(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    values.update(settings)
    return make_config(values)


def train(config=None, *, resume: str | os.PathLike | None = None, **settings):
    """Train a model; returns a RunResult with .summary, .history (a dict per epoch), .run_dir, .model.

    `config` may be the path of a YAML file, a dict or a TrainConfig; keyword settings override it.
    `resume=RUN_DIR` continues that run from its last checkpoint (settings: see RESUMABLE).
    """
    from .training import run_training

    if resume is not None:
        if config is not None:
            raise ConfigError("resume", "takes its settings from the run folder; do not give a config as well")
        return resume_training(resume, **settings)
    cfg = resolve_config(config, **settings)
    if cfg.seeds:
        return train_seeds(cfg)
    return run_training(cfg)


def train_seeds(cfg: TrainConfig):
    """One run per seed in OUT/seed-N; OUT/summary.json holds each test accuracy, their mean and std."""
    import dataclasses
    import statistics

    from .rundir import RunFolder
    from .training import RunResult, run_training

    folder = RunFolder.create(cfg.out, f"{cfg.model}-seeds", overwrite=cfg.overwrite)
    results = []
    for seed in (int(s) for s in cfg.seeds):
        print(f"--- seed {seed} ---", flush=True)
        one = dataclasses.replace(cfg, seed=seed, seeds=[], out=str(folder.path / f"seed-{seed}"))
        results.append(run_training(one))
    accuracies = [r.summary["test_accuracy"] for r in results]
    summary = {"model": cfg.model, "data": cfg.data, "epochs": cfg.epochs, "seeds": [int(s) for s in cfg.seeds],
               "test_accuracy": statistics.fmean(accuracies),
               "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
               "test_accuracies": accuracies, "runs": [str(r.run_dir) for r in results],
               "train_seconds": sum(r.summary["train_seconds"] for r in results)}
    folder.write_json("summary.json", summary)
    print(f"test accuracy over {len(accuracies)} seeds: {summary['test_accuracy']:.2%} "
          f"± {summary['test_accuracy_std']:.2%} (std); {folder.file('summary.json')}", flush=True)
    return RunResult(summary, [r.history for r in results], folder.path, results[-1].model)


def resume_training(run_dir: str | os.PathLike, **settings):
    """Continue a run from its checkpoint. Settings that would change what is learned are refused;
    --epochs may be raised."""
    from .checkpoint import load_checkpoint
    from .models import model_args
    from .training import run_training

    folder = Path(run_dir)
    if not (folder / "config.yaml").is_file():
        raise ConfigError("resume", f"{folder} is not a run folder (no config.yaml)")
    saved = make_config(read_config_file(folder / "config.yaml"))
    cfg = make_config({**saved.to_dict(), **settings, "out": str(folder)})
    for name in FIELDS:
        if name not in RESUMABLE and getattr(cfg, name) != getattr(saved, name):
            raise ConfigError(name, f"cannot change when resuming (the run used {getattr(saved, name)!r}); "
                                    f"what may change: {', '.join(sorted(RESUMABLE - {'out', 'overwrite'}))}")
    checkpoint = load_checkpoint(folder)
    info, state = checkpoint.meta.get("model_info", {}), checkpoint.state
    if info.get("model") != cfg.model or info.get("model_args") != model_args(cfg):
        raise ConfigError("resume", f"the checkpoint in {folder} is of another model ({info.get('model')}, "
                                    f"{info.get('model_args')}) than its config.yaml ({cfg.model})")
    done = state.epoch - 1
    if cfg.epochs < done or (cfg.epochs == done and (folder / "summary.json").is_file()):
        raise ConfigError("epochs", f"the run has already trained {done} epochs; pass --epochs above {done} "
                                    "to train longer")
    return run_training(cfg, checkpoint)


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | None = None, device: str | None = None,
                 tta: bool | None = None, tta_shift: int | None = None) -> dict:
    """Re-measure a saved run's test accuracy from its model.safetensors; `tta`, `tta_shift` override
    the run's test-time augmentation (turning `tta` off also drops the run's shift)."""
    from .config import make_config
    from .saved_run import evaluate_saved, load_run

    run = load_run(Path(run_dir), data_dir=data_dir, device=device)
    run_views = (run.cfg.tta, run.cfg.tta_shift)
    overrides = {name: value for name, value in (("tta", tta), ("tta_shift", tta_shift)) if value is not None}
    if tta is False and tta_shift is None:
        overrides["tta_shift"] = 0
    run.cfg = make_config(overrides, base=run.cfg)
    views = (run.cfg.tta, run.cfg.tta_shift)
    return {**evaluate_saved(run), "tta": run.cfg.tta, "tta_shift": run.cfg.tta_shift,
            "same_views_as_run": views == run_views}
