import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cifarlab import train
from cifarlab.data.datasets import load_splits
from cifarlab.errors import ConfigError
from cifarlab.models import count_parameters, create_model
from cifarlab.models.whiten import whiten_first_conv, whitening_filters

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.25, 0.3)


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """uint8 images whose neighbouring pixels and channels are strongly correlated, as in photographs."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    shared = coarse.mean(1, keepdim=True)
    images = 0.6 * shared + 0.3 * coarse + 0.1 * torch.rand(n, 3, 32, 32, generator=g)
    return (images * 255).round().to(torch.uint8)


def normalised(images: torch.Tensor) -> torch.Tensor:
    x = images.double() / 255
    return (x - torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)


def patch_covariance(outputs: torch.Tensor) -> torch.Tensor:
    flat = outputs.transpose(0, 1).reshape(outputs.shape[1], -1)
    return flat @ flat.T / flat.shape[1]


def test_whitening_filters_decorrelate_the_patches_and_come_with_their_negatives():
    images = smooth_images(300, seed=0)
    filters = whitening_filters(images, MEAN, STD, kernel=3, eps=1e-9)
    assert filters.shape == (54, 3, 3, 3)
    assert torch.equal(filters[27:], -filters[:27])
    before = patch_covariance(F.unfold(normalised(images), 3).view(300, 27, -1))
    after = patch_covariance(F.conv2d(normalised(images), filters[:27].double()))
    correlation = before / torch.outer(before.diag().sqrt(), before.diag().sqrt())
    assert (correlation - torch.eye(27, dtype=before.dtype)).max() > 0.8  # the patches were correlated
    assert torch.allclose(after, torch.eye(27, dtype=after.dtype), atol=2e-3)


def test_whitening_changes_only_the_first_filters_of_the_first_convolution():
    model, untouched = create_model("resnet18", num_classes=10), create_model("resnet18", num_classes=10)
    untouched.load_state_dict(model.state_dict())
    whiten_first_conv(model, smooth_images(50, seed=1), MEAN, STD)
    changed = [name for name, value in model.state_dict().items() if not torch.equal(value, untouched.state_dict()[name])]
    assert changed == ["conv1.weight"]
    assert torch.equal(model.conv1.weight[54:], untouched.conv1.weight[54:])
    assert not torch.equal(model.conv1.weight[:54], untouched.conv1.weight[:54])
    assert count_parameters(model) == 11_173_962


def test_a_run_with_whiten_starts_from_its_training_patches(cifar_dir, tmp_path):
    settings = dict(model="resnet18", data_dir=str(cifar_dir), epochs=1, limit_train=20, batch_size=10,
                    precision="fp32", device="cpu", progress=False, report=False, seed=3)
    train(**settings, first_conv_init="whiten", out=str(tmp_path / "whiten"))
    train(**settings, out=str(tmp_path / "random"))
    splits = load_splits("cifar10", str(cifar_dir), limit_train=20, seed=3)
    expected = whitening_filters(splits.train.images, splits.mean, splits.std, kernel=3)
    whitened = load_file(tmp_path / "whiten" / "model.safetensors")["conv1.weight"]
    plain = load_file(tmp_path / "random" / "model.safetensors")["conv1.weight"]
    # Two steps barely turn the filters (SGD's steps shrink as a filter grows; Muon's turn it by about its lr,
    # tiny at the start of onecycle, and rescale it, which the BatchNorm after it ignores): compare directions.
    cosine = lambda a, b: float(a.flatten() @ b.flatten() / (a.norm() * b.norm()))  # noqa: E731
    assert cosine(whitened[:54], expected) > 0.99
    assert abs(cosine(plain[:54], expected)) < 0.5


def test_whiten_on_a_model_with_too_few_first_filters_is_refused_before_the_run_folder(cifar_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^first_conv_init: .*at least 54 filters.*24"):
        train(model="compact", data_dir=str(cifar_dir), epochs=1, first_conv_init="whiten", progress=False,
              out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
