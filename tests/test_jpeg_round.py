"""benchmarks/jpeg_round.py: the extra JPEG round used to size what JPEG costs in accuracy."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from jpeg_round import jpeg_round, jpeg_round_rows, psnr  # noqa: E402

from cifarlab.data.cifar import load_cifar  # noqa: E402


def smooth_images(n, seed):
    """Photo-like uint8 (N, 32, 32, 3) images: a 4x4 grid of mid-range colours, bilinearly enlarged."""
    grid = torch.from_numpy(np.random.default_rng(seed).uniform(64, 192, (n, 3, 4, 4)))
    images = torch.nn.functional.interpolate(grid, size=32, mode="bilinear", align_corners=True)
    return images.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_a_round_on_the_same_grid_nearly_repeats_itself_but_a_moved_grid_quantises_afresh():
    once = np.stack([jpeg_round(image, 75, 0) for image in smooth_images(8, 0)])
    again_same_grid = np.stack([jpeg_round(image, 75, 0) for image in once])
    again_moved_grid = np.stack([jpeg_round(image, 75, 4) for image in once])
    assert psnr(once, again_same_grid) > psnr(once, again_moved_grid) + 5


@given(red=st.integers(0, 255), green=st.integers(0, 255), blue=st.integers(0, 255),
       offset=st.integers(0, 7))
@settings(max_examples=25, deadline=None)
def test_rows_keep_cifars_channel_order_and_shape(red, green, blue, offset):
    """A flat colour survives JPEG within a few levels, in CIFAR's CHW row layout."""
    colour = np.array([red, green, blue], dtype=np.uint8)
    rows = np.broadcast_to(colour[None, :, None], (2, 3, 1024)).reshape(2, 3072).copy()
    out = jpeg_round_rows(rows, 90, offset)
    assert out.shape == rows.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rows.astype(int)).max() <= 4


def test_the_script_writes_a_folder_cifarlab_reads_with_the_same_labels(cifar_dir, tmp_path):
    subprocess.run([sys.executable, str(BENCHMARKS / "jpeg_round.py"), "--data-dir", str(cifar_dir),
                    "--out", str(tmp_path / "again")], check=True, capture_output=True)
    train_x, train_y, test_x, test_y, classes = load_cifar("cifar10", cifar_dir)
    train_x2, train_y2, test_x2, test_y2, classes2 = load_cifar("cifar10", tmp_path / "again")
    assert np.array_equal(train_y, train_y2) and np.array_equal(test_y, test_y2) and classes == classes2
    assert train_x.shape == train_x2.shape and test_x.shape == test_x2.shape
    assert not np.array_equal(train_x, train_x2) and not np.array_equal(test_x, test_x2)


@pytest.mark.parametrize("flag", [["--quality", "0"], ["--offset", "8"]])
def test_the_script_refuses_settings_out_of_range(cifar_dir, tmp_path, flag):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "jpeg_round.py"), "--data-dir", str(cifar_dir),
                           "--out", str(tmp_path / "again"), *flag], capture_output=True, text=True)
    assert done.returncode == 2 and flag[0] in done.stderr
    assert not (tmp_path / "again").exists()


def test_a_corrupt_batch_file_gives_one_message_and_leaves_no_half_written_copy(cifar_dir, tmp_path):
    (cifar_dir / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "jpeg_round.py"), "--data-dir", str(cifar_dir),
                           "--out", str(tmp_path / "again")], capture_output=True, text=True)
    assert done.returncode == 1 and "data_batch_3" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "again").exists()


def test_the_script_does_not_write_over_an_earlier_copy(cifar_dir, tmp_path):
    run = [sys.executable, str(BENCHMARKS / "jpeg_round.py"), "--data-dir", str(cifar_dir), "--out", str(tmp_path)]
    subprocess.run(run, check=True, capture_output=True)
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 2 and "exists already" in done.stderr
