"""Record a finished run folder as a benchmark result: its resolved config and per-epoch metrics, the final
model on the whole test split, the same model with flip test-time augmentation, and (for contrast, labelled
as what it is) the best epoch's test accuracy, a number chosen on the test split.

    python benchmarks/run_result.py RUN_DIR --data-dir ./data --out benchmarks/results/NAME.json

An assignment config's run is recorded this way, after
`cifarlab train --config configs/NAME.yaml --data-dir ./data --out RUN_DIR`.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from common import machine

from cifarlab.api import evaluate_run


def per_epoch(run_dir: str) -> list[dict]:
    with open(Path(run_dir, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def run_result(run_dir: str, data_dir: str) -> dict:
    """What the run folder says, and the final model measured again with --tta and --tta --tta-shift 1."""
    rows = per_epoch(run_dir)
    summary = json.loads(Path(run_dir, "summary.json").read_text())
    tested = [row for row in rows if row.get("test_acc")]
    best = max(tested, key=lambda row: float(row["test_acc"])) if tested else None
    print("\nepoch  test accuracy  seconds")
    for row in rows:
        accuracy = f"{float(row['test_acc']):.2%}" if row.get("test_acc") else "-"
        print(f"{row['epoch']:>5}  {accuracy:>13}  {float(row['epoch_seconds']):>7.0f}")
    print(f"final model, whole test split: {summary['test_accuracy']:.2%}")
    with_tta = evaluate_run(run_dir, data_dir=data_dir, tta=True)["test_accuracy"]
    print(f"the same model with flip test-time augmentation (--tta): {with_tta:.2%}")
    with_shift = evaluate_run(run_dir, data_dir=data_dir, tta=True, tta_shift=1)["test_accuracy"]
    print(f"with flips and 1-pixel shifts (--tta --tta-shift 1): {with_shift:.2%}")
    if best:
        print(f"best epoch on the test split (chosen on it, not a result): {float(best['test_acc']):.2%} "
              f"at epoch {best['epoch']}")
    return {"data_dir": data_dir, "per_epoch": rows, "summary": summary,
            "test_accuracy_tta": with_tta, "test_accuracy_tta_shift1": with_shift,
            "best_epoch_test_accuracy_chosen_on_test": float(best["test_acc"]) if best else None,
            "best_epoch": int(best["epoch"]) if best else None,
            # summary["train_seconds"] counts the training steps; this adds each epoch's evaluation and checkpoint
            "seconds_with_evaluation": sum(float(row["epoch_seconds"]) for row in rows), "machine": machine()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a finished run folder")
    parser.add_argument("--data-dir", required=True, help="folder with cifar-10-batches-py")
    parser.add_argument("--out", required=True, help="JSON result")
    args = parser.parse_args()
    result = {"benchmark": "run_result", **run_result(args.run_dir, args.data_dir)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
