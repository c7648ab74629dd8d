"""The paths a GPU takes, each run once as a user would, with one table at the end.

    python benchmarks/gpu_check.py --data-dir ./data [--epochs 1] [--out gpu_check.json]

On a CUDA machine it trains the default recipe for --epochs in bf16 and in fp16 (GradScaler), with Muon
and with SGD (fp16 and fp32 on a GPU that only emulates bf16, such as a T4); once with --compile; once
under torchrun with nccl on every visible GPU; it kills a run halfway (SIGTERM) and resumes it; and it
checks that `cifarlab evaluate` gives each run's summary number.
Each row: what ran, whether it passed, its test accuracy, its wall time. The run folders go to a
temporary folder (--keep to keep them). `--cpu-smoke` runs the same checks on the CPU on a few hundred
images (fp32/bf16, gloo), to try the script itself where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cifarlab.runtime import cuda_has_native_bf16

CLI = [sys.executable, "-m", "cifarlab"]


def train_command(out: Path, settings: dict) -> list[str]:
    flags = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        flags += ([flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, str(value)])
    return [*CLI, "train", "--out", str(out), "--no-progress", *flags]


def run(command: list[str], timeout: float) -> tuple[int, str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).strip(), time.perf_counter() - start


def evaluate_matches(run_dir: Path, timeout: float) -> bool:
    code, output, _ = run([*CLI, "evaluate", str(run_dir)], timeout)
    return code == 0 and "the same" in output


def summary_of(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def check_training(name: str, out: Path, settings: dict, timeout: float, launcher: list[str] | None = None) -> dict:
    command = train_command(out, settings)
    if launcher:
        command = [*launcher, "-m", "cifarlab", *command[3:]]
    code, output, seconds = run(command, timeout)
    summary = summary_of(out)
    passed = code == 0 and bool(summary) and evaluate_matches(out, timeout)
    return {"check": name, "passed": passed, "test_accuracy": summary.get("test_accuracy"),
            "seconds": round(seconds, 1), "precision": summary.get("precision"),
            "tail": "" if passed else output[-600:]}


def check_resume(out: Path, settings: dict, timeout: float) -> dict:
    """SIGTERM once the first epoch's checkpoint is written, then --resume to the end."""
    start = time.perf_counter()
    process = subprocess.Popen(train_command(out, {**settings, "epochs": max(2, settings["epochs"])}),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None and not (out / "checkpoint.safetensors").is_file():
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stopped = process.wait(timeout=timeout)
    code, output, _ = run([*CLI, "train", "--resume", str(out), "--no-progress"], timeout)
    summary = summary_of(out)
    passed = stopped != 0 and code == 0 and bool(summary) and evaluate_matches(out, timeout)
    return {"check": "killed with SIGTERM, then --resume", "passed": passed,
            "test_accuracy": summary.get("test_accuracy"), "seconds": round(time.perf_counter() - start, 1),
            "precision": summary.get("precision"), "tail": "" if passed else output[-600:]}


def checks(args, base: dict, root: Path) -> list[dict]:
    gpus = torch.cuda.device_count()
    if args.cpu_smoke:
        half = ("bf16", "fp32")
    else:  # a GPU before compute capability 8.0 (a T4) refuses bf16: fp16 and fp32 there
        half = ("bf16", "fp16") if cuda_has_native_bf16() else ("fp16", "fp32")
    rows = []
    for precision in half:
        for optimizer in ("muon", "sgd"):
            rows.append(check_training(f"{precision}, {optimizer}", root / f"{precision}-{optimizer}",
                                       {**base, "precision": precision, "optimizer": optimizer}, args.timeout))
    if not args.cpu_smoke:
        rows.append(check_training("--compile", root / "compiled", {**base, "compile": True}, args.timeout))
    processes = max(gpus, 2) if args.cpu_smoke else gpus
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    rows.append(check_training(f"torchrun, {processes} processes ({'gloo' if args.cpu_smoke else 'nccl'})",
                               root / "torchrun", base, args.timeout, launcher))
    rows.append(check_resume(root / "resumed", base, args.timeout))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="./data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to each command")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same checks on the CPU, on 500 images")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_check: no CUDA device here (use --cpu-smoke to try the script on the CPU)", file=sys.stderr)
        return 2
    base = {"data_dir": args.data_dir, "epochs": args.epochs, "report": False}
    if args.cpu_smoke:
        base.update(model="compact", limit_train=500, limit_test=200, device="cpu")
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows = checks(args, base, root)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"\n{'check':<44} {'passed':<7} {'test acc':>9} {'seconds':>8}  ({device}, torch {torch.__version__})")
    for row in rows:
        accuracy = f"{row['test_accuracy']:.2%}" if row["test_accuracy"] is not None else "-"
        print(f"{row['check']:<44} {'yes' if row['passed'] else 'NO':<7} {accuracy:>9} {row['seconds']:>8}")
        if row["tail"]:
            print("    " + row["tail"].replace("\n", "\n    "))
    Path(args.out).write_text(json.dumps({"device": device, "torch": torch.__version__, "settings": base,
                                          "gpus": torch.cuda.device_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}" + (f"; run folders in {root}" if args.keep else ""))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
