"""benchmarks/recipe_time.py: the recipes it times are the ones `cifarlab train` would run, stepped by
cifarlab's own loop."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import cifarlab_stepper  # noqa: E402
from recipe_time import recipes  # noqa: E402

from cifarlab import make_config  # noqa: E402
from cifarlab.cli import main  # noqa: E402
from cifarlab.models import create_model  # noqa: E402

ANCHOR = Path(__file__).resolve().parents[1] / "benchmarks" / "airbench_resnet18.yaml"


def printed_config(capsys, *flags) -> dict:
    assert main(["train", *flags, "--print-config"]) == 0
    return {name: value for name, value in yaml.safe_load(capsys.readouterr().out).items() if name != "out"}


@pytest.mark.parametrize("epochs", [4, 16])
def test_each_recipe_is_resolved_for_the_budget_as_cifarlab_train_resolves_it(epochs, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    timed = recipes(epochs, [str(ANCHOR)])
    assert list(timed) == ["default", "airbench_resnet18"]
    default = printed_config(capsys, "--epochs", str(epochs))
    anchor = printed_config(capsys, "--config", str(ANCHOR), "--epochs", str(epochs))
    assert timed["default"] == make_config(default)
    assert timed["airbench_resnet18"] == make_config(anchor)
    assert timed["airbench_resnet18"].epochs == epochs  # the file's own 26 epochs give way to the budget
    assert (timed["airbench_resnet18"].batch_size, timed["airbench_resnet18"].optimizer) == (500, "sgd")


def test_the_stepper_trains_through_epochs_at_the_configs_batch_size():
    cfg = make_config({"model": "compact", "batch_size": 50, "precision": "fp32", "device": "cpu"})
    images = torch.randint(0, 256, (120, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (120,))
    torch.manual_seed(0)
    model = create_model("compact", num_classes=10)
    before = [p.detach().clone() for p in model.parameters()]
    step = cifarlab_stepper(model, cfg, images, labels, torch.device("cpu"), "fp32")
    seen = [step()[1].shape[0] for _ in range(5)]  # 120 images in batches of 50: an epoch is 50, 50, 20
    assert seen == [50, 50, 20, 50, 50]
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.requires_grad)
