"""Every training setting, declared once.

A setting is one field of `TrainConfig`. Its name is the YAML key and the keyword of the Python API,
and `--name-with-dashes` on the command line; its metadata gives the help text and what is allowed.
The CLI parser, the YAML loader and `cifarlab.train(**settings)` all go through `make_config`,
so a value is checked the same way whichever door it comes in by.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .augment import AUGMENTATIONS, CROP_PAD_MODES, CUTOUT_PLACEMENTS
from .errors import ConfigError
from .explain.gradcam import CAM_METHODS
from .models import MODELS, NORMS, STAGED_MODELS
from .optim import OPTIMIZERS, SCHEDULERS, momentum_swing

# The choice lists below belong to one setting each; those of models, norms, augmentations, optimizers,
# schedulers and CAM methods are read from their registries, beside the code of each choice.
FLIP_MODES = ("random", "alternate")
FIRST_CONV_INITS = ("random", "whiten")
ONECYCLE_ANNEALS = ("linear", "cos")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DATASETS = ("cifar10", "cifar100")
MISCLASSIFIED_ORDERS = ("index", "confidence")
LOSSES = ("ce", "nll")
# The settings that shape only the report: `cifarlab report RUN` and Run.report() take these alone.
REPORT_SETTINGS = ("misclassified", "misclassified_order", "cam", "cam_layer", "cam_true_class")


def _setting(default: Any, help: str, *, choices: tuple | None = None,
             check: Callable[[Any], str | None] | None = None, group: str = "training", words: tuple = (),
             whole_numbers: bool = False):
    """A dataclass field carrying its help text and its rule (`check` returns a complaint or None).
    `words` are strings a numeric setting also accepts (lr: auto); `whole_numbers`: a list of ints."""
    meta = {"help": help, "choices": choices, "check": check, "group": group, "words": words,
            "whole_numbers": whole_numbers}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def _at_least(low):
    return lambda value: None if value >= low else f"must be >= {low}"


def _between(low, high):
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def _optional_positive(value) -> str | None:
    return None if value is None or value > 0 else "must be > 0 (or empty for all)"


def _default_data_dir() -> str:
    return os.environ.get("CIFARLAB_DATA", "./data")


@dataclass
class TrainConfig:
    # data
    data: str = _setting("cifar10", "cifar10, cifar100, or the path of an image folder with "
                         "train/<class>/* and test/<class>/*", group="data")
    data_dir: str = _setting(None, "where cifar-10-batches-py / cifar-100-python live or are downloaded "
                             "to (default ./data, or $CIFARLAB_DATA)", group="data")
    limit_train: int | None = _setting(None, "train on a stratified, seeded subset of N images",
                                       check=_optional_positive, group="data")
    limit_test: int | None = _setting(None, "test on a stratified, seeded subset of N images",
                                      check=_optional_positive, group="data")
    val_split: int = _setting(0, "hold out N training images (stratified, seeded) for validation",
                              check=_at_least(0), group="data")
    # augmentation
    augment: list = _setting(["crop", "flip"], "training augmentations, comma separated, or 'none'; they run "
                             f"in this order: {AUGMENTATIONS.described()}", choices=AUGMENTATIONS.names(),
                             group="augmentation")
    crop_size: int = _setting(32, "size of the random crop", check=_at_least(1), group="augmentation")
    crop_padding: int = _setting(1, "padding on each side before the random crop (see crop_pad_mode; the assignment: 4)",
                                 check=_at_least(0), group="augmentation")
    crop_pad_mode: str = _setting("zeros", "what the crop's padding holds: zeros (black), or reflect (the image "
                                  "mirrored at its border)", choices=CROP_PAD_MODES, group="augmentation")
    flip_mode: str = _setting("random", "flip: random (a coin toss per image and epoch) or alternate (a coin "
                              "toss per image in the first epoch, then the opposite of the epoch before: every "
                              "image is seen both ways in any two epochs running)", choices=FLIP_MODES,
                              group="augmentation")
    cutout_size: int = _setting(16, "side of the CutOut square", check=_at_least(1), group="augmentation")
    cutout_placement: str = _setting("center", "where the CutOut square falls: center (its centre anywhere, "
                                     "clipped at the border) or inside (wholly inside the image)",
                                     choices=CUTOUT_PLACEMENTS, group="augmentation")
    rotate_degrees: float = _setting(5.0, "rotation drawn from [-d, d] degrees", check=_between(0, 180),
                                     group="augmentation")
    jitter_strength: float = _setting(0.2, "jitter: brightness, contrast and saturation factors drawn from "
                                      "[1 - s, 1 + s]", check=_between(0, 1), group="augmentation")
    # model
    model: str = _setting("resnet18", f"model: {MODELS.described()}", choices=MODELS.names(), group="model")
    first_conv_init: str = _setting("random", "first convolution's filters: random (the model's own "
                                    "initialisation) or whiten (the training patches' whitening directions and "
                                    "their negatives; needs at least 2 x 3 x k x k filters)",
                                    choices=FIRST_CONV_INITS, group="model")
    norm: str = _setting("batch", f"normalisation layer: {NORMS.described()}", choices=NORMS.names(),
                         group="model")
    norm_groups: int = _setting(8, "groups for --norm group (must divide every layer's channels)",
                                check=_at_least(1), group="model")
    ghost_splits: int = _setting(2, "virtual sub-batches for --norm ghost", check=_at_least(1), group="model")
    dropout: float = _setting(0.0, "dropout after each normalisation inside a block (0 = none)",
                              check=_between(0, 0.9), group="model")
    stages: int = _setting(4, "ResNet stages to keep: 4, or 3 (64/128/256 channels, 8x8 last map)",
                           choices=(3, 4), group="model")
    zero_init_residual: bool = _setting(False, "ResNets: start each block's last normalisation scale at "
                                        "zero, so every residual block begins as the identity (Goyal et al. "
                                        "2017; timm's zero_init_last)", group="model")
    loss: str = _setting("ce", "ce (cross-entropy), or nll on log-softmax outputs (the library adds the "
                         "log-softmax, so the loss is never negative)", choices=LOSSES, group="model")
    # optimisation
    optimizer: str = _setting("muon", f"optimizer: {OPTIMIZERS.described()}", choices=OPTIMIZERS.names())
    lr: float = _setting(0.1, "learning rate (the peak for onecycle); auto: run the LR range test first "
                         "(onecycle only)", check=_positive, words=("auto",))
    lr_find_steps: int = _setting(200, "batches of the LR range test (lr-find, --lr auto)", check=_at_least(10))
    momentum: float = _setting(0.9, "SGD momentum", check=_between(0, 1))
    nesterov: bool = _setting(True, "Nesterov momentum for SGD (and Muon)")
    muon_lr_scale: float = _setting(0.2, "with --optimizer muon: the lr of the convolution filters is --lr times "
                                    "this (each step turns a filter by about that many radians)", check=_positive)
    muon_momentum: float = _setting(0.85, "with --optimizer muon: the momentum of the convolution filters (the "
                                    "other parameters keep --momentum)", check=_between(0, 0.99))
    weight_decay: float = _setting(5e-4, "weight decay of convolution and linear weights (with --optimizer muon "
                                   "of the linear weights only: the filters keep a fixed norm instead)",
                                   check=_at_least(0))
    norm_weight_decay: float = _setting(0.0, "weight decay of normalisation scales and shifts and of biases (a "
                                        "plain torch optimizer decays them as much as the weights)",
                                        check=_at_least(0))
    norm_lr_scale: float = _setting(32.0, "the lr of normalisation scales and shifts and of biases (the "
                                    "parameters of --norm-weight-decay) is --lr times this", check=_positive)
    label_smoothing: float = _setting(0.3, "label smoothing of the cross-entropy", check=_between(0, 0.99))
    ema_decay: float = _setting(0.0, "keep an exponential moving average of the weights (and BatchNorm "
                                "statistics) over about 1 / (1 - decay) steps, e.g. 0.99, and evaluate, save and "
                                "explain it instead of the last weights; 0: off",
                                check=lambda v: None if 0 <= v < 1 else "must be >= 0 and < 1")
    lookahead_every: int = _setting(0, "Lookahead: every N steps pull the weights back part of the way to a slow "
                                    "copy that follows them; the share pulled back grows over training (to 0.95^N "
                                    "at the end, airbench's schedule) and the finished model is the slow copy; 0: off",
                                    check=_at_least(0))
    scheduler: str = _setting("onecycle", f"learning-rate schedule: {SCHEDULERS.described()}",
                              choices=SCHEDULERS.names())
    onecycle_pct_start: float = _setting(0.25, "onecycle: share of steps spent warming up",
                                         check=_between(0.01, 0.99))
    onecycle_div_factor: float = _setting(25.0, "onecycle: the lr starts at --lr divided by this (torch's "
                                          "div_factor)", check=_at_least(1))
    onecycle_anneal: str = _setting("linear", "onecycle: shape of the lr's rise and fall, linear (a triangle, as in "
                                    "fast CIFAR-10 schedules) or cos (half cosines, torch's default)",
                                    choices=ONECYCLE_ANNEALS)
    onecycle_momentum_swing: float = _setting(0.05, "onecycle with sgd: the momentum starts at --momentum plus "
                                              "this, falls to --momentum minus this at the peak lr and climbs "
                                              "back (Smith's 1cycle); 0: --momentum throughout",
                                              check=_between(0, 0.5))
    step_size: int = _setting(8, "step: epochs between lr drops", check=_at_least(1))
    gamma: float = _setting(0.5, "step/plateau: factor the lr is multiplied by", check=_between(1e-6, 1))
    plateau_patience: int = _setting(2, "plateau: epochs without improvement before a drop",
                                     check=_at_least(0))
    epochs: int = _setting(8, "number of epochs", check=_at_least(1))
    batch_size: int = _setting(128, "training batch size", check=_at_least(1))
    eval_batch_size: int = _setting(1000, "batch size for evaluation", check=_at_least(1))
    seed: int = _setting(0, "random seed (data subset, shuffles, augmentation, weights)", check=_at_least(0))
    seeds: list = _setting([], "train once per seed (e.g. 0,1,2) into OUT/seed-N and report the mean and std "
                           "of the test accuracy", check=lambda v: None if all(isinstance(x, int) for x in v)
                           else "must be whole numbers >= 0, comma separated", whole_numbers=True)
    tta: bool = _setting(False, "evaluate with flip test-time augmentation (average of the image and its "
                         "mirror)")
    tta_shift: int = _setting(0, "with --tta, also average the image moved N pixels down-right and up-left "
                              "(the uncovered border filled as --crop-pad-mode fills the training crop's), each mirrored "
                              "too: 6 views; 0: flip only", check=_between(0, 8))
    # machine
    device: str = _setting("auto", "where to train", choices=DEVICES, group="machine")
    precision: str = _setting("auto", "auto: bf16 where the device runs it fast (on a CPU: measured "
                              "when a run starts), fp16 on other CUDA devices, else fp32",
                              choices=PRECISIONS, group="machine")
    channels_last: bool = _setting(True, "channels_last memory format", group="machine")
    compile: bool = _setting(False, "torch.compile the model for training (needs a C++ compiler on the CPU, "
                             "Triton on CUDA)", group="machine")
    sync_bn: bool = _setting(False, "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm; "
                             "CUDA only)", group="machine")
    # output
    out: str | None = _setting(None, "run folder (default runs/<timestamp>-<model>)", group="output")
    overwrite: bool = _setting(False, "replace a run already in the output folder", group="output")
    test_every: int = _setting(1, "measure test loss/accuracy for the curves every N epochs (0: only "
                               "after the last); never used to choose anything", check=_at_least(0),
                               group="output")
    progress: bool = _setting(True, "show a progress bar", group="output")

    # report
    report: bool = _setting(True, "write the figures and report.html when training ends", group="report")
    misclassified: int = _setting(20, "how many misclassified test images to show (and explain)",
                                  check=_between(0, 100), group="report")
    misclassified_order: str = _setting("index", "which wrong images: the first by test index, or the most "
                                        "confident mistakes", choices=MISCLASSIFIED_ORDERS, group="report")
    cam: str = _setting("gradcam", f"class activation map method: {CAM_METHODS.described()}",
                        choices=CAM_METHODS.names(), group="report")
    cam_layer: str | None = _setting(None, "layer Grad-CAM reads (default: the model's last stage, layer4 for "
                                     "ResNets, a 4x4 map on 32x32 inputs; layer3 gives 8x8)", group="report")
    cam_true_class: bool = _setting(False, "also show Grad-CAM for the true class, beside the predicted",
                                    group="report")
    tensorboard: bool = _setting(False, "also log metrics and images for TensorBoard (run folder /tensorboard)",
                                 group="report")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# The LR range test (`cifarlab lr-find`, cifarlab.lr_find) trains a throwaway copy for lr_find_steps batches at
# an lr it sweeps itself: the schedule, the length of training, evaluation, the output and the report are not its.
NOT_IN_LR_FIND = {"lr", "scheduler", "onecycle_pct_start", "onecycle_div_factor", "onecycle_anneal",
                  "onecycle_momentum_swing", "step_size", "gamma", "plateau_patience", "epochs", "eval_batch_size",
                  "seeds", "tta", "tta_shift", "ema_decay", "lookahead_every", "compile", "sync_bn", "out", "overwrite",
                  "test_every", "tensorboard", *REPORT_SETTINGS, "report"}
LR_FIND_SETTINGS = tuple(name for name in FIELDS if name not in NOT_IN_LR_FIND)
# Settings that never change what a model learns (how a run is shown, measured and stored, and the machine's
# numerics), and lr_find_steps, which matters only with --lr auto. Every other setting is part of the recipe:
# an assignment's config in configs/ states each of them rather than leave it to a default that may move.
NOT_RECIPE = {"data_dir", "limit_test", "progress", "device", "precision", "channels_last", "compile", "sync_bn",
              "out", "overwrite", "test_every", "report", *REPORT_SETTINGS, "tensorboard", "tta", "tta_shift",
              "eval_batch_size", "seeds", "lr_find_steps"}
RECIPE_SETTINGS = tuple(name for name in FIELDS if name not in NOT_RECIPE)


# The recipe for longer budgets. The defaults above were chosen at 4 and 8 epochs, where the model never fits
# its training images; given 16 epochs it does (99% of its augmented training batches right in the last epoch),
# and stronger augmentation and less label smoothing serve it better, chosen on the validation split at 16
# epochs (benchmarks/RECIPE.md, "Longer budgets"). From LONG_BUDGET_EPOCHS epochs on, these replace the defaults
# of the settings they name; a value the user gives (flag, YAML key or keyword) always holds.
LONG_BUDGET_EPOCHS = 16
LONG_BUDGET_DEFAULTS = {"augment": ["crop", "flip", "cutout"], "crop_padding": 4, "crop_pad_mode": "reflect",
                        "cutout_size": 12, "cutout_placement": "inside", "label_smoothing": 0.2}


def budget_defaults(epochs: int) -> dict:
    """The defaults a run of `epochs` epochs starts from: TrainConfig's, with those of the longer-budget
    recipe laid over them from LONG_BUDGET_EPOCHS epochs on."""
    defaults = {name: default_of(name) for name in FIELDS}
    if isinstance(epochs, int) and epochs >= LONG_BUDGET_EPOCHS:
        defaults.update(copy.deepcopy(LONG_BUDGET_DEFAULTS))
    return defaults


def value_text(value) -> str:
    """A value as the command line takes it: lists comma separated."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def budget_note(name: str) -> str:
    """"4 from 16 epochs on" for a setting whose default the budget moves, else ""."""
    if name not in LONG_BUDGET_DEFAULTS:
        return ""
    return f"{value_text(LONG_BUDGET_DEFAULTS[name])} from {LONG_BUDGET_EPOCHS} epochs on"


def default_text(name: str) -> str:
    """A setting's default as --help shows it: "1", or "1; 4 from 16 epochs on" where the budget moves it."""
    note = budget_note(name)
    return value_text(default_of(name)) + (f"; {note}" if note else "")


def field_kind(f: dataclasses.Field) -> str:
    """'bool', 'int', 'float', 'list' or 'str', read from the annotation."""
    annotation = str(f.type)
    for kind in ("bool", "int", "float", "list"):
        if annotation.startswith(kind):
            return kind
    return "str"


def _coerce(name: str, value: Any) -> Any:
    """Turn a value from YAML, the CLI or Python into the setting's type, or say why it can't be."""
    f = FIELDS[name]
    kind = field_kind(f)
    if isinstance(value, str) and value.strip().lower() in f.metadata.get("words", ()):
        return value.strip().lower()
    optional = "None" in str(f.type) or f.default is None
    empty_words = ("", "null", "none") if kind in ("int", "float") else ("", "null")
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in empty_words):
        if optional:
            return None
        raise ConfigError(name, "needs a value")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(name, f"must be true or false, not {value!r}")
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(name, f"must be a whole number, not {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be a whole number, not {value!r}") from None
    if kind == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be a number, not {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ConfigError(name, f"must be a finite number, not {value!r}")
        return number
    if kind == "list":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(name, f"must be a list, not {value!r}")
        items = [str(item).strip().lower() for item in items if str(item).strip()]
        if f.metadata.get("whole_numbers"):
            return [int(item) if item.isdigit() else item for item in items]
        return [] if items == ["none"] else items
    if not isinstance(value, str):
        raise ConfigError(name, f"must be text, not {value!r}")
    return value


def _check(name: str, value: Any) -> None:
    meta = FIELDS[name].metadata
    choices = meta.get("choices")
    if choices:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v not in choices:
                raise ConfigError(name, f"{v!r} is not one of: {', '.join(map(str, choices))}")
    rule = meta.get("check")
    if rule and value is not None and value not in meta.get("words", ()):
        complaint = rule(value)
        if complaint:
            raise ConfigError(name, f"{complaint}, got {value!r}")


def _check_together(cfg: TrainConfig) -> None:
    """Rules that involve more than one setting."""
    if cfg.stages != 4 and cfg.model not in STAGED_MODELS:
        raise ConfigError("stages", f"applies to {', '.join(STAGED_MODELS)}, not {cfg.model}")
    if cfg.lr == "auto" and cfg.scheduler != "onecycle":
        raise ConfigError("lr", "auto (the LR range test) chooses the peak of --scheduler onecycle; "
                                f"with {cfg.scheduler} give a number")
    swing = momentum_swing(cfg)
    if cfg.scheduler == "onecycle" and not (0 <= cfg.momentum - swing and cfg.momentum + swing < 1):
        raise ConfigError("onecycle_momentum_swing", f"momentum {cfg.momentum} +/- {swing} must stay within "
                                                     "[0, 1); lower it, or 0 for a constant momentum")
    if cfg.tta_shift and not cfg.tta:
        raise ConfigError("tta_shift", "adds views to --tta's; give --tta too (or --tta-shift 0)")
    if len(set(cfg.augment)) != len(cfg.augment):
        raise ConfigError("augment", f"lists an augmentation twice: {','.join(cfg.augment)}")
    if "crop" in cfg.augment and cfg.crop_size > 32 + 2 * cfg.crop_padding:
        raise ConfigError("crop_size", f"must be at most 32 + 2 * crop_padding = {32 + 2 * cfg.crop_padding}")
    if "crop" in cfg.augment and cfg.crop_pad_mode == "reflect" and cfg.crop_padding >= 32:
        raise ConfigError("crop_padding", f"must be below 32 (the image's side) with --crop-pad-mode reflect, "
                                          f"got {cfg.crop_padding}")
    if cfg.data not in DATASETS and not Path(cfg.data).is_dir():
        raise ConfigError("data", f"{cfg.data!r} is neither one of {', '.join(DATASETS)} nor an existing "
                                  "folder (an image folder needs train/<class>/* and test/<class>/*)")


def default_of(name: str) -> Any:
    """A setting's default (list settings keep theirs in a factory, so no two configs share one list)."""
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def not_a_setting(name: str) -> ConfigError:
    """The refusal of an unknown setting name, with the nearest real one."""
    import difflib

    near = difflib.get_close_matches(str(name), FIELDS, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}?" if near else f"the settings are: {', '.join(FIELDS)}"
    return ConfigError(str(name), f"is not a setting; {hint}")


def checked(name: str, value: Any) -> Any:
    """One setting's value, converted and checked alone (rules between settings are make_config's)."""
    if name not in FIELDS:
        raise not_a_setting(name)
    value = _coerce(name, value)
    _check(name, value)
    return value


def make_config(values: dict | None = None, base: TrainConfig | None = None) -> TrainConfig:
    """Build a checked TrainConfig: `base` (or the defaults for its number of epochs, `budget_defaults`)
    with `values` laid over it."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise not_a_setting(unknown[0])
    if base is not None:
        merged = base.to_dict()
    else:
        merged = budget_defaults(_coerce("epochs", values["epochs"]) if "epochs" in values else default_of("epochs"))
    for name, value in values.items():
        merged[name] = _coerce(name, value)
    if merged["data_dir"] is None:
        merged["data_dir"] = _default_data_dir()
    for name, value in merged.items():
        _check(name, value)
    cfg = TrainConfig(**merged)
    _check_together(cfg)
    return cfg


ENVIRONMENT_KEY = "environment"  # written by a run to say where it ran; ignored when read back


def read_config_file(path: str | os.PathLike) -> dict:
    """The settings of a YAML file, checked for unknown keys (values are checked by make_config)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"cannot read {path}: {exc}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError("config", f"{path} is not valid YAML{at}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError("config", f"{path} must hold a mapping of setting: value")
    values.pop(ENVIRONMENT_KEY, None)
    for key in values:
        if not isinstance(key, str) or key not in FIELDS:
            raise ConfigError("config", f"{path}: unknown setting {key!r}; "
                                        f"{str(not_a_setting(key)).split('; ', 1)[1]}")
    return values


def config_to_yaml(cfg: TrainConfig, environment: dict | None = None) -> str:
    """YAML that `cifarlab train --config` reads back into the same run (out left empty: a new folder)."""
    settings = cfg.to_dict()
    settings["out"] = None
    text = "# cifarlab run configuration: `cifarlab train --config THIS_FILE` repeats the run\n"
    text += yaml.safe_dump(settings, sort_keys=False)
    if environment:
        text += yaml.safe_dump({ENVIRONMENT_KEY: environment}, sort_keys=False)
    return text
