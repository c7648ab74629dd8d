"""Images per second of cifarlab's batched crop+flip+cutout+rotate against albumentations doing the
same per sample through a DataLoader with 2 workers; and the share of a ResNet18 training step that
augmenting its batch costs.

    python benchmarks/augment_throughput.py [--data-dir ./data] [--out augment.json]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import alternate, benchmark_images, report, timed
from torch.utils.data import DataLoader, Dataset

from cifarlab import make_config
from cifarlab.augment import Augmenter
from cifarlab.data import DeviceLoader, Split
from cifarlab.data.datasets import channel_stats
from cifarlab.losses import create_loss
from cifarlab.models import create_model
from cifarlab.optim import create_optimizer
from cifarlab.runtime import make_grad_scaler, resolve_device, resolve_precision
from cifarlab.training import make_train_step


class AlbumentationsCifar(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        import albumentations as A

        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.numpy()
        self.transform = A.Compose([
            A.PadIfNeeded(40, 40, border_mode=0), A.RandomCrop(32, 32), A.HorizontalFlip(),
            A.Rotate(limit=5, border_mode=0),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16), p=1.0),
        ])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.transform(image=self.images[index])["image"]
        return torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0), int(self.labels[index])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-seconds", type=float, default=3.0,
                        help="each timing window lasts at least this long (default 3)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="augment_throughput.json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    images, labels = benchmark_images(args.data_dir, args.images)
    augment_settings = {"augment": ["crop", "flip", "cutout", "rotate"], "crop_padding": 4, "cutout_size": 16,
                        "rotate_degrees": 5.0}
    augment = Augmenter(make_config(augment_settings))
    loader = DeviceLoader(Split(images, labels), args.batch_size, shuffle=True, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = (b for epoch in range(10**6) for b in loader.batches(epoch))

    def cifarlab_batch():
        batch, _ = next(batches)
        augment(batch.float().div_(255.0), generator)

    albumentations_loader = DataLoader(AlbumentationsCifar(images, labels), batch_size=args.batch_size,
                                       shuffle=True, num_workers=2, persistent_workers=True)
    albumentations_batches = (b for _ in range(10**6) for b in albumentations_loader)

    def albumentations_batch():
        next(albumentations_batches)

    steps = max(1, len(loader) // 2)
    print(f"crop+flip+rotate+cutout, batches of {args.batch_size}, {device}", flush=True)
    rates = alternate({"cifarlab (batched)": cifarlab_batch, "albumentations (2 workers)": albumentations_batch},
                      steps, args.windows, {"cifarlab (batched)": args.batch_size,
                                            "albumentations (2 workers)": args.batch_size},
                      min_seconds=args.window_seconds)
    ours, theirs = rates["cifarlab (batched)"], rates["albumentations (2 workers)"]

    # the cost of augmenting one training batch, against one ResNet18 training step on that batch
    precision = resolve_precision("auto", device)
    cfg = make_config({**augment_settings, "batch_size": 128, "lr": 0.05})
    model = create_model("resnet18").to(device).to(memory_format=torch.channels_last).train()
    mean, std = channel_stats(images)
    step = make_train_step(model, augmenter=augment, optimizer=create_optimizer(model, cfg, device),
                           scaler=make_grad_scaler(device, precision), loss_fn=create_loss("ce"), cfg=cfg,
                           device=device, precision=precision, mean=mean, std=std)
    batch, batch_labels = images[:128].to(device), labels[:128].to(device)
    step(batch, batch_labels, generator)  # warm-up
    step_seconds = timed(lambda: step(batch, batch_labels, generator), 4) / 4
    augment_seconds = timed(lambda: augment(batch.float().div_(255.0), generator), 40) / 40
    share = augment_seconds / step_seconds
    result = {"benchmark": "augment_throughput", "device": str(device), "images_per_sec": rates,
              "speedup_vs_albumentations": ours / theirs, "augment_seconds_per_batch_128": augment_seconds,
              "train_step_seconds_batch_128": step_seconds, "augment_share_of_step": share, "config": cfg.to_dict()}
    report("augmentation throughput (median images/s)", [
        ("cifarlab (batched)", f"{ours:10.0f}"), ("albumentations (2 workers)", f"{theirs:10.0f}"),
        ("cifarlab / albumentations", f"{ours / theirs:10.1f}x   (target >= 8x)"),
        ("augment one batch of 128", f"{augment_seconds * 1000:10.2f} ms"),
        (f"ResNet18 train step, 128, {precision}", f"{step_seconds * 1000:10.1f} ms"),
        ("augmentation share of a step", f"{share:10.2%}   (target < 2%)")], result, args.out)


if __name__ == "__main__":
    main()
