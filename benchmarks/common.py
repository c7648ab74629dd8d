"""Helpers shared by the benchmarks: data to run on, timing windows, the output table and JSON."""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cifarlab.runtime import hardware


def cifarlab_stepper(model, cfg, images: torch.Tensor, labels: torch.Tensor, device, precision):
    """A step of cifarlab's own training loop for `cfg`, called with no argument: its loader over `images` on the
    device (shuffled, cut into the config's batches), its augmentations, optimizer, loss and precision, the model
    in channels_last."""
    from cifarlab.data import DeviceLoader, Split
    from cifarlab.data.datasets import channel_stats
    from cifarlab.optim import create_optimizer
    from cifarlab.runtime import make_grad_scaler
    from cifarlab.training import make_train_step

    model = model.to(device).to(memory_format=torch.channels_last).train()
    mean, std = channel_stats(images)
    loader = DeviceLoader(Split(images, labels), cfg.batch_size, shuffle=True, device=device)
    step = make_train_step(model, cfg=cfg, optimizer=create_optimizer(model, cfg, device),
                           scaler=make_grad_scaler(device, precision), device=device, precision=precision,
                           mean=mean, std=std)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = (batch for epoch in range(10**6) for batch in loader.batches(epoch))
    return lambda: step(*next(batches), generator)


def benchmark_images(data_dir: str | None, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, 32, 32) images and labels: the CIFAR-10 training split when `data_dir` holds it,
    else random images (throughput does not depend on the pixels)."""
    if data_dir:
        from cifarlab.data import load_splits, stratified_subset

        train = load_splits("cifar10", data_dir, progress=False).train
        train = stratified_subset(train, count, seed)
        return train.images, train.labels
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (count,), generator=generator))


def timed(fn, steps: int) -> float:
    """Seconds for `steps` calls of fn()."""
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def alternate(contenders: dict, steps: int, windows: int, images_per_step: dict,
              min_seconds: float = 0.0, unit: str = "img/s") -> dict:
    """Run the contenders in turn, window after window (the first, warm-up, window is dropped), and
    return the median images per second of each. With `min_seconds`, a contender's windows take as
    many steps as fill that long at its warm-up speed: a fast contender then is not timed over a few
    milliseconds, during which a slower one's background workers may still be busy. `unit` names what a
    step's count counts, per second, in the lines printed."""
    rates = {name: [] for name in contenders}
    steps_of = dict.fromkeys(contenders, steps)
    for window in range(windows + 1):
        for name, fn in contenders.items():
            seconds = timed(fn, steps_of[name])
            rate = images_per_step[name] * steps_of[name] / seconds
            if window == 0:
                steps_of[name] = max(steps, math.ceil(min_seconds / seconds * steps))
            else:
                rates[name].append(rate)
            print(f"  window {window}{' (warm-up)' if window == 0 else ''}: {name:<28} "
                  f"{rate:9.1f} {unit}", flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


def machine() -> dict:
    """What the numbers depend on: the CPU and the vector instructions PyTorch uses on it (bf16 is fast
    only with AVX512-BF16 or AMX), the library versions, the threads and any GPU."""
    return {"platform": platform.platform(), **hardware(), "torch": str(torch.__version__),
            "threads": torch.get_num_threads(), "numpy": np.__version__}


def report(title: str, rows: list[tuple[str, str]], result: dict, out: str | None) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if out:
        Path(out).write_text(json.dumps({**result, "machine": machine()}, indent=2) + "\n")
        print(f"(written to {out})")
