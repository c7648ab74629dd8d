"""The model summary table: layer, output shape, parameters and mult-adds (torchinfo)."""

from __future__ import annotations

import torchinfo
from torch import nn


def model_summary(model: nn.Module, image_size: int = 32) -> str:
    stats = torchinfo.summary(model, input_size=(1, 3, image_size, image_size), device="cpu", mode="eval",
                              col_names=("output_size", "num_params", "mult_adds"), depth=3, verbose=0,
                              row_settings=("var_names",))
    return str(stats)
