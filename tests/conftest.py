import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

from helpers import write_cifar10, write_image_folder  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def cifar_dir(tmp_path):
    """A tiny cifar-10-batches-py (20 train, 10 test images per class) in a fresh folder."""
    return write_cifar10(tmp_path / "data")


@pytest.fixture
def image_dir(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def quick(tmp_path, cifar_dir):
    """Settings for a training run of a few seconds: the compact model, fp32, no progress bar, no report
    (drawing its figures takes longer than the training; tests of the report ask for it)."""
    return dict(model="compact", data_dir=str(cifar_dir), epochs=2, batch_size=50, lr=0.05, precision="fp32",
                device="cpu", progress=False, out=str(tmp_path / "run"), report=False)
