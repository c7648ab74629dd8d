"""Validation accuracy of the last weights and of their moving averages for several decays, from one training.

    python benchmarks/ema_choice.py --decays 0.98,0.99,0.995,0.999 [--out ema_choice.json] -- TRAIN FLAGS

The flags are those of `cifarlab train` and must hold --val-split. An average never feeds back into
training, so one run carries an average per decay and scores each, and the last weights, on the same
held-out training images: a paired comparison, free of seed noise. The test split chooses nothing
(the run's own summary still reports its final test accuracy, for the first decay's average).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import machine

import cifarlab.training as training
from cifarlab.cli import build_parser, given_settings
from cifarlab.config import make_config
from cifarlab.data import load_splits
from cifarlab.ema import WeightAverage
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import evaluate
from cifarlab.runtime import resolve_device, resolve_precision


class Averages(WeightAverage):
    """The run's own average (the first decay) plus one more per further decay, all updated each step."""

    made: list[Averages] = []

    def __init__(self, model, decay, others=()):
        super().__init__(model, decay)
        self.trained = model
        self.others = {d: WeightAverage(model, d) for d in others}
        Averages.made.append(self)

    def update(self) -> None:
        super().update()
        for average in self.others.values():
            average.update()


def decay_list(text: str) -> list[float]:
    """--decays: comma-separated numbers, each strictly between 0 and 1."""
    try:
        decays = [float(d) for d in text.split(",")]
    except ValueError:
        decays = []
    if not decays or not all(0 < d < 1 for d in decays):
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers each between 0 and 1, got {text!r}")
    return decays


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decays", type=decay_list, default="0.98,0.99,0.995,0.999",
                        help="comma separated [0.98,0.99,0.995,0.999]")
    parser.add_argument("--out", default="ema_choice.json")
    parser.add_argument("train_flags", nargs=argparse.REMAINDER, help="-- then the flags of cifarlab train")
    args = parser.parse_args()
    decays = args.decays
    flags = [f for f in args.train_flags if f != "--"]
    try:
        cfg = make_config({**given_settings(build_parser().parse_args(["train", *flags])), "ema_decay": decays[0]})
        if not cfg.val_split:
            raise CifarlabError("give --val-split N among the train flags: the decays are compared on held-out images")
        training.WeightAverage = lambda model, decay: Averages(model, decay, decays[1:])
        result = training.run_training(cfg)
    except CifarlabError as error:
        raise SystemExit(f"error: {error}") from None
    splits = load_splits(cfg.data, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                         val_split=cfg.val_split, seed=cfg.seed, progress=False)
    device = resolve_device(cfg.device)
    common = dict(mean=splits.mean, std=splits.std, device=device, precision=resolve_precision(cfg.precision, device),
                  batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last)
    averages = Averages.made[0]
    models = {"last weights": averages.trained, f"ema {decays[0]}": averages.module,
              **{f"ema {d}": a.module for d, a in averages.others.items()}}
    accuracies = {name: evaluate(model, splits.val, **common).accuracy for name, model in models.items()}
    for name, accuracy in accuracies.items():
        print(f"{name:<14} {accuracy:>8.2%}")
    Path(args.out).write_text(json.dumps({"benchmark": "ema_choice", "split": "validation", "train_flags": flags,
                                          "validation_accuracy": accuracies, "history": result.history,
                                          "machine": machine()}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
