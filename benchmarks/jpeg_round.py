"""Copy a cifar-10-batches-py folder with every image sent through one more JPEG round.

    python benchmarks/jpeg_round.py --data-dir ./data --out ./data-rejpeg [--quality 75] [--offset 4]

Why: the CIFAR-10 copy in ../shared went through JPEG once (quality 75, 4:2:0 chroma), and the official
files are not here, so what that costs in test accuracy cannot be measured directly. Training the same
recipe on a copy that went through JPEG twice measures what one more round costs. The second round is
encoded with its 8x8 block grid moved by `--offset` pixels (the image is padded by edge pixels on the top
and left, encoded, decoded and cropped back), so it quantises the picture afresh instead of repeating the
first round's rounding (at the same grid and quality JPEG is nearly idempotent). The second round meets
images whose finest detail the first round already removed, so it is expected to cost less than the first.

Prints the mean PSNR between the input and output pixels; writes the same pickled layout (str keys).
"""

from __future__ import annotations

import argparse
import io
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cifarlab.data.cifar import CIFAR10, read_pickle
from cifarlab.errors import DataError


def jpeg_round(image_hwc: np.ndarray, quality: int, offset: int) -> np.ndarray:
    """One JPEG encode/decode of a uint8 (H, W, 3) image with the block grid moved by `offset` pixels."""
    padded = np.pad(image_hwc, ((offset, 0), (offset, 0), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(padded).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return decoded[offset:, offset:]


def jpeg_round_rows(rows: np.ndarray, quality: int, offset: int) -> np.ndarray:
    """The same for CIFAR's rows: uint8 (N, 3072) in CHW order of 32x32 images."""
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    out = np.stack([jpeg_round(image, quality, offset) for image in tqdm(images, leave=False)])
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)).reshape(len(rows), -1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder with cifar-10-batches-py")
    parser.add_argument("--out", required=True, help="folder to write cifar-10-batches-py into")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality of the extra round (1-95)")
    parser.add_argument("--offset", type=int, default=4, help="pixels the block grid moves (0-7)")
    args = parser.parse_args()
    if not 1 <= args.quality <= 95:
        parser.error(f"--quality: must be in 1..95, got {args.quality}")
    if not 0 <= args.offset <= 7:
        parser.error(f"--offset: must be in 0..7, got {args.offset}")
    source, target = Path(args.data_dir, CIFAR10.folder), Path(args.out, CIFAR10.folder)
    if not source.is_dir():
        parser.error(f"--data-dir: no cifar-10-batches-py in {args.data_dir}")
    if target.exists():
        parser.error(f"--out: {target} exists already; choose another folder")
    out_existed = Path(args.out).exists()
    partial = target.with_name(target.name + ".partial")  # renamed into place only when every file is written
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name in tqdm((*CIFAR10.train_files, *CIFAR10.test_files), desc="files"):
            batch = read_pickle(source / name)
            rows = np.asarray(batch["data"], dtype=np.uint8)
            batch["data"] = jpeg_round_rows(rows, args.quality, args.offset)
            tqdm.write(f"{name}: PSNR of the extra round {psnr(rows, batch['data']):.2f} dB")
            with open(partial / name, "wb") as f:
                pickle.dump(batch, f)
        shutil.copy(source / CIFAR10.meta_file, partial / CIFAR10.meta_file)
    except (DataError, OSError) as exc:
        shutil.rmtree(partial if out_existed else Path(args.out), ignore_errors=True)
        sys.exit(f"jpeg_round.py: {exc}")
    partial.rename(target)


if __name__ == "__main__":
    main()
