"""The fast paths compute what the plain ones do, and the training step never waits for the device."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from hypothesis import given, settings
from hypothesis import strategies as st

from cifarlab import make_config, train
from cifarlab.augment import Augmenter
from cifarlab.data import DeviceLoader, Split, to_model_input
from cifarlab.ema import Lookahead, WeightAverage
from cifarlab.evaluate import evaluate, tta_views, view_of
from cifarlab.losses import create_loss
from cifarlab.models import create_model
from cifarlab.optim import Schedule, create_optimizer
from cifarlab.runtime import make_grad_scaler
from cifarlab.training import PROGRESS_EVERY, make_train_step, train_epoch


def tiny_split(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                 torch.randint(0, 10, (n,), generator=g))


MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def test_batched_preprocessing_equals_torchvision_per_image_transforms():
    split = tiny_split(16)
    per_image = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(MEAN, STD)])
    expected = torch.stack([per_image(image) for image in split.images])
    assert torch.allclose(to_model_input(split.images, MEAN, STD, channels_last=True), expected, atol=1e-6)


@pytest.mark.parametrize("channels_last, tolerance", [(False, 1e-5), (True, 3e-2)])
def test_the_fast_step_matches_a_plain_pytorch_step(channels_last, tolerance):
    # The same inputs through our step and a plain loop: same loss, same update. oneDNN's channels_last
    # fp32 kernels round differently from NCHW ones (about 0.3% of ResNet18's first-layer gradient
    # here), hence the looser tolerance for that layout.
    torch.manual_seed(0)
    split = tiny_split(8)
    plain = create_model("resnet18")
    start, fast = copy.deepcopy(plain), copy.deepcopy(plain)
    if channels_last:
        fast.to(memory_format=torch.channels_last)
    # SGD: Muon's bf16 Newton-Schulz step would blur the comparison; tests/test_muon.py checks it on its own
    cfg = make_config({"augment": "none", "precision": "fp32", "lr": 0.1, "label_smoothing": 0.1,
                       "channels_last": channels_last, "optimizer": "sgd"})
    device = torch.device("cpu")
    step = make_train_step(fast, augmenter=Augmenter(make_config({"augment": "none"})), optimizer=create_optimizer(fast, cfg, device),
                           scaler=make_grad_scaler(device, "fp32"), loss_fn=create_loss("ce", 0.1), cfg=cfg,
                           device=device, precision="fp32", mean=MEAN, std=STD)
    fast.train(), plain.train()
    inputs = to_model_input(split.images, MEAN, STD, channels_last=False)
    loss = torch.nn.functional.cross_entropy(plain(inputs), split.labels, label_smoothing=0.1)
    loss.backward()
    create_optimizer(plain, cfg, device).step()
    fast_loss, _ = step(split.images, split.labels, torch.Generator())
    assert fast_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    for (name, a), b, w0 in zip(fast.named_parameters(), plain.parameters(), start.parameters()):
        assert (a - b).norm() <= tolerance * (b - w0).norm() + 1e-7, name


def test_the_training_loop_reads_the_device_only_every_few_steps(monkeypatch):
    model = create_model("compact")
    cfg = make_config({"augment": "crop,flip", "precision": "fp32", "progress": False, "epochs": 1})
    device = torch.device("cpu")
    optimizer = create_optimizer(model, cfg, device)
    step = make_train_step(model, augmenter=Augmenter(make_config({"augment": "crop,flip", "crop_padding": 4})), optimizer=optimizer,
                           scaler=make_grad_scaler(device, "fp32"), loss_fn=create_loss("ce"), cfg=cfg,
                           device=device, precision="fp32", mean=(0.5,) * 3, std=(0.25,) * 3,
                           averages=(WeightAverage(model, 0.9), Lookahead(model, 2, 3 * PROGRESS_EVERY)))
    reads = {"n": 0}
    for name in ("item", "cpu", "tolist", "numpy", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, **kwargs):
            reads["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    steps = 3 * PROGRESS_EVERY
    loader = DeviceLoader(tiny_split(steps * 4), 4, shuffle=True)
    train_epoch(model, loader, 1, step=step, schedule=Schedule(None, False), cfg=cfg, device=device)
    # two reads (loss, accuracy) per progress update and two for the epoch's result
    assert reads["n"] <= 2 * (steps // PROGRESS_EVERY) + 2
    assert reads["n"] < steps


def test_flip_tta_averages_the_image_and_its_mirror():
    torch.manual_seed(0)
    # a model whose output depends on left and right: a random 3x3 filter, then the left half's mean
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveAvgPool2d((1, 2)),
                                torch.nn.Flatten(), torch.nn.Linear(20, 10)).eval()
    split = tiny_split(6)
    mean, std = (0.5,) * 3, (0.25,) * 3
    result = evaluate(model, split, mean=mean, std=std, device="cpu", tta=True, channels_last=False)
    with torch.no_grad():
        x = to_model_input(split.images, mean, std, channels_last=False)
        expected = (model(x) + model(x.flip(3))) / 2
    assert torch.allclose(result.logits, expected, atol=1e-5)
    assert not torch.allclose(result.logits, model(x).detach(), atol=1e-4)


def moved(images, dy, dx):
    """The images moved dy pixels down and dx right, black where nothing moved in (by plain slicing)."""
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


@settings(max_examples=25, deadline=None)
@given(shift=st.integers(1, 8), n=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_shifted_tta_views_are_the_images_moved_diagonally_with_black_borders(shift, n, seed):
    images = tiny_split(n, seed).images
    views = tta_views(True, shift)
    assert len(views) == len(set(views)) == 6
    assert torch.equal(view_of(images, shift, shift, False), images)
    assert torch.equal(view_of(images, shift, shift, True), images.flip(3))
    down_right, up_left = moved(images, shift, shift), moved(images, -shift, -shift)
    assert torch.equal(view_of(images, shift, 0, False), down_right)
    assert torch.equal(view_of(images, shift, 2 * shift, False), up_left)
    assert torch.equal(view_of(images, shift, 0, True), down_right.flip(3))
    assert torch.equal(view_of(images, shift, 2 * shift, True), up_left.flip(3))


@settings(max_examples=25, deadline=None)
@given(shift=st.integers(1, 8), n=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_shifted_tta_views_of_a_reflect_padded_run_mirror_the_image_into_the_border(shift, n, seed):
    """A run trained on reflect-padded crops sees its moved test views padded the same way."""
    images = tiny_split(n, seed).images
    h, w = images.shape[-2:]
    mirrored = torch.from_numpy(np.pad(images.numpy(), [(0, 0), (0, 0), (shift, shift), (shift, shift)],
                                       mode="reflect"))
    down_right, up_left = mirrored[..., :h, :w], mirrored[..., 2 * shift:, 2 * shift:]
    assert torch.equal(view_of(images, shift, 0, False, "reflect"), down_right)
    assert torch.equal(view_of(images, shift, 2 * shift, True, "reflect"), up_left.flip(3))
    assert torch.equal(view_of(images, shift, shift, False, "reflect"), images)


def test_tta_views_without_tta_or_shift():
    assert tta_views(False) == [(0, False)]
    assert tta_views(True) == [(0, False), (0, True)]


def test_shifted_tta_averages_the_six_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveAvgPool2d((2, 2)),
                                torch.nn.Flatten(), torch.nn.Linear(40, 10)).eval()
    split = tiny_split(5)
    mean, std = (0.5,) * 3, (0.25,) * 3
    result = evaluate(model, split, mean=mean, std=std, device="cpu", tta=True, tta_shift=2, channels_last=False)
    with torch.no_grad():
        views = [v for d in (0, 2, -2) for m in (moved(split.images, d, d),) for v in (m, m.flip(3))]
        expected = sum(model(to_model_input(v, mean, std, channels_last=False)) for v in views) / 6
        flip_only = evaluate(model, split, mean=mean, std=std, device="cpu", tta=True, channels_last=False)
    assert torch.allclose(result.logits, expected, atol=1e-5)
    assert not torch.allclose(result.logits, flip_only.logits, atol=1e-4)


def test_seeds_train_once_each_and_report_mean_and_std(quick):
    result = train({**quick, "epochs": 1, "seeds": "0,1", "report": False})
    out = Path(quick["out"])
    summary = json.loads((out / "summary.json").read_text())
    each = [json.loads((out / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [e["seed"] for e in each] == [0, 1]
    accuracies = [e["test_accuracy"] for e in each]
    assert summary["test_accuracies"] == accuracies
    assert summary["test_accuracy"] == pytest.approx(sum(accuracies) / 2)
    assert summary["test_accuracy_std"] == pytest.approx(torch.tensor(accuracies).std().item(), abs=1e-9)
    assert [run.summary for run in result] == each  # a Run per seed
    assert [run.run_dir for run in result] == [out / "seed-0", out / "seed-1"]
