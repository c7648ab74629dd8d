"""Seconds an epoch of the default recipe and of other recipes (config files), measured in turn in one process.

    python benchmarks/recipe_time.py --epochs 16 --config benchmarks/airbench_resnet18.yaml --data-dir ./data

Two long runs on different machines cannot be compared by their times; this gives the ratio of the recipes'
times on whatever machine runs it. Each recipe is cifarlab's own training step (its loader, augmentations,
optimizer, loss, batch size and precision), the default resolved for `--epochs` as `cifarlab train --epochs N`
resolves it, and each config file with `--epochs` laid over it. The recipes run window after window; the first
window is warm-up; the median images per second of the rest gives the seconds of an epoch over the whole
training split (50,000 images), without the evaluation after it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import alternate, benchmark_images, cifarlab_stepper, report

from cifarlab import make_config
from cifarlab.config import read_config_file
from cifarlab.runtime import resolve_device, resolve_precision
from cifarlab.training import build_model

EPOCH_IMAGES = 50_000


def recipes(epochs: int, config_paths: list[str]) -> dict:
    """The recipes to time by name: "default" as `cifarlab train --epochs N` resolves it, and each config file
    (named by its stem) as `cifarlab train --config FILE --epochs N` does."""
    resolved = {"default": make_config({"epochs": epochs})}
    for path in config_paths:
        resolved[Path(path).stem] = make_config({**read_config_file(path), "epochs": epochs})
    return resolved


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, required=True, help="the budget the recipes are resolved for")
    parser.add_argument("--config", action="append", default=[], help="a recipe's YAML file (repeatable)")
    parser.add_argument("--data-dir", help="folder with cifar-10-batches-py (default: random images)")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=4, help="steps per window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows after the warm-up one")
    parser.add_argument("--out", default="recipe_time.json")
    args = parser.parse_args()

    device = resolve_device("auto")
    precision = resolve_precision("auto", device)
    images, labels = benchmark_images(args.data_dir, args.images)
    timed = recipes(args.epochs, args.config)
    steps, batch_sizes = {}, {}
    for name, cfg in timed.items():
        steps[name] = cifarlab_stepper(build_model(cfg, num_classes=10), cfg, images, labels, device, precision)
        batch_sizes[name] = cfg.batch_size
    print(f"{', '.join(timed)} at {args.epochs} epochs; {device}, {precision}; "
          f"{args.windows} windows of {args.steps} steps after a warm-up window", flush=True)
    rates = alternate(steps, args.steps, args.windows, batch_sizes)
    seconds = {name: EPOCH_IMAGES / rate for name, rate in rates.items()}
    ratio = {name: seconds[name] / seconds["default"] for name in seconds}
    result = {"benchmark": "recipe_time", "epochs": args.epochs, "device": str(device), "precision": precision,
              "images_per_sec": rates, "epoch_seconds": seconds, "time_vs_default": ratio,
              "configs": {name: cfg.to_dict() for name, cfg in timed.items()}}
    report(f"an epoch of {EPOCH_IMAGES:,} training images (median images/s)",
           [(name, f"{rates[name]:7.1f} img/s  {seconds[name]:6.0f} s an epoch  "
                   f"{ratio[name]:5.2f}x the default's time") for name in timed],
           result, args.out)


if __name__ == "__main__":
    main()
