"""Training on a real subset of CIFAR-10 from ../shared/data (skipped where that folder is absent)."""

import subprocess
import sys

import pytest

from conftest import SHARED_DATA

from cifarlab import evaluate_run, train

MAKER = SHARED_DATA / "make_cifar10_batches.py"
ARCHIVE = SHARED_DATA / "cifar10-jpeg.tar.gz"

pytestmark = pytest.mark.skipif(not (MAKER.is_file() and ARCHIVE.is_file()),
                                reason=f"the real CIFAR-10 images are not at {SHARED_DATA} "
                                       "(see ../shared/README.md)")


@pytest.fixture(scope="module")
def real_subset(tmp_path_factory):
    """cifar-10-batches-py with 300 train and 50 test images per class, decoded from the real JPEGs."""
    root = tmp_path_factory.mktemp("real")
    subprocess.run([sys.executable, str(MAKER), str(root), "--per-class-train", "300", "--per-class-test", "50"],
                   check=True, capture_output=True, timeout=300)
    return root


def test_a_small_model_learns_real_cifar10_far_above_chance(real_subset, tmp_path):
    result = train(model="compact", data_dir=str(real_subset), epochs=6, batch_size=64, lr=0.2,
                   augment=["crop", "flip"], out=str(tmp_path / "run"), progress=False)
    assert result.summary["test_images"] == 500 and result.summary["train_images"] == 3000
    assert result.summary["test_accuracy"] > 0.35  # ten classes: chance is 0.10
    assert evaluate_run(tmp_path / "run")["test_accuracy"] == result.summary["test_accuracy"]
