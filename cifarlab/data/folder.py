"""An image folder: ROOT/train/<class>/* and ROOT/test/<class>/*, class names from the folder names.

Every image is converted to RGB. One that is not 32x32 has its shorter side resized to 32 (bilinear,
antialiased) and is then cropped to the central 32x32, so its aspect ratio is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import DataError

SIZE = 32
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def to_rgb32(image: Image.Image) -> np.ndarray:
    """A PIL image as uint8 (3, 32, 32): RGB, shorter side resized to 32, centre cropped."""
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        w, h = image.size
        scale = SIZE / min(w, h)
        new_w, new_h = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
        image = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=None)
        left, top = (new_w - SIZE) // 2, (new_h - SIZE) // 2
        image = image.crop((left, top, left + SIZE, top + SIZE))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return to_rgb32(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable image ({exc})") from None


def class_folders(split_dir: Path) -> list[Path]:
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is missing: an image folder needs train/<class>/* and test/<class>/*")
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{split_dir} has no class folders")
    return folders


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"class folder {folder} holds no images")
    not_images = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not_images:
        raise DataError(f"{folder} holds files that are not images: {', '.join(not_images[:3])}")
    return files


def read_split(split_dir: Path, classes: list[str], progress: bool = True):
    """Images and labels of one split; labels number the classes as `classes` does (a class the
    split has no folder for is skipped)."""
    files, labels = [], []
    for label, name in enumerate(classes):
        if not (split_dir / name).is_dir():
            continue
        for path in image_files(split_dir / name):
            files.append(path)
            labels.append(label)
    images = [read_image(p) for p in tqdm(files, desc=f"reading {split_dir.name}", disable=not progress,
                                          leave=False)]
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_folder(root: str | Path, progress: bool = True, train: bool = True):
    """(train_x, train_y, test_x, test_y, class_names) of an image folder. With train=False the
    training images are not read (the class names still come from the training folders)."""
    root = Path(root)
    classes = [p.name for p in class_folders(root / "train")]
    test_classes = [p.name for p in class_folders(root / "test")]
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise DataError(f"{root / 'test'} has classes that {root / 'train'} lacks: {', '.join(extra)}")
    if train:
        train_x, train_y = read_split(root / "train", classes, progress)
    else:
        train_x, train_y = np.empty((0, 3, SIZE, SIZE), dtype=np.uint8), np.empty(0, dtype=np.int64)
    test_x, test_y = read_split(root / "test", classes, progress)
    return train_x, train_y, test_x, test_y, classes
