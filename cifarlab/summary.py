"""The model summary table: layer, output shape, parameters and mult-adds (torchinfo)."""

from __future__ import annotations

import re

import torchinfo
from torch import nn

# torchinfo 1.8 prints its unit enum's name ("Total mult-adds (Units.MEGABYTES)") on Python >= 3.11, where
# format() of a str-mixin Enum changed (TylerYep/torchinfo#350); the label it means is the value, "(M)".
_ENUM_UNIT = re.compile(r"\(Units\.([A-Z]+)\)")


def model_summary(model: nn.Module, image_size: int = 32) -> str:
    stats = torchinfo.summary(model, input_size=(1, 3, image_size, image_size), device="cpu", mode="eval",
                              col_names=("output_size", "num_params", "mult_adds"), depth=3, verbose=0,
                              row_settings=("var_names",))
    return _ENUM_UNIT.sub(lambda unit: f"({torchinfo.Units[unit.group(1)].value})", str(stats))
