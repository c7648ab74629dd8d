"""Training images per second of cifarlab's step with its own loader, against the plain PyTorch
reference of kuangliu/pytorch-cifar's main.py and against the model's own limit.

    python benchmarks/train_throughput.py [--data-dir ./data] [--steps 6] [--windows 3] [--out train.json]

- cifarlab: uint8 images in memory on the device, shuffled, cut and augmented (crop+flip) as whole
  batches, normalised, channels_last, mixed precision where it pays (cifarlab's auto choice).
- reference: a Dataset over the same in-memory images with per-sample torchvision RandomCrop(32, 4),
  RandomHorizontalFlip, ToTensor, Normalize; a DataLoader with 2 workers; fp32; NCHW (main.py).
- bare model: the same model, precision and layout as cifarlab, fed one random normalised batch again
  and again: no data work at all, the model's own limit on this machine.
All three: ResNet18, batch 128; the reference steps with SGD (momentum 0.9, weight decay 5e-4) as main.py does,
cifarlab and the bare model with `--optimizer` (cifarlab's default unless given: its Muon step on the filters is
part of what cifarlab's default costs); run in turn in one process, window after window; the first window is
warm-up; the median of the rest is reported. With Muon the bare model also steps with SGD (what Muon's step
costs) and, on a CPU, with Muon orthogonalising as torch.optim.Muon does (what cifarlab's way saves).
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torchvision.transforms as transforms
from common import alternate, benchmark_images, cifarlab_stepper, report
from torch.utils.data import DataLoader, Dataset

from cifarlab import make_config
from cifarlab.config import OPTIMIZERS
from cifarlab.data.datasets import channel_stats
from cifarlab.models import create_model
from cifarlab.optim import create_optimizer
from cifarlab.runtime import autocast, cpu_has_fast_bf16, resolve_device, resolve_precision


class InMemoryCifar(Dataset):
    """kuangliu main.py's data path, over images already in memory (HWC uint8, as torchvision's CIFAR10)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def endless(loader):
    while True:
        yield from loader


def bare_stepper(base, cfg, device, precision, batch_size, torch_iteration=False):
    """A step of the model alone: same precision and layout as cifarlab, one random batch again and again.
    `torch_iteration`: Muon orthogonalises as torch.optim.Muon does (in bf16 where the CPU has it natively)
    instead of through the eigenvalues, cifarlab's way on a CPU."""
    bare = copy.deepcopy(base).to(device).to(memory_format=torch.channels_last).train()
    optimizer = create_optimizer(bare, cfg, device)
    if torch_iteration:
        optimizer.spectral = False
        optimizer.orthogonal_dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    inputs = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch_size,), device=device)

    def bare_step():
        with autocast(device, precision):
            logits = bare(inputs)
        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return bare_step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder with cifar-10-batches-py (default: random images)")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="steps per window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows after the warm-up one")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--optimizer", choices=OPTIMIZERS.names(), default=make_config().optimizer,
                        help="cifarlab's and the bare model's optimizer (default: cifarlab's default)")
    parser.add_argument("--out", default="train_throughput.json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    images, labels = benchmark_images(args.data_dir, args.images)
    mean, std = channel_stats(images)
    torch.manual_seed(0)
    base = create_model("resnet18")
    cfg_values = {"augment": "crop,flip", "crop_padding": 4, "batch_size": args.batch_size, "lr": 0.05,
                  "label_smoothing": 0.0, "optimizer": args.optimizer}  # the reference's augmentation and loss
    cfg = make_config(cfg_values)

    cifarlab_step = cifarlab_stepper(copy.deepcopy(base), cfg, images, labels, device, precision)

    # kuangliu main.py
    reference = copy.deepcopy(base).to(device).train()
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(mean, std)])
    reference_loader = endless(DataLoader(InMemoryCifar(images, labels, transform), batch_size=args.batch_size,
                                          shuffle=True, num_workers=2, persistent_workers=True))
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def reference_step():
        inputs, targets = next(reference_loader)
        inputs, targets = inputs.to(device), targets.to(device)
        reference_optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(reference(inputs), targets)
        loss.backward()
        reference_optimizer.step()

    # the model's own limit: same precision and layout, no data work
    bare_step = bare_stepper(base, cfg, device, precision, args.batch_size)

    contenders = {"cifarlab": cifarlab_step, "reference (kuangliu main.py)": reference_step,
                  f"bare model ({precision})": bare_step}
    if args.optimizer != "sgd":  # what the optimizer's own step costs: the same bare model stepping with SGD
        contenders[f"bare model ({precision}), sgd"] = bare_stepper(base, make_config({**cfg_values, "optimizer": "sgd"}),
                                                                    device, precision, args.batch_size)
    iteration = f"bare model ({precision}), muon by torch's iteration"
    if args.optimizer == "muon" and device.type == "cpu":  # what the spectral route saves, in the same process
        contenders[iteration] = bare_stepper(base, cfg, device, precision, args.batch_size, torch_iteration=True)
    print(f"ResNet18, batch {args.batch_size}, {device}, cifarlab precision {precision}, {args.optimizer}; "
          f"{args.windows} windows of {args.steps} steps after a warm-up window", flush=True)
    rates = alternate(contenders, args.steps, args.windows, {k: args.batch_size for k in contenders})
    ours_rate, ref_rate, bare_rate = (rates[k] for k in list(contenders)[:3])
    sgd_rate = rates.get(f"bare model ({precision}), sgd")
    iteration_rate = rates.get(iteration)
    result = {"benchmark": "train_throughput", "device": str(device), "precision": precision, "optimizer": args.optimizer,
              "batch_size": args.batch_size, "images_per_sec": rates,
              "speedup_vs_reference": ours_rate / ref_rate, "fraction_of_bare_model": ours_rate / bare_rate,
              "bare_model_vs_reference": bare_rate / ref_rate,
              "step_time_vs_sgd": sgd_rate / bare_rate if sgd_rate else None,
              "torch_iteration_step_time_vs_sgd": sgd_rate / iteration_rate if iteration_rate else None,
              "config": cfg.to_dict()}
    report("training throughput (median images/s)", [
        ("cifarlab", f"{ours_rate:8.1f}"), ("reference (kuangliu main.py)", f"{ref_rate:8.1f}"),
        (f"bare model ({precision})", f"{bare_rate:8.1f}"),
        ("cifarlab / reference", f"{ours_rate / ref_rate:8.2f}x   (target >= 2.2x on the CPU)"),
        ("cifarlab / bare model", f"{ours_rate / bare_rate:8.1%}   (target >= 95%)"),
        ("bare model / reference", f"{bare_rate / ref_rate:8.2f}x   (the most any loop could gain here at "
                                   f"{precision})")]
           + ([(f"{args.optimizer} step / sgd step", f"{sgd_rate / bare_rate:8.3f}   (the bare model's time a step)")]
              if sgd_rate else [])
           + ([("muon by torch's iteration / sgd", f"{sgd_rate / iteration_rate:8.3f}   (the same, orthogonalised "
                                                   "as torch.optim.Muon does)")] if iteration_rate else []),
           result, args.out)


if __name__ == "__main__":
    np.random.seed(0)
    main()
