"""Record finished validation runs side by side, for choosing between them: each run's resolved config, the
settings in which it differs from the first run, and its training and validation metrics per epoch.

    python benchmarks/validation_runs.py RUN_DIR [RUN_DIR ...] --out benchmarks/results/NAME.json
    python benchmarks/validation_runs.py RUN_DIR --add-to benchmarks/results/NAME.json

With --add-to, the runs already recorded in that file come first and keep their records (each with the
machine it was recorded on), so candidates trained on different days, or machines, end up side by side.

Every run folder also measured the test split (each epoch with --test-every 1, the final model always);
those numbers are left out of the record, because the choice is made on the validation split alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import machine
from run_result import per_epoch

TEST_COLUMNS = ("test_loss", "test_acc")
TEST_SUMMARY = ("test_accuracy", "test_loss", "test_images", "test_correct")


def validation_record(run_dir: str) -> dict:
    """One run without its test numbers."""
    summary = json.loads(Path(run_dir, "summary.json").read_text())
    if summary.get("val_accuracy") is None:
        raise SystemExit(f"{run_dir}: no validation split (train it with --val-split N)")
    rows = [{key: value for key, value in row.items() if key not in TEST_COLUMNS} for row in per_epoch(run_dir)]
    kept = {key: value for key, value in summary.items() if key not in TEST_SUMMARY}
    return {"final_val_accuracy": summary["val_accuracy"], "per_epoch": rows, "summary": kept}


def recorded_runs(path: str) -> dict:
    """The runs of an earlier record, each with the machine it ran on (older records kept one for all)."""
    earlier = json.loads(Path(path).read_text())
    if earlier.get("benchmark") != "validation_runs":
        raise SystemExit(f"{path}: not a record of benchmarks/validation_runs.py")
    return {name: {"machine": earlier.get("machine"), **run} for name, run in earlier["runs"].items()}


def differences(config: dict, reference: dict) -> dict:
    """The settings of `config` that differ from `reference`'s, output settings aside."""
    ignored = {"out", "data_dir", "overwrite", "progress"}
    return {key: value for key, value in config.items() if key not in ignored and reference.get(key) != value}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="finished run folders trained with --val-split")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="JSON result")
    where.add_argument("--add-to", metavar="JSON", help="a record of this script's to add the runs to")
    args = parser.parse_args()
    records = recorded_runs(args.add_to) if args.add_to else {}
    for run_dir in args.run_dirs:
        records[Path(run_dir).name] = {**validation_record(run_dir), "machine": machine()}
    reference = next(iter(records.values()))["summary"]["config"]
    print(f"{'run':<40} {'validation accuracy':>20}  differs from the first in")
    for name, record in records.items():
        record["differs_from_first"] = differences(record["summary"]["config"], reference)
        print(f"{name:<40} {record['final_val_accuracy']:>20.2%}  {record['differs_from_first'] or '-'}")
    result = {"benchmark": "validation_runs", "runs": records}
    Path(args.add_to or args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
