"""Run the assignment configs in `configs/` for their full length, one after the other, and record each
finished run with `run_result.py` (resolved config, metrics per epoch, final model with and without TTA,
the best epoch kept apart as a number chosen on the test split).

    python benchmarks/assignment_runs.py --data-dir ./data --tag cpu_avx512 [NAME ...]

Run it again after an interruption, on the same machine or another: a config whose result is written is
skipped, a finished run is only recorded, and a run with a checkpoint goes on from it (`--resume`). So a
long list of trainings can be taken a piece at a time, on a CPU over days or on a GPU in one go. Results go
to `--out-dir` as `<config>_<tag>.json`; the run folders to `--runs-dir`, outside the checkout where
their weights belong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from run_result import run_result

from cifarlab.cli import main as cifarlab

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def train_or_resume(name: str, run_dir: Path, data_dir: str) -> int:
    """0 once the run is finished: trained from its config, or resumed from its checkpoint."""
    if (run_dir / "summary.json").is_file():
        return 0
    if (run_dir / "checkpoint.safetensors").is_file():
        print(f"{name}: resuming {run_dir}", flush=True)
        return cifarlab(["train", "--resume", str(run_dir), "--data-dir", data_dir, "--no-progress"])
    print(f"{name}: training into {run_dir}", flush=True)
    return cifarlab(["train", "--config", str(CONFIGS / f"{name}.yaml"), "--data-dir", data_dir,
                     "--out", str(run_dir), "--no-progress"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="config names (default: every config in configs/)")
    parser.add_argument("--data-dir", required=True, help="folder with cifar-10-batches-py")
    parser.add_argument("--tag", required=True, help="the machine, in the result's file name (e.g. cpu_avx512)")
    parser.add_argument("--runs-dir", default="runs/assignments", help="where the run folders go")
    parser.add_argument("--out-dir", default=".", help="where the results go")
    args = parser.parse_args()
    names = args.names or sorted(path.stem for path in CONFIGS.glob("*.yaml"))
    unknown = [name for name in names if not (CONFIGS / f"{name}.yaml").is_file()]
    if unknown:
        parser.error(f"no such config in {CONFIGS}: {', '.join(unknown)}")
    for name in names:
        out = Path(args.out_dir, f"{name}_{args.tag}.json")
        if out.is_file():
            print(f"{name}: recorded already in {out}", flush=True)
            continue
        run_dir = Path(args.runs_dir, name)
        code = train_or_resume(name, run_dir, args.data_dir)
        if code:
            sys.exit(code)
        result = {"benchmark": "assignment_run", "config": f"configs/{name}.yaml",
                  "command": f"cifarlab train --config configs/{name}.yaml --data-dir {args.data_dir} --out {run_dir}",
                  **run_result(str(run_dir), args.data_dir)}
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{name}: recorded in {out}", flush=True)


if __name__ == "__main__":
    main()
