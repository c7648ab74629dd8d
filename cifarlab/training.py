"""Training: a TrainConfig in, a trained model, its honest test accuracy and a run folder out.

Read top to bottom: `run_training` resolves device and precision, reads the data into memory, builds
the model and opens the run folder; `setup` builds the run's `Parts`; `fit` runs the epochs (train on
shuffled augmented batches, measure validation and, for the curves only, test, step the schedule,
checkpoint); `finish` saves the model, the summary and the report. The headline number is the final
model's accuracy on the whole test split; nothing is ever chosen on the test split.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .augment import Augmenter, alternating_flips
from .checkpoint import Checkpoint, TrainingState, save_checkpoint
from .config import TrainConfig, config_to_yaml
from .data import DeviceLoader, Splits, load_splits, to_model_input
from .data.loader import Stream, epoch_seed
from .ema import Lookahead, WeightAverage
from .errors import CifarlabError, ConfigError
from .evaluate import Evaluation, evaluate
from .explain import report as _report  # noqa: F401  (declares the report's files, which --overwrite clears)
from . import distributed
from .distributed import SINGLE, Context, any_across, broadcast_text, sum_across
from .interrupt import EXIT_CODES, StopRequests
from .losses import create_loss
from .models import count_parameters, create_model, model_args
from .models.whiten import check_whitening_fits, whiten_first_conv
from .optim import create_optimizer, create_schedule
from .rundir import RunFolder
from .runtime import (EMULATED_BF16, autocast, bf16_is_emulated, bf16_measured_slow, configure_backend, hardware,
                      make_grad_scaler, resolve_device, resolve_precision)
from .summary import model_summary
from .weights import save_model

PROGRESS_EVERY = 10  # steps between reads of the running loss (each read waits for the device)


class TrainingDiverged(CifarlabError):
    exit_code = 3


@dataclass
class RunResult:
    summary: dict
    history: list[dict]
    run_dir: Path
    model: nn.Module = field(repr=False)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def environment(device: torch.device, precision: str) -> dict:
    import torchvision

    return {"device": str(device), "precision": precision, "cifarlab": __version__,
            "python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "numpy": np.__version__,
            "threads": torch.get_num_threads(), "platform": platform.platform(), **hardware()}


def model_info(cfg: TrainConfig, splits: Splits) -> dict:
    """What rebuilds the model and its input normalisation; saved inside model.safetensors."""
    return {"model": cfg.model, "model_args": model_args(cfg), "classes": splits.classes, "mean": list(splits.mean), "std": list(splits.std),
            "image_size": 32, "channels_last": cfg.channels_last, "cifarlab": __version__}


def make_train_step(model, *, cfg: TrainConfig, optimizer, scaler, device, precision, mean, std,
                    context: Context = SINGLE, averages: tuple = (), augmenter=None, loss_fn=None):
    """One optimisation step on a uint8 batch: augment, normalise, forward, backward, update (and
    update the weight `averages`: Lookahead, WeightAverage). Returns the loss and logits, still on the
    device (reading them would make the host wait). The augmentations and the loss are the config's
    unless given."""
    augmenter = augmenter or Augmenter(cfg)
    loss_fn = loss_fn or create_loss(cfg.loss, cfg.label_smoothing)

    def step(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, global_size: int | None = None,
             flip: torch.Tensor | None = None):
        share = (context.rank, context.world, global_size) if context.enabled else None
        inputs = to_model_input(augmenter(images.float().div_(255.0), generator, share, flip), mean, std,
                                cfg.channels_last)
        with autocast(device, precision):
            logits = model(inputs)
        loss = loss_fn(logits.float(), labels)
        # DDP averages gradients over processes; weighting each share by its size makes that average
        # the mean over the global batch even when the shares differ in size.
        weight = len(labels) * context.world / global_size if context.enabled else 1.0
        scaler.scale(loss * weight if context.enabled else loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        for average in averages:
            average.update()
        return loss.detach(), logits.detach()

    return step


def weight_averages(cfg: TrainConfig, model: nn.Module, total_steps: int) -> dict:
    """The averages of the weights a config asks for, by their checkpoint names, in update order:
    Lookahead first, so the moving average follows the weights training goes on from."""
    averages = {}
    if cfg.lookahead_every:
        averages["lookahead"] = Lookahead(model, cfg.lookahead_every, total_steps)
    if cfg.ema_decay:
        averages["ema"] = WeightAverage(model, cfg.ema_decay)
    return averages


class Interrupted(Exception):
    """Raised inside an epoch when a stop was requested; carries where the epoch stands."""

    def __init__(self, position: dict):
        super().__init__("interrupted")
        self.position = position


class TrainingInterrupted(CifarlabError):
    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = EXIT_CODES.get(signum, 130)


@dataclass
class EpochSums:
    """Loss and accuracy summed over an epoch's steps, on the device (reading them makes the host wait)."""

    loss: torch.Tensor
    correct: torch.Tensor
    seen: int = 0

    @classmethod
    def start(cls, device, resume: dict | None, context: Context) -> "EpochSums":
        if resume and context.main:  # the saved sums cover all processes: one process carries them on
            return cls(resume["loss_sum"].to(device), resume["correct"].to(device), resume["seen"])
        return cls(torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device))

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += len(labels)

    def across(self, context: Context) -> "EpochSums":
        """The sums over every process."""
        return EpochSums(sum_across(self.loss, context), sum_across(self.correct, context),
                         int(sum_across(torch.tensor(self.seen), context)))


def diverged(running_loss: float, epoch: int, step: int, cfg: TrainConfig) -> TrainingDiverged:
    return TrainingDiverged(
        f"the training loss became {running_loss} in epoch {epoch} by step {step}: the learning rate ({cfg.lr}) "
        "may be too high, or fp16 may overflow (try --precision bf16 or fp32); the last good checkpoint is kept")


def train_epoch(model, loader: DeviceLoader, epoch: int, *, step, schedule, cfg: TrainConfig, device,
                stop: StopRequests | None = None, resume: dict | None = None, context: Context = SINGLE) -> dict:
    """One pass over the training split, or the rest of one (`resume`: where an interrupted pass stood).

    Loss and accuracy are summed on the device; the host reads them only every PROGRESS_EVERY steps,
    so the device is never made to wait each step. A requested stop ends the pass after the current
    step by raising Interrupted with everything needed to continue it exactly.
    """
    model.train()
    generator = torch.Generator(device=device).manual_seed(epoch_seed(cfg.seed, epoch, Stream.AUGMENT))
    done, seconds_before = (resume["step"], resume["seconds"]) if resume else (0, 0.0)
    if resume:
        generator.set_state(resume["generator"])
    sums = EpochSums.start(device, resume, context)
    bar = tqdm(total=len(loader), initial=done, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=not (cfg.progress and context.main), unit="batch", dynamic_ncols=True)
    start = time.perf_counter()
    flips = (alternating_flips(len(loader.split), epoch_seed(cfg.seed, 0, Stream.FLIPS), epoch).to(device)
             if cfg.flip_mode == "alternate" and "flip" in cfg.augment else None)
    for index, (images, labels, global_size, positions) in enumerate(
            islice(loader.shards(epoch, context.rank, context.world), done, None), done + 1):
        loss, logits = step(images, labels, generator, global_size,
                            None if flips is None else flips.index_select(0, positions))
        schedule.after_batch()
        sums.add(loss, logits, labels)
        if index % PROGRESS_EVERY == 0 or index == len(loader):
            running_loss = sums.loss.item() / sums.seen
            if not np.isfinite(running_loss):
                bar.close()
                raise diverged(running_loss, epoch, index, cfg)
            bar.set_postfix(loss=f"{running_loss:.3f}", acc=f"{sums.correct.item() / sums.seen:.2%}", refresh=False)
        bar.update(1)
        # With several processes, all must stop after the same step: they agree every few steps.
        check = not context.enabled or index % PROGRESS_EVERY == 0
        if stop is not None and check and index < len(loader) and any_across(stop.requested, context, device):
            bar.close()
            total = sums.across(context)
            raise Interrupted({"step": index, "seen": total.seen, "seconds": seconds_before + time.perf_counter() - start,
                               "generator": generator.get_state(), "loss_sum": total.loss, "correct": total.correct})
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = seconds_before + time.perf_counter() - start
    bar.close()
    total = sums.across(context)
    return {"train_loss": total.loss.item() / total.seen, "train_acc": total.correct.item() / total.seen,
            "train_seconds": seconds, "train_images_per_sec": total.seen / seconds}


def epoch_line(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}",
             f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"]
    for split in ("val", "test"):
        if row.get(f"{split}_acc") is not None:
            parts.append(f"{split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_acc']:.2%}")
    parts += [f"lr {row['lr']:.4g}", f"{row['epoch_seconds']:.1f}s", f"{row['train_images_per_sec']:.0f} img/s"]
    return "  ".join(parts)


def prepare(cfg: TrainConfig, context: Context = SINGLE):
    """Everything that can fail on the user's input, checked before a run folder is made."""
    device = resolve_device(cfg.device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError("sync_bn", "SyncBatchNorm runs on CUDA devices only; on the CPU use --norm group or "
                                     "--norm layer, whose statistics do not depend on the batch")
    if context.enabled and cfg.batch_size < context.world:
        raise ConfigError("batch_size", f"must be at least the number of processes ({context.world})")
    precision = resolve_precision(cfg.precision, device)
    if cfg.tensorboard:
        from .explain.tensorboard import check_available

        check_available()
    splits = load_splits(cfg.data, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                         val_split=cfg.val_split, seed=cfg.seed, progress=cfg.progress)
    return device, precision, splits


def note_precision(asked: str, precision: str, device: torch.device) -> None:
    """A line on stderr where the precision is slower than it could be, or than it looks."""
    if bf16_is_emulated(precision, device):
        print(f"cifarlab: note: --precision bf16: {EMULATED_BF16}; --precision auto picks fp32 here", file=sys.stderr)
    why_fp32 = bf16_measured_slow(asked, precision, device)
    if why_fp32:
        print(f"cifarlab: note: --precision auto: {why_fp32}; --precision bf16 asks for it anyway", file=sys.stderr)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The seeded, freshly initialised model; a Grad-CAM layer that it lacks is refused now, not
    after hours of training."""
    seed_everything(cfg.seed)
    try:
        model = create_model(cfg.model, num_classes=num_classes, **model_args(cfg),
                             zero_init_residual=cfg.zero_init_residual)
    except ValueError as exc:  # e.g. GroupNorm groups that do not divide a layer's channels
        setting = next((name for word, name in (("divisible", "norm_groups"), ("zero_init", "zero_init_residual"))
                        if word in str(exc)), "model")
        raise ConfigError(setting, str(exc)) from None
    if cfg.first_conv_init == "whiten":
        check_whitening_fits(model, cfg.model)
    if cfg.report and cfg.misclassified:
        from .explain.gradcam import target_layer
        from .explain.report import cam_layer_name

        target_layer(model, cam_layer_name(cfg))
    return model


def find_lr(cfg: TrainConfig, splits: Splits, device, precision, plot_path: Path | None = None):
    """The LR range test with this run's model, data, augmentation and optimizer (a throwaway copy)."""
    from .explain.plots import save_png
    from .lr_range import lr_range_test, range_test_figure

    probe_cfg = dataclasses.replace(cfg, lr=1e-5)
    model = build_model(probe_cfg, len(splits.classes)).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = create_optimizer(model, probe_cfg, device)
    step = make_train_step(model, cfg=cfg, optimizer=optimizer, scaler=make_grad_scaler(device, precision),
                           device=device, precision=precision, mean=splits.mean, std=splits.std)
    loader = DeviceLoader(splits.train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)
    generator = torch.Generator(device=device).manual_seed(epoch_seed(cfg.seed, 0, Stream.LR_FIND))

    def batches():
        epoch = 0
        while True:
            yield from loader.batches(epoch)
            epoch += 1

    stream = batches()
    bar = tqdm(total=cfg.lr_find_steps, desc="lr range test", leave=False, disable=not cfg.progress)

    def one_step():
        images, labels = next(stream)
        return step(images, labels, generator)[0].item()

    def show(i, lr, smoothed):
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{smoothed:.3f}", refresh=False)
        bar.update(1)

    result = lr_range_test(one_step, optimizer, steps=cfg.lr_find_steps, progress=show)
    bar.close()
    if plot_path is not None:
        save_png(range_test_figure(result), plot_path)
    return result


def open_run_folder(cfg: TrainConfig, resuming: bool, context: Context) -> RunFolder:
    """The run folder: made by rank 0 alone; its path (which may hold a timestamp) sent to the rest."""
    if resuming:
        return RunFolder(cfg.out)
    path = str(RunFolder.create(cfg.out, cfg.model, overwrite=cfg.overwrite).path) if context.main else None
    return RunFolder(broadcast_text(path, context))


def run_training(cfg: TrainConfig, checkpoint: Checkpoint | None = None, echo_summary: bool = True) -> RunResult:
    """Train (or, from `checkpoint`, go on training) and write the run folder. Under torchrun every
    process runs this; see cifarlab.distributed. `echo_summary`: also print the model's layer table (the
    command line does; in a notebook it stays in model_summary.txt)."""
    context = distributed.from_environment()
    device, precision, splits = prepare(cfg, context)
    configure_backend(device)
    distributed.join(context, device)
    precision = broadcast_text(precision, context)  # auto measures on each CPU: rank 0's choice holds for all
    model = build_model(cfg, len(splits.classes))
    run = open_run_folder(cfg, resuming=checkpoint is not None, context=context)
    try:
        with StopRequests(graceful_sigterm=not context.enabled) as stop:
            return train_run(cfg, run, model, splits, device, precision, checkpoint, stop, context, echo_summary)
    except OSError as exc:  # disk full, folder removed or made read-only under us
        raise CifarlabError(f"cannot write to the run folder {run.path}: {exc.strerror or exc}") from None


@dataclass
class Parts:
    """Everything a run trains with, built once by `setup` and read by `fit` and `finish`."""

    cfg: TrainConfig
    folder: RunFolder
    context: Context
    device: torch.device
    precision: str
    splits: Splits
    model: nn.Module          # the bare model: its weights are checkpointed
    trained: nn.Module        # what the steps run: the model, wrapped by DDP and torch.compile when asked
    final: nn.Module          # what is evaluated, saved and explained: the EMA average, or the model itself
    optimizer: torch.optim.Optimizer
    schedule: object
    scaler: torch.amp.GradScaler
    averages: dict            # the weight averages by checkpoint name (Lookahead, EMA)
    step: object              # one training step on a uint8 batch (make_train_step)
    train_loader: DeviceLoader
    val_split: object
    test_split: object
    judge: dict               # how evaluate() measures: normalisation, precision, TTA
    info: dict                # what rebuilds the model: saved in model.safetensors
    state: TrainingState
    tensorboard: object = None

    def say(self, *args, **kwargs) -> None:
        if self.context.main:
            print(*args, **kwargs)

    def save_state(self, state: TrainingState) -> None:
        if self.context.main:
            save_checkpoint(self.folder.path, model=self.model, optimizer=self.optimizer, schedule=self.schedule,
                            scaler=self.scaler, state=state, model_info=self.info, averages=self.averages)


def train_run(cfg: TrainConfig, run: RunFolder, model: nn.Module, splits: Splits, device, precision,
              checkpoint: Checkpoint | None, stop: StopRequests, context: Context = SINGLE,
              echo_summary: bool = True) -> RunResult:
    parts = setup(cfg, run, model, splits, device, precision, checkpoint, context, echo_summary)
    test_eval = fit(parts, stop)
    return finish(parts, test_eval)


def resolve_lr(cfg: TrainConfig, run: RunFolder, splits: Splits, device, precision, state: TrainingState,
               context: Context) -> TrainConfig:
    """With --lr auto, the LR range test's suggestion (run once, by rank 0, and kept in the checkpoint)."""
    if cfg.lr == "auto":
        if state.lr is None:  # rank 0 runs the range test; the other processes wait for its answer
            suggestion = None
            if context.main:
                found = find_lr(cfg, splits, device, precision, run.file("lr_find.png"))
                print(f"LR range test: suggested max lr {found.suggestion:.4g} (lr_find.png); training with it",
                      flush=True)
                suggestion = repr(found.suggestion)
            state.lr = float(broadcast_text(suggestion, context))
        cfg = dataclasses.replace(cfg, lr=state.lr)
    state.lr = cfg.lr
    return cfg


def wrap_for_training(cfg: TrainConfig, model: nn.Module, device, context: Context) -> tuple[nn.Module, nn.Module]:
    """(model, trained): the model (its BatchNorms made SyncBatchNorm with --sync-bn) and the module the steps
    run, wrapped by DDP under torchrun and compiled with --compile."""
    trained = model
    if context.enabled:
        from torch.nn.parallel import DistributedDataParallel

        if cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, (torch.compile(trained) if cfg.compile else trained)


def setup(cfg: TrainConfig, run: RunFolder, model: nn.Module, splits: Splits, device, precision,
          checkpoint: Checkpoint | None, context: Context, echo_summary: bool) -> Parts:
    """Write config.yaml, settle --lr auto, place the model, build what trains it, restore a checkpoint."""
    state = checkpoint.state if checkpoint else TrainingState(epoch=1)
    if context.main:
        run.write_text("config.yaml", config_to_yaml(cfg, environment(device, precision)))
    cfg = resolve_lr(cfg, run, splits, device, precision, state, context)
    if cfg.first_conv_init == "whiten" and checkpoint is None:
        whiten_first_conv(model, splits.train.images, splits.mean, splits.std)
    summary_text = model_summary(model)
    if context.main:
        run.write_text("model_summary.txt", summary_text + "\n")
        if echo_summary:
            print(summary_text)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    model, trained = wrap_for_training(cfg, model, device, context)
    train_loader = DeviceLoader(splits.train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)
    averages = weight_averages(cfg, model, cfg.epochs * len(train_loader))
    optimizer = create_optimizer(model, cfg, device)
    schedule = create_schedule(optimizer, cfg, len(train_loader))
    scaler = make_grad_scaler(device, precision)
    parts = Parts(
        cfg=cfg, folder=run, context=context, device=device, precision=precision, splits=splits, model=model,
        trained=trained, final=averages["ema"].module if "ema" in averages else model, optimizer=optimizer,
        schedule=schedule, scaler=scaler, averages=averages,
        step=make_train_step(trained, cfg=cfg, optimizer=optimizer, scaler=scaler, device=device, precision=precision,
                             mean=splits.mean, std=splits.std, context=context, averages=tuple(averages.values())),
        train_loader=train_loader, val_split=splits.val.to(device) if splits.val is not None else None,
        test_split=splits.test.to(device), info=model_info(cfg, splits), state=state,
        judge=dict(mean=splits.mean, std=splits.std, device=device, precision=precision,
                   batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last,
                   label_smoothing=cfg.label_smoothing, tta=cfg.tta, tta_shift=cfg.tta_shift,
                   pad_mode=cfg.crop_pad_mode, context=context))
    if cfg.tensorboard and context.main:
        from .explain.tensorboard import TensorBoardLog

        parts.tensorboard = TensorBoardLog(run.file("tensorboard"))
    seed_everything(cfg.seed)  # dropout draws from the global generator: the same start with or without lr auto
    if checkpoint:
        checkpoint.restore(model=model, optimizer=optimizer, schedule=schedule, scaler=scaler, averages=averages)
        parts.say(f"resuming {run.path} at epoch {state.epoch}" + (f", step {state.step}" if state.step else ""))
    announce(parts)
    return parts


def announce(p: Parts) -> None:
    """The run's first line: what trains on what, where, in what precision (after a note on the precision
    where there is one; both once every check has passed, so that an error stays the one line it is)."""
    if p.context.main:
        note_precision(p.cfg.precision, p.precision, p.device)
    workers = f" x {p.context.world} processes" if p.context.enabled else ""
    p.say(f"training {p.cfg.model} ({count_parameters(p.model):,} parameters) on {p.cfg.data}: "
          f"{len(p.splits.train)} train, {len(p.val_split) if p.val_split else 0} val, "
          f"{len(p.test_split)} test images; {p.device}{workers}, {p.precision}; run folder {p.folder.path}",
          flush=True)


def fit(p: Parts, stop: StopRequests) -> Evaluation:
    """The epochs: train, measure (validation; test for the curves), step the schedule, log, checkpoint.
    Returns the final model's evaluation on the whole test split."""
    cfg, state = p.cfg, p.state
    history, train_seconds, test_eval = list(state.history), state.train_seconds, None
    for epoch in range(state.epoch, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        partial = state.partial if (epoch == state.epoch and state.step) else None
        lr = partial["lr"] if partial else p.optimizer.param_groups[0]["lr"]
        try:
            stats = train_epoch(p.trained, p.train_loader, epoch, step=p.step, schedule=p.schedule, cfg=cfg,
                                device=p.device, stop=stop, resume=partial, context=p.context)
        except Interrupted as where:
            position = {**where.position, "lr": lr}
            p.save_state(TrainingState(epoch, position["step"], history, train_seconds, position, cfg.lr))
            raise interrupted(stop.signal, p.folder, epoch, position["step"]) from None
        train_seconds += stats["train_seconds"]  # a resumed epoch's includes its seconds before the stop
        row = {"epoch": epoch, "lr": lr, "train_loss": stats["train_loss"], "train_acc": stats["train_acc"]}
        if p.val_split is not None:
            val_eval = evaluate(p.final, p.val_split, **p.judge)
            row.update(val_loss=val_eval.loss, val_acc=val_eval.accuracy)
        last = epoch == cfg.epochs
        if last or (cfg.test_every and epoch % cfg.test_every == 0):
            test_eval = evaluate(p.final, p.test_split, **p.judge)
            row.update(test_loss=test_eval.loss, test_acc=test_eval.accuracy)
        p.schedule.after_epoch(row.get("val_loss", row["train_loss"]))
        before_stop = partial["seconds"] if partial else 0.0
        row.update(epoch_seconds=before_stop + time.perf_counter() - epoch_start,
                   train_images_per_sec=stats["train_images_per_sec"])
        history.append(row)
        if p.context.main:
            p.folder.write_metrics(history)
        p.save_state(TrainingState(epoch + 1, 0, history, train_seconds, lr=cfg.lr))
        if p.tensorboard:
            p.tensorboard.epoch(row)
        p.say(epoch_line(row, cfg.epochs), flush=True)
        if stop.requested and not last:
            raise interrupted(stop.signal, p.folder, epoch + 1, 0)
    p.state = TrainingState(cfg.epochs + 1, 0, history, train_seconds, lr=cfg.lr)
    # resumed after the last epoch's checkpoint: measure the final model now
    return test_eval if test_eval is not None else evaluate(p.final, p.test_split, **p.judge)


def finish(p: Parts, test_eval: Evaluation) -> RunResult:
    """Save the final model, write summary.json and the report, and say the headline."""
    cfg, run, history = p.cfg, p.folder, p.state.history
    if p.context.main:
        save_model(run.file("model.safetensors"), p.final, p.info)
    summary = {
        "model": cfg.model, "params": count_parameters(p.model), "data": cfg.data, "classes": p.splits.classes,
        "epochs": cfg.epochs, "test_accuracy": test_eval.accuracy, "test_loss": test_eval.loss,
        "test_images": test_eval.count, "test_correct": int((test_eval.predictions == test_eval.labels).sum()),
        "val_accuracy": history[-1].get("val_acc") if history else None, "train_images": len(p.splits.train),
        "val_images": len(p.val_split) if p.val_split is not None else 0,
        "train_seconds": round(p.state.train_seconds, 2), "device": str(p.device), "precision": p.precision,
        "seed": cfg.seed, "lr": cfg.lr, "run_dir": str(run.path),
        # the whole recipe (lr auto resolved), so a result can be told from its file alone; the folder is run_dir
        "config": {name: value for name, value in cfg.to_dict().items() if name not in ("out", "overwrite")},
    }
    if not p.context.main:
        return RunResult(summary, history, run.path, p.final)
    run.write_json("summary.json", summary)
    if cfg.report:
        from .explain.report import ReportInputs, write_report

        print("writing the report (curves, per-class accuracy, confusion matrix, misclassified, Grad-CAM)...",
              flush=True)
        write_report(run, ReportInputs(cfg=cfg, info=p.info, model=p.final, test_split=p.test_split,
                                       evaluation=test_eval, history=history, summary=summary, device=p.device))
    if p.tensorboard:
        p.tensorboard.figures(run.path, cfg.epochs)
        p.tensorboard.close()
    print(f"test accuracy {summary['test_accuracy']:.2%} ({summary['test_correct']}/{summary['test_images']} "
          f"test images, final model); run folder {run.path}"
          + (f", report {run.file('report.html')}" if cfg.report else ""), flush=True)
    return RunResult(summary, history, run.path, p.final)


def interrupted(signum: int, run: RunFolder, epoch: int, step: int) -> TrainingInterrupted:
    import signal

    where = f"epoch {epoch}, step {step}" if step else f"the start of epoch {epoch}"
    return TrainingInterrupted(f"stopped by {signal.Signals(signum).name}; checkpoint saved at {where}. "
                               f"Resume with: cifarlab train --resume {run.path}", signum)
