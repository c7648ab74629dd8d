"""Tiny data sets in the real on-disk formats, made by the tests themselves."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def synthetic_images(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """uint8 (N, 3, 32, 32) images whose colour and stripe frequency depend on the label, plus noise:
    easy for a small network to learn, so training tests can check that accuracy rises."""
    rng = np.random.default_rng(seed)
    hues = rng.uniform(40, 215, size=(num_classes, 3))
    x = np.arange(32)
    images = np.empty((len(labels), 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        stripes = 40 * np.sin(x * (label % 5 + 1) * np.pi / 16)[None, None, :]
        stripes = stripes if label < 5 else stripes.transpose(0, 2, 1)
        noisy = hues[label][:, None, None] + stripes + rng.normal(0, 20, size=(3, 32, 32))
        images[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    return images


def balanced_labels(per_class: int, num_classes: int, seed: int) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def _dump(path: Path, obj: dict, bytes_keys: bool) -> None:
    if bytes_keys:
        obj = {k.encode(): v for k, v in obj.items()}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, train_per_class=20, test_per_class=10, bytes_keys=False, num_batches=5,
                  mislabelled_test=0) -> Path:
    """root/cifar-10-batches-py as the official archive lays it out; returns root.

    The synthetic classes are easy enough that a tiny model may get every test image right. Tests that need
    misclassified images pass mislabelled_test=K: the first K test images keep their class's picture but carry
    the next class's label, so any model that learned the pictures gets them wrong."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_y = balanced_labels(train_per_class, 10, 1)
    train_x = synthetic_images(train_y, 10, 0)
    chunks = np.array_split(np.arange(len(train_y)), num_batches)
    for i, idx in enumerate(chunks, 1):
        _dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                           "labels": train_y[idx].tolist(),
                                           "data": train_x[idx].reshape(len(idx), -1)}, bytes_keys)
    test_y = balanced_labels(test_per_class, 10, 2)
    test_x = synthetic_images(test_y, 10, 0)
    test_y[:mislabelled_test] = (test_y[:mislabelled_test] + 1) % 10
    _dump(folder / "test_batch", {"labels": test_y.tolist(), "data": test_x.reshape(len(test_y), -1)}, bytes_keys)
    names = [n.encode() for n in CLASSES10] if bytes_keys else CLASSES10
    _dump(folder / "batches.meta", {"label_names": names, "num_vis": 3072}, bytes_keys)
    return root


def write_cifar100(root: Path, per_class=2) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 1), ("test", 2)):
        fine = balanced_labels(per_class, 100, seed)
        _dump(folder / split, {"fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                               "data": synthetic_images(fine, 100, 0).reshape(len(fine), -1)}, True)
    _dump(folder / "meta", {"fine_label_names": [f"class{i:02d}" for i in range(100)],
                            "coarse_label_names": [f"super{i}" for i in range(20)]}, False)
    return root


def write_image_folder(root: Path, classes=("cats", "dogs", "zebras"), train_per_class=6, test_per_class=3,
                       size=(32, 32), mode="RGB", suffix=".png") -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png"""
    for split, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
        labels = np.repeat(np.arange(len(classes)), per_class)
        images = synthetic_images(labels, len(classes), seed)
        for i, (label, image) in enumerate(zip(labels, images)):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(image.transpose(1, 2, 0)).resize(size).convert(mode)
            picture.save(folder / f"{i:04d}{suffix}")
    return root
