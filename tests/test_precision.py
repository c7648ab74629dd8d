"""The path a GPU without fast bf16 takes: fp16 autocast with a GradScaler, run here on the CPU (torch runs
both there), with SGD and with Muon, including the overflowing steps the scaler must skip."""

import pytest
import torch
from torch import nn

from cifarlab import make_config
from cifarlab.augment import Augmenter
from cifarlab.losses import create_loss
from cifarlab.optim import create_optimizer
from cifarlab.training import make_train_step


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def fp16_step(optimizer_name: str, init_scale: float):
    cfg = make_config({"optimizer": optimizer_name, "augment": "none", "lr": 0.05, "channels_last": False})
    model = small_net()
    optimizer = create_optimizer(model, cfg, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    step = make_train_step(model, augmenter=Augmenter.from_config(cfg), optimizer=optimizer, scaler=scaler,
                           loss_fn=create_loss(cfg.loss, cfg.label_smoothing), cfg=cfg, device=torch.device("cpu"),
                           precision="fp16", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return model, optimizer, scaler, step


def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (16,), generator=generator), generator


@pytest.mark.parametrize("optimizer_name", ["sgd", "muon"])
def test_an_overflowing_fp16_step_is_skipped_and_the_scale_halves(optimizer_name):
    model, optimizer, scaler, step = fp16_step(optimizer_name, init_scale=2.0 ** 60)  # fp16 gradients overflow
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    images, labels, generator = batch()
    loss, logits = step(images, labels, generator)
    assert torch.isfinite(loss) and logits.dtype == torch.float16  # the forward ran in fp16
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), f"{name} moved on a skipped step"
    assert scaler.get_scale() == 2.0 ** 59
    assert not any(optimizer.state[p] for p in model.parameters())  # no momentum from the skipped step


@pytest.mark.parametrize("optimizer_name", ["sgd", "muon"])
def test_fp16_steps_with_a_sane_scale_learn(optimizer_name):
    model, optimizer, scaler, step = fp16_step(optimizer_name, init_scale=2.0 ** 8)
    images, labels, generator = batch()
    losses = [step(images, labels, generator)[0].item() for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses))) and scaler.get_scale() == 2.0 ** 8  # nothing skipped
    assert losses[-1] < losses[0]
    filters = model[0].weight.detach()
    if optimizer_name == "muon":  # Muon keeps each filter at norm sqrt(out_channels)
        assert filters.norm().item() == pytest.approx(8 ** 0.5, rel=0.05)


def pretend_cuda_device(monkeypatch, capability: tuple[int, int]):
    """torch.cuda as a GPU of this compute capability answers it: is_bf16_supported() is True on every
    CUDA device (bf16 is emulated below 8.0), and False below 8.0 only with including_emulation=False."""
    native = capability >= (8, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize("capability, precision, muon_dtype", [((7, 5), "fp16", torch.float32),
                                                               ((8, 0), "bf16", torch.bfloat16)])
def test_auto_precision_takes_bf16_only_where_the_gpu_computes_in_it(monkeypatch, capability, precision, muon_dtype):
    from cifarlab.optim import newton_schulz_dtype
    from cifarlab.runtime import resolve_precision

    pretend_cuda_device(monkeypatch, capability)
    assert resolve_precision("auto", torch.device("cuda")) == precision
    assert newton_schulz_dtype(torch.device("cuda")) == muon_dtype


def test_bf16_asked_of_a_gpu_that_only_emulates_it_is_refused_with_the_setting_and_the_choices(monkeypatch):
    from cifarlab.errors import ConfigError
    from cifarlab.runtime import resolve_precision

    pretend_cuda_device(monkeypatch, (7, 5))
    with pytest.raises(ConfigError) as refused:
        resolve_precision("bf16", torch.device("cuda"))
    assert "precision" in str(refused.value) and "7.5" in str(refused.value) and "fp16" in str(refused.value)
    assert resolve_precision("fp16", torch.device("cuda")) == "fp16"


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((9, 0), "bf16")])
def test_a_gpu_bf16_run_is_evaluated_in_bf16_only_on_a_gpu_that_computes_in_it(monkeypatch, capability, expected):
    from cifarlab.saved_run import evaluation_precision

    pretend_cuda_device(monkeypatch, capability)
    assert evaluation_precision({"device": "cuda:0", "precision": "bf16"}, torch.device("cuda")) == expected
    assert evaluation_precision({"device": "cuda:0", "precision": "fp32"}, torch.device("cuda")) == "fp32"
    assert evaluation_precision({"device": "cpu", "precision": "bf16"}, torch.device("cpu")) == "bf16"
