import re

import pytest
import torch
import torchinfo

from cifarlab.models import count_parameters, create_model, model_names
from cifarlab.models.compact import receptive_field
from cifarlab.summary import model_summary


@pytest.mark.parametrize("name, params", [("resnet18", 11_173_962), ("resnet34", 21_282_122)])
def test_resnets_have_kuangliu_parameter_counts(name, params):
    assert count_parameters(create_model(name)) == params


@pytest.mark.parametrize("name, field", [("compact", 63), ("compact_res", 49)])
def test_compact_networks_are_under_100k_parameters_and_see_the_whole_image(name, field):
    model = create_model(name)
    assert count_parameters(model) < 100_000
    assert receptive_field(model) == field >= 32


@pytest.mark.parametrize("name", ["resnet18", "compact"])
@pytest.mark.parametrize("classes", [10, 100])
def test_models_map_a_batch_to_one_score_per_class(name, classes):
    model = create_model(name, num_classes=classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, classes)


def test_resnet18_pooling_equals_kuangliu_avg_pool():
    model = create_model("resnet18").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.layer4(model.layer3(model.layer2(model.layer1(torch.relu(model.bn1(model.conv1(x)))))))
        expected = model.linear(torch.nn.functional.avg_pool2d(features, 4).flatten(1))
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="resnet18"):
        create_model("resnet1000")
    assert "resnet18" in model_names()


def test_model_summary_gives_mult_adds_in_millions_with_a_plain_unit_label():
    model = create_model("resnet18", num_classes=10)
    text = model_summary(model)
    total = torchinfo.summary(model, input_size=(1, 3, 32, 32), device="cpu", mode="eval", verbose=0).total_mult_adds
    line = next(line for line in text.splitlines() if line.startswith("Total mult-adds"))
    assert re.fullmatch(r"Total mult-adds \(M\): [0-9.]+", line), line
    assert float(line.split(": ")[1]) == pytest.approx(total / 1e6, abs=0.01)
    assert f"{count_parameters(model):,}" in text
