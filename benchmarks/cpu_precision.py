"""Does bf16 pay on this CPU? cifarlab's own training step for ResNet18 (the default recipe, batch 128, or
the same with `--optimizer sgd`, as most assignment configs train) in
bf16 autocast and in fp32, in turn in one process, beside what `--precision auto` measured with its short
check at the start of a run (two convolutions, see `cifarlab.runtime.cpu_bf16_speedup`) and what it chose.

    python benchmarks/cpu_precision.py [--data-dir ./data] [--optimizer sgd] [--steps 3] [--windows 3] [--out F.json]

The check is right on a machine when it falls on the same side of the threshold as the whole step.
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import alternate, benchmark_images, cifarlab_stepper, report

from cifarlab import make_config
from cifarlab.models import create_model
from cifarlab.runtime import BF16_MIN_SPEEDUP, cpu_bf16_speedup, cpu_has_fast_bf16, resolve_precision


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder with cifar-10-batches-py (default: random images)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", choices=["muon", "sgd"], help="default: the default recipe's")
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows after the warm-up one")
    parser.add_argument("--out")
    args = parser.parse_args()
    device = torch.device("cpu")
    images, labels = benchmark_images(args.data_dir, 8 * args.batch_size)
    cfg = make_config({"batch_size": args.batch_size, **({"optimizer": args.optimizer} if args.optimizer else {})})
    base = create_model("resnet18")
    contenders = {precision: cifarlab_stepper(copy.deepcopy(base), cfg, images, labels, device, precision)
                  for precision in ("bf16", "fp32")}
    print(f"ResNet18, the default recipe with {cfg.optimizer}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads; "
          f"{args.windows} windows of {args.steps} steps after a warm-up window", flush=True)
    rates = alternate(contenders, args.steps, args.windows, dict.fromkeys(contenders, args.batch_size))
    step_speedup = rates["bf16"] / rates["fp32"]
    check = cpu_bf16_speedup() if cpu_has_fast_bf16() else None
    chosen = resolve_precision("auto", device)
    agrees = (step_speedup >= BF16_MIN_SPEEDUP) == (chosen == "bf16")
    result = {"benchmark": "cpu_precision", "optimizer": cfg.optimizer, "batch_size": args.batch_size,
              "images_per_sec": rates,
              "step_speedup_bf16": step_speedup, "check_speedup_bf16": check, "threshold": BF16_MIN_SPEEDUP,
              "auto_chose": chosen, "auto_agrees_with_the_step": agrees, "config": cfg.to_dict()}
    report("cifarlab's training step, bf16 against fp32 (median images/s)", [
        ("bf16", f"{rates['bf16']:8.1f}"), ("fp32", f"{rates['fp32']:8.1f}"),
        ("bf16 / fp32, the whole step", f"{step_speedup:8.2f}x"),
        ("bf16 / fp32, auto's check", f"{check:8.2f}x" if check else "   not run (no bf16 instructions)"),
        ("--precision auto chose", f"{chosen:>8}   ({'right' if agrees else 'wrong'} by the whole step, "
                                   f"threshold {BF16_MIN_SPEEDUP}x)")], result, args.out)


if __name__ == "__main__":
    main()
