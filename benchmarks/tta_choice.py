"""Validation accuracy of saved runs without test-time augmentation, with flips, and with flips and shifts.

    python benchmarks/tta_choice.py RUN_DIR [RUN_DIR ...] [--shift 1] [--out tta_choice.json]

Each run must have been trained with --val-split: its held-out training images (the same ones, from the
run's seed) choose the TTA views, so the test split chooses nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import machine

from cifarlab.data import load_splits
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import evaluate
from cifarlab.saved_run import load_run


def validation_accuracies(run_dir: str, shift: int) -> dict:
    run = load_run(Path(run_dir))
    cfg = run.cfg
    if not cfg.val_split:
        raise CifarlabError(f"{run_dir} was trained without --val-split: it has no validation images")
    val = load_splits(cfg.data, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                      val_split=cfg.val_split, seed=cfg.seed, progress=False).val
    common = dict(mean=run.info["mean"], std=run.info["std"], device=run.device, precision=run.precision,
                  batch_size=cfg.eval_batch_size, channels_last=bool(run.info.get("channels_last")))
    return {"none": evaluate(run.model, val, **common).accuracy,
            "flip": evaluate(run.model, val, tta=True, **common).accuracy,
            f"flip+shift{shift}": evaluate(run.model, val, tta=True, tta_shift=shift, **common).accuracy}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--shift", type=int, default=1, help="the --tta-shift to try [1]")
    parser.add_argument("--out", default="tta_choice.json")
    args = parser.parse_args()
    results = {}
    print(f"{'run':<40} {'none':>8} {'flip':>8} {'flip+shift':>11}")
    for run_dir in args.run_dirs:
        try:
            results[run_dir] = accuracies = validation_accuracies(run_dir, args.shift)
        except CifarlabError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{run_dir:<40} " + " ".join(f"{a:>8.2%}" for a in accuracies.values()), flush=True)
    Path(args.out).write_text(json.dumps({"benchmark": "tta_choice", "split": "validation", "shift": args.shift,
                                          "runs": results, "machine": machine()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
