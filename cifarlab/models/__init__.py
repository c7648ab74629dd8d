"""The models, declared once in MODELS: `create_model(name, num_classes, norm=..., dropout=..., stages=...)`
builds any of them by name.

A model is a file in this folder with a builder `(num_classes, norm_layer, dropout, **options) -> nn.Module`
and one MODELS line: its name, a line of help, `cam_layer` (the layer Grad-CAM reads by default, the last
convolution stage) and `staged` (it takes `stages` and `zero_init_residual`, whose `cam_layer` is then
layer<stages>).
"""

from torch import nn

from ..registry import Registry
from . import compact, resnet
from .norm import NORMS, norm_factory

MODELS = Registry("model")
MODELS.register("resnet18", resnet.resnet18, help="kuangliu's ResNet18, 11.2M parameters", staged=True)
MODELS.register("resnet34", resnet.resnet34, help="kuangliu's ResNet34, 21.3M parameters", staged=True)
MODELS.register("compact", compact.compact, help="under 100k parameters", cam_layer="features")
MODELS.register("compact_res", compact.compact_res, help="under 100k parameters, with shortcuts", cam_layer="features")

STAGED_MODELS = MODELS.names(lambda info: info.get("staged", False))


def default_cam_layer(name: str, stages: int = 4) -> str:
    """The layer Grad-CAM reads by default: the last stage of a ResNet (layer4, a 4x4 map on 32x32
    inputs; with 3 stages layer3, 8x8), the last convolution block of the compact network."""
    return f"layer{stages}" if name in STAGED_MODELS else MODELS.info[name]["cam_layer"]


def model_names() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, num_classes: int = 10, *, norm: str = "batch", norm_groups: int = 8,
                 ghost_splits: int = 2, dropout: float = 0.0, stages: int = 4,
                 zero_init_residual: bool = False) -> nn.Module:
    """A freshly initialised model by name, with its normalisation, dropout and (ResNets) stages and
    zero-initialised residual branches."""
    builder = MODELS[name]
    kwargs = {"norm_layer": norm_factory(norm, norm_groups, ghost_splits), "dropout": dropout}
    if stages != 4:
        if name not in STAGED_MODELS:
            raise ValueError(f"stages applies to {', '.join(STAGED_MODELS)}, not {name}")
        kwargs["stages"] = stages
    if zero_init_residual:
        if name not in STAGED_MODELS:
            raise ValueError(f"zero_init_residual applies to {', '.join(STAGED_MODELS)}, not {name}")
        kwargs["zero_init_residual"] = True
    return builder(num_classes=num_classes, **kwargs)


def model_args(cfg) -> dict:
    """The settings of a TrainConfig that shape the model (saved with the weights to rebuild it)."""
    return {"norm": cfg.norm, "norm_groups": cfg.norm_groups, "ghost_splits": cfg.ghost_splits,
            "dropout": cfg.dropout, "stages": cfg.stages}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
