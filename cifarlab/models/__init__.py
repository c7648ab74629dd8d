"""Model factory: `create_model(name, num_classes)` builds any registered model by name."""

from torch import nn

from . import compact, resnet

_MODELS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "compact": compact.compact,
}

# The layer whose activations Grad-CAM reads by default: the last block of the last stage.
DEFAULT_CAM_LAYER = {"resnet18": "layer4", "resnet34": "layer4", "compact": "features"}


def model_names() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """A freshly initialised model by name; `kwargs` go to the model's builder."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(model_names())}")
    return _MODELS[name](num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
