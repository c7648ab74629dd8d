"""Train the default recipe for a number of epochs and print the test accuracy and seconds of each.

    python benchmarks/epochs_to_accuracy.py --epochs 4 --data-dir ./data [--out epochs.json] [-- extra flags]
    python benchmarks/epochs_to_accuracy.py --epochs 4 --data-dir ./data --resume   # after an interruption

Every epoch's test accuracy is measured for this table only; nothing is chosen on it. The final
model is then measured again with flip test-time augmentation (--tta) and with flips and 1-pixel shifts
(--tta --tta-shift 1), for the table's last columns. The README's table of epochs against accuracy comes from
this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from run_result import run_result

from cifarlab.cli import main as cifarlab


def without_config(flags: list[str]) -> list[str]:
    """The flags less `--config FILE`, which `cifarlab train --resume` refuses."""
    kept = []
    for index, flag in enumerate(flags):
        if flag == "--config" or flag.startswith("--config=") or (index and flags[index - 1] == "--config"):
            continue
        kept.append(flag)
    return kept


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--data-dir", required=True, help="folder with cifar-10-batches-py")
    parser.add_argument("--run-dir", default=None, help="run folder (default runs/epochs-<N>)")
    parser.add_argument("--out", default=None, help="JSON result (default epochs_to_accuracy_<N>.json)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --run-dir from its last checkpoint")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]  # the flags passed on to cifarlab train
    run_dir = args.run_dir or f"runs/epochs-{args.epochs}"
    start = ["--resume", run_dir] if args.resume else ["--out", run_dir, "--overwrite"]
    passed = without_config(extra) if args.resume else extra  # a resumed run reads its config.yaml
    code = cifarlab(["train", *start, "--epochs", str(args.epochs), "--data-dir", args.data_dir,
                     "--test-every", "1", *passed])
    if code:
        sys.exit(code)
    out = args.out or f"epochs_to_accuracy_{args.epochs}.json"
    result = {"benchmark": "epochs_to_accuracy", "epochs": args.epochs, **run_result(run_dir, args.data_dir),
              "extra_flags": extra}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
