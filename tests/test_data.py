from pathlib import Path
import pickle

import numpy as np
import pytest
import torch
from helpers import CLASSES10, write_cifar10, write_cifar100, write_image_folder
from PIL import Image

from cifarlab.data import DeviceLoader, Split, load_splits, stratified_subset
from cifarlab.data import cifar
from cifarlab.data.datasets import channel_stats
from cifarlab.data.loader import batch_bounds
from cifarlab.errors import DataError


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_batches_are_read_with_str_or_bytes_keys(tmp_path, bytes_keys):
    root = write_cifar10(tmp_path, train_per_class=3, test_per_class=2, bytes_keys=bytes_keys)
    splits = load_splits("cifar10", root)
    assert splits.classes == CLASSES10
    assert splits.train.images.shape == (30, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert len(splits.test) == 20
    assert torch.bincount(splits.train.labels).tolist() == [3] * 10


def test_cifar10_pixels_keep_their_channel_order(tmp_path):
    root = write_cifar10(tmp_path, train_per_class=1, test_per_class=1)
    raw = pickle.load(open(root / "cifar-10-batches-py" / "data_batch_1", "rb"))
    splits = load_splits("cifar10", root)
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32)
    assert any(np.array_equal(first, img.numpy()) for img in splits.train.images)


def test_cifar100_uses_the_fine_labels(tmp_path):
    splits = load_splits("cifar100", write_cifar100(tmp_path, per_class=2))
    assert len(splits.classes) == 100 and splits.classes[7] == "class07"
    assert sorted(torch.unique(splits.train.labels).tolist()) == list(range(100))


def test_missing_data_without_network_names_the_folder(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", no_network)
    with pytest.raises(DataError) as error:
        load_splits("cifar10", tmp_path / "nothing-here")
    message = str(error.value)
    assert str((tmp_path / "nothing-here").resolve()) in message and "cifar-10-batches-py" in message
    assert "--data-dir" in message


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_download_leaves_no_folder_behind_that_was_not_there(tmp_path, monkeypatch, existed):
    target = tmp_path / "data"
    if existed:
        (target / "mine").mkdir(parents=True)

    def half_download(url, download_root, **kwargs):  # what a dropped connection leaves
        Path(download_root).mkdir(parents=True, exist_ok=True)
        (Path(download_root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise OSError("connection reset")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", half_download)
    with pytest.raises(DataError, match="connection reset"):
        load_splits("cifar10", target)
    assert target.exists() == existed
    if existed:
        assert sorted(p.name for p in target.iterdir()) == ["mine"]


def test_a_crafted_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = write_cifar10(tmp_path, 1, 1) / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(DataError, match="refusing"):
        load_splits("cifar10", tmp_path)
    assert not marker.exists()


def test_image_folder_resizes_converts_and_names_classes(tmp_path):
    root = write_image_folder(tmp_path, classes=("b_cats", "a_dogs"), size=(64, 48), mode="L", suffix=".jpg")
    splits = load_splits(str(root), "unused")
    assert splits.classes == ["a_dogs", "b_cats"]
    assert splits.train.images.shape == (12, 3, 32, 32)
    # greyscale converted to RGB: three equal channels
    assert torch.equal(splits.train.images[:, 0], splits.train.images[:, 1])


def test_image_folder_keeps_the_aspect_ratio_by_centre_cropping(tmp_path):
    left_red_right_blue = np.zeros((32, 96, 3), dtype=np.uint8)
    left_red_right_blue[:, :32, 0] = 255
    left_red_right_blue[:, 32:64, 1] = 255
    left_red_right_blue[:, 64:, 2] = 255
    for split in ("train", "test"):
        (tmp_path / split / "x").mkdir(parents=True)
        Image.fromarray(left_red_right_blue).save(tmp_path / split / "x" / "a.png")
    image = load_splits(str(tmp_path), "unused").train.images[0]
    assert image[1].float().mean() > 250 and image[0].float().mean() < 5  # the green middle third


def test_stratified_subset_keeps_class_shares_and_depends_on_the_seed():
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    split = Split(torch.zeros(1000, 3, 32, 32, dtype=torch.uint8), labels)
    sub = stratified_subset(split, 100, seed=0)
    assert torch.bincount(sub.labels).tolist() == [60, 30, 10]
    split.images[:, 0, 0, 0] = torch.arange(1000) % 256
    a, b = stratified_subset(split, 100, seed=0), stratified_subset(split, 100, seed=1)
    assert torch.equal(a.images, stratified_subset(split, 100, seed=0).images)
    assert not torch.equal(a.images, b.images)


def test_validation_is_held_out_of_training_and_stats_come_from_training(tmp_path):
    root = write_cifar10(tmp_path, train_per_class=10, test_per_class=2)
    full = load_splits("cifar10", root)
    splits = load_splits("cifar10", root, val_split=20, seed=3)
    assert len(splits.train) == 80 and len(splits.val) == 20
    assert torch.bincount(splits.val.labels).tolist() == [2] * 10
    together = torch.cat([splits.train.images, splits.val.images]).flatten(1)
    assert len(torch.unique(together, dim=0)) == len(torch.unique(full.train.images.flatten(1), dim=0))
    mean, std = channel_stats(splits.train.images)
    assert splits.mean == pytest.approx(mean) and splits.mean != pytest.approx(channel_stats(full.test.images)[0])
    assert splits.std == pytest.approx(std)


def test_channel_stats_match_numpy():
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    mean, std = channel_stats(images)
    arr = images.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(arr.mean(axis=(0, 2, 3)).tolist())
    assert std == pytest.approx(arr.std(axis=(0, 2, 3), ddof=1).tolist())


@pytest.mark.parametrize("n, batch_size", [(100, 32), (97, 32), (33, 32), (5, 8), (1, 4)])
def test_the_loader_yields_every_image_once_per_epoch(n, batch_size):
    split = Split(torch.arange(n).view(n, 1, 1, 1).expand(n, 3, 32, 32).to(torch.uint8), torch.arange(n))
    loader = DeviceLoader(split, batch_size, shuffle=True, seed=1)
    seen = torch.cat([labels for _, labels in loader.batches(epoch=3)])
    assert sorted(seen.tolist()) == list(range(n))
    assert all(len(labels) >= 2 or n == 1 for _, labels in loader.batches(3))
    assert len(list(loader.batches(3))) == len(loader) == len(batch_bounds(n, batch_size))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_process_share_names_the_positions_its_images_come_from(world):
    n = 50
    split = Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n))
    loader = DeviceLoader(split, 8, shuffle=True, seed=2)
    shares = [list(loader.shards(epoch=1, rank=rank, world=world)) for rank in range(world)]
    for rank_shares in shares:
        for images, labels, _, positions in rank_shares:
            assert torch.equal(images, split.images[positions]) and torch.equal(labels, positions)
    assert sorted(torch.cat([s[3] for share in shares for s in share]).tolist()) == list(range(n))


def test_the_shuffle_is_replayable_per_epoch_and_differs_between_epochs():
    split = Split(torch.zeros(50, 3, 32, 32, dtype=torch.uint8), torch.arange(50))
    loader = DeviceLoader(split, 10, shuffle=True, seed=7)
    first = torch.cat([y for _, y in loader.batches(1)])
    assert torch.equal(first, torch.cat([y for _, y in loader.batches(1)]))
    assert not torch.equal(first, torch.cat([y for _, y in loader.batches(2)]))


def test_labels_out_of_range_are_refused(tmp_path):
    folder = write_cifar10(tmp_path, 1, 1) / "cifar-10-batches-py"
    batch = pickle.load(open(folder / "test_batch", "rb"))
    batch["labels"][0] = 10
    pickle.dump(batch, open(folder / "test_batch", "wb"))
    with pytest.raises(DataError, match="0..9"):
        load_splits("cifar10", tmp_path)


def test_spec_checksums_are_the_published_ones():
    assert cifar.CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"


def test_the_test_split_alone_is_the_same_and_reads_no_training_file(tmp_path):
    from cifarlab.data.datasets import load_test_split

    root = write_cifar10(tmp_path / "cifar", train_per_class=6, test_per_class=5)
    expected = load_splits("cifar10", root, limit_test=20, seed=4)
    for i in range(1, 6):  # training batches unreadable: only the test split may be read
        (root / "cifar-10-batches-py" / f"data_batch_{i}").write_text("not a batch")
    split, classes = load_test_split("cifar10", root, limit_test=20, seed=4)
    assert classes == expected.classes
    assert torch.equal(split.images, expected.test.images) and torch.equal(split.labels, expected.test.labels)
    folder = write_image_folder(tmp_path / "images")
    full = load_splits(str(folder), "unused")
    (folder / "train" / "dogs" / "0000.png").write_bytes(b"broken")
    split, classes = load_test_split(str(folder), "unused")
    assert classes == full.classes and torch.equal(split.images, full.test.images)
