"""The Python API, the same code path as the command line."""

from __future__ import annotations

import os
from pathlib import Path

from .config import TrainConfig, make_config, read_config_file


def resolve_config(config: str | os.PathLike | dict | TrainConfig | None = None, **settings) -> TrainConfig:
    """A checked TrainConfig from a YAML file, a dict or a TrainConfig, with `settings` laid over it."""
    if isinstance(config, TrainConfig):
        return make_config(settings, base=config)
    values = read_config_file(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    values.update(settings)
    return make_config(values)


def train(config=None, **settings):
    """Train a model; returns a RunResult with .summary, .history (a dict per epoch), .run_dir, .model.

    `config` may be the path of a YAML file, a dict or a TrainConfig; keyword settings override it.
    """
    from .train import run_training

    return run_training(resolve_config(config, **settings))


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | None = None, device: str | None = None) -> dict:
    """Re-measure a saved run's test accuracy from its model.safetensors."""
    from .saved_run import evaluate_saved, load_run

    run = load_run(Path(run_dir), data_dir=data_dir, device=device)
    return evaluate_saved(run)
