"""The Python API: what the command line does, as functions that return objects for a notebook.

    import cifarlab
    run = cifarlab.train(epochs=8, augment=["crop", "flip", "cutout"])   # help(cifarlab.train): every setting
    run                                        # in Jupyter: a card with the test accuracy and the curves
    run.plot_misclassified(); run.plot_gradcam()
    run = cifarlab.load_run("runs/20260101-120000-resnet18")          # any finished run folder
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import FIELDS, LR_FIND_SETTINGS, TrainConfig, budget_note, default_of, make_config, read_config_file
from .errors import ConfigError
from .run import Run

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

# Settings that may differ when a run is resumed: none of them changes what the model learns.
RESUMABLE = {"epochs", "progress", "device", "data_dir", "test_every", "report", "misclassified",
             "misclassified_order", "cam", "cam_layer", "cam_true_class", "tensorboard", "out", "overwrite", "tta",
             "tta_shift", "compile"}


def resolve_config(config: str | os.PathLike | dict | TrainConfig | None = None, **settings) -> TrainConfig:
    """A checked TrainConfig from a YAML file, a dict or a TrainConfig, with `settings` laid over it."""
    if isinstance(config, TrainConfig):
        return make_config(settings, base=config)
    values = read_config_file(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    values.update(settings)
    return make_config(values)


def start_training(config=None, resume: str | os.PathLike | None = None, settings: dict | None = None, *,
                   echo_summary: bool = True):
    """What `cifarlab train` and `cifarlab.train` both do: go on with a run (`resume`), or train one run,
    or one per seed. Returns the RunResult, or a list of them for seeds."""
    from .training import run_training

    settings = settings or {}
    if resume is not None:
        if config is not None:
            raise ConfigError("resume", "takes its settings from the run folder; do not give a config as well")
        return resume_training(resume, echo_summary=echo_summary, **settings)
    cfg = resolve_config(config, **settings)
    if cfg.seeds:
        return train_seeds(cfg, echo_summary=echo_summary)
    return run_training(cfg, echo_summary=echo_summary)


def train(config=None, *, resume: str | os.PathLike | None = None, **settings) -> Run | list[Run] | None:
    """Train a model and return its Run (a list of Runs with `seeds`).

    `config`: the path of a YAML file, a dict or a TrainConfig; keyword settings override it.
    `resume=RUN_DIR` goes on with that run from its last checkpoint (`epochs` may be raised; settings that
    change what is learned are refused). The model's layer table goes to model_summary.txt
    (`run.model_summary()`) rather than to the notebook. Under torchrun, processes other than rank 0
    return None.
    """
    from . import distributed

    results = start_training(config, resume, settings, echo_summary=False)
    if isinstance(results, list):
        return [Run(result.run_dir) for result in results]
    return Run(results.run_dir) if distributed.from_environment().main else None


def load_run(run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str | None = None) -> Run:
    """The Run of a finished run folder, rebuilt from its model.safetensors. `data_dir`: where the data
    is now, if not where the run found it; `device`: where to evaluate (default: the run's own)."""
    return Run(run_dir, data_dir=data_dir, device=device)


def train_seeds(cfg: TrainConfig, echo_summary: bool = True) -> list:
    """One run per seed in OUT/seed-N; OUT/summary.json holds each test accuracy, their mean and std.
    Returns the runs' RunResults."""
    import dataclasses
    import statistics

    from .rundir import RunFolder
    from .training import run_training

    folder = RunFolder.create(cfg.out, f"{cfg.model}-seeds", overwrite=cfg.overwrite)
    results = []
    for seed in (int(s) for s in cfg.seeds):
        print(f"--- seed {seed} ---", flush=True)
        one = dataclasses.replace(cfg, seed=seed, seeds=[], out=str(folder.path / f"seed-{seed}"))
        results.append(run_training(one, echo_summary=echo_summary))
    accuracies = [r.summary["test_accuracy"] for r in results]
    summary = {"model": cfg.model, "data": cfg.data, "epochs": cfg.epochs, "seeds": [int(s) for s in cfg.seeds],
               "test_accuracy": statistics.fmean(accuracies),
               "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
               "test_accuracies": accuracies, "runs": [str(r.run_dir) for r in results],
               "train_seconds": sum(r.summary["train_seconds"] for r in results),
               "config": {name: value for name, value in cfg.to_dict().items() if name not in ("out", "overwrite", "seed")}}
    folder.write_json("summary.json", summary)
    print(f"test accuracy over {len(accuracies)} seeds: {summary['test_accuracy']:.2%} "
          f"± {summary['test_accuracy_std']:.2%} (std); {folder.file('summary.json')}", flush=True)
    return results


def resume_training(run_dir: str | os.PathLike, echo_summary: bool = True, **settings):
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
    return run_training(cfg, checkpoint, echo_summary=echo_summary)


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | None = None, device: str | None = None,
                 tta: bool | None = None, tta_shift: int | None = None) -> dict:
    """Re-measure a saved run's test accuracy from its model.safetensors (see Run.evaluate)."""
    return load_run(run_dir, data_dir=data_dir, device=device).evaluate(tta=tta, tta_shift=tta_shift)


@dataclass
class Comparison:
    """Runs side by side: `table` (a DataFrame, a row per run) and `figure` (their test curves)."""

    table: pandas.DataFrame
    figure: Figure

    def __iter__(self):  # table, figure = cifarlab.compare(...)
        return iter((self.table, self.figure))

    def _repr_html_(self) -> str:
        import base64

        from .explain.plots import png_bytes

        png = base64.b64encode(png_bytes(self.figure, dpi=70)).decode("ascii")
        return f"{self.table.to_html(index=False)}<img alt='test accuracy per epoch' src='data:image/png;base64,{png}'>"


def compare(runs) -> Comparison:
    """Several finished runs (Run objects or run folders) side by side: a table of their recipes and
    test accuracies, and a figure of their test-accuracy curves."""
    from .explain.compare import compare_runs

    folders = [run.run_dir if isinstance(run, Run) else run for run in runs]
    return Comparison(*compare_runs(folders))


def lr_find(config=None, **settings):
    """The learning-rate range test with these settings' model, data, augmentation and optimizer (a
    throwaway copy of the model; `lr_find_steps` batches). Returns the test: `.suggestion` (a peak lr
    for onecycle), `.lrs`, `.losses`, and `.plot()`, a Figure."""
    from .config import NOT_IN_LR_FIND
    from .training import find_lr, prepare

    for name in settings:
        if name in NOT_IN_LR_FIND:
            raise ConfigError(name, "is not used by the LR range test (it sweeps the lr itself over lr_find_steps "
                                    "batches of a throwaway copy)")
    cfg = resolve_config(config, **settings)
    device, precision, splits = prepare(cfg)
    return find_lr(cfg, splits, device, precision)


def settings_doc(names) -> str:
    """The settings `names` with their one-line help and default, for the docstrings of train and lr_find."""
    lines = []
    for name in names:
        f = FIELDS[name]
        choices = f.metadata.get("choices")
        allowed = f" ({'|'.join(map(str, choices))})" if choices else ""
        budget = f" ({budget_note(name)})" if budget_note(name) else ""
        lines.append(f"    {name} = {default_of(name)!r}{budget}: {f.metadata['help']}{allowed}")
    return "\n".join(lines)


def show_settings(function, names=tuple(FIELDS)):
    """Give `function(config=None, *, ..., **settings)` a signature that names the settings `names` with
    their defaults, so help(), Jupyter's Shift-Tab and Tab completion list them (generated from TrainConfig)."""
    signature = inspect.signature(function)
    fixed = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    settings = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default_of(name),
                                  annotation=FIELDS[name].type) for name in names]
    function.__signature__ = signature.replace(parameters=fixed + settings)
    function.__doc__ = (function.__doc__ or "").rstrip() + "\n\n    Settings (the same names as YAML keys, and as " \
        "--flags with dashes on the command line):\n" + settings_doc(names) + "\n"
    return function


show_settings(train)
show_settings(lr_find, LR_FIND_SETTINGS)
