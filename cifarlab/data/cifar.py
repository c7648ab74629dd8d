"""CIFAR-10 and CIFAR-100 in their official "python version" layout.

The batch files are pickles. They are read with an unpickler that only rebuilds what a CIFAR batch
holds (dicts, lists, strings, numbers and numpy arrays), so a crafted file cannot run code. Dict keys
may be str or bytes (Python 2 pickles read with latin1 give bytes on some writers).
"""

from __future__ import annotations

import io
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class CifarSpec:
    folder: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str


CIFAR10 = CifarSpec(
    folder="cifar-10-batches-py",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
)

CIFAR100 = CifarSpec(
    folder="cifar-100-python",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
)

SPECS = {"cifar10": CIFAR10, "cifar100": CIFAR100}


class _BatchUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # truncated, corrupt, or not a pickle at all
        raise DataError(f"{path} is not a readable CIFAR batch file ({type(exc).__name__}: {exc}); "
                        "delete the folder and provide the data again") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a CIFAR batch (a dict), but {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one batch file, checked."""
    batch = read_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path} lacks the keys 'data' and {label_key!r} of a CIFAR batch")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {label_key!r} must be {len(data)} whole numbers, one per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_class_names(folder: Path, spec: CifarSpec) -> list[str]:
    meta = read_pickle(folder / spec.meta_file)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"{folder / spec.meta_file} lacks the list {spec.names_key!r}")
    return [_as_text(n) for n in names]


def read_split(folder: Path, spec: CifarSpec, files: tuple[str, ...], num_classes: int):
    parts = [read_batch(folder / name, spec.label_key, num_classes) for name in files]
    if not parts:
        return np.empty((0, 3, 32, 32), dtype=np.uint8), np.empty(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def has_files(folder: Path, spec: CifarSpec) -> bool:
    return all((folder / f).is_file() for f in (*spec.train_files, *spec.test_files, spec.meta_file))


def download(spec: CifarSpec, data_dir: Path) -> None:
    """Fetch the official archive, check its MD5 and extract it (torchvision's own helper). A failed
    download leaves nothing behind: the data folder goes again if this call created it, else the
    partial archive."""
    from torchvision.datasets.utils import download_and_extract_archive

    created = not data_dir.exists()
    archive = data_dir / spec.url.rsplit("/", 1)[-1]
    had_archive = archive.exists()
    try:
        download_and_extract_archive(spec.url, str(data_dir), md5=spec.md5, remove_finished=True)
    except Exception as exc:
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif not had_archive:
            archive.unlink(missing_ok=True)
        raise DataError(
            f"no {spec.folder} folder in {data_dir.resolve()} and the download failed ({exc}). "
            f"Provide the data: put the official '{spec.folder}' folder there (or point --data-dir / "
            "$CIFARLAB_DATA at its parent), or use --data PATH for an image folder") from None


def load_cifar(name: str, data_dir: str | Path, train: bool = True):
    """(train_x, train_y, test_x, test_y, class_names) of cifar10 or cifar100, downloading if needed.
    With train=False the training arrays are empty: the training files are not read."""
    spec = SPECS[name]
    data_dir = Path(data_dir)
    folder = data_dir / spec.folder
    if not has_files(folder, spec):
        download(spec, data_dir)
        if not has_files(folder, spec):
            raise DataError(f"the archive did not give the files of {folder}")
    classes = read_class_names(folder, spec)
    train_x, train_y = read_split(folder, spec, spec.train_files if train else (), len(classes))
    test_x, test_y = read_split(folder, spec, spec.test_files, len(classes))
    return train_x, train_y, test_x, test_y, classes
