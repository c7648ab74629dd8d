"""The registries: every named choice declared once, and the settings' choice lists read from them."""

import pytest

from cifarlab.augment import AUGMENTATIONS
from cifarlab.config import FIELDS, make_config
from cifarlab.errors import ConfigError
from cifarlab.explain.gradcam import CAM_METHODS
from cifarlab.models import MODELS, NORMS, create_model
from cifarlab.optim import OPTIMIZERS, SCHEDULERS
from cifarlab.registry import Registry


def test_a_registry_keeps_the_order_declared_and_refuses_a_name_twice():
    things = Registry("thing")
    things.register("b", 2, help="the second")

    @things.register("a", help="the first", heavy=True)
    def a():
        return 1

    assert things.names() == ("b", "a") and things["a"] is a and "a" in things and "c" not in things
    assert things.names(lambda info: info.get("heavy")) == ("a",)
    assert things.described() == "b (the second), a (the first)"
    with pytest.raises(ValueError, match="declared twice"):
        things.register("a", 3)
    with pytest.raises(ValueError, match="unknown thing 'c'; known: b, a"):
        things["c"]


@pytest.mark.parametrize("setting, registry", [("augment", AUGMENTATIONS), ("model", MODELS), ("norm", NORMS),
                                               ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS),
                                               ("cam", CAM_METHODS)])
def test_each_setting_offers_exactly_its_registry_s_names_with_their_help(setting, registry):
    meta = FIELDS[setting].metadata
    assert tuple(meta["choices"]) == registry.names()
    for name in registry:
        assert name in meta["help"] and registry.help[name] in meta["help"]
    with pytest.raises(ConfigError, match=setting):
        make_config({setting: "nothing-of-the-kind"})


@pytest.mark.parametrize("norm", NORMS.names())
def test_every_norm_builds_a_model_with_the_same_parameter_count(norm):
    model = create_model("compact", norm=norm, norm_groups=8)
    assert sum(p.numel() for p in model.parameters()) == 97_146


def test_every_cam_method_names_a_class_of_the_grad_cam_package():
    import pytorch_grad_cam

    for name in CAM_METHODS:
        assert isinstance(getattr(pytorch_grad_cam, CAM_METHODS[name]), type)
