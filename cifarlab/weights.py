"""Saving and loading a trained model as safetensors, with what rebuilds it in JSON metadata.

safetensors holds tensors only, so loading a model never unpickles anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .errors import CifarlabError
from .models import create_model
from .rundir import write_atomic

METADATA_KEY = "cifarlab"


def save_model(path: str | os.PathLike, model: nn.Module, info: dict) -> None:
    """Write weights and buffers plus `info` (model name, classes, mean, std, ...) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_atomic(Path(path), save(tensors, metadata={METADATA_KEY: json.dumps(info)}))


def read_model_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, info) of a model file, or a clear CifarlabError."""
    path = Path(path)
    if not path.is_file():
        raise CifarlabError(f"no model file at {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        info = json.loads(metadata[METADATA_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CifarlabError(f"{path} is not a cifarlab model file ({type(exc).__name__}: {exc})") from None
    return tensors, info


def load_model(path: str | os.PathLike, device="cpu") -> tuple[nn.Module, dict]:
    """The model saved at `path`, in eval mode on `device`, and its info."""
    tensors, info = read_model_file(path)
    try:
        model = create_model(info["model"], num_classes=len(info["classes"]), **info.get("model_args", {}))
        model.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError) as exc:
        from . import __version__

        writer = info.get("cifarlab", "an unknown version")
        hint = f" (written by cifarlab {writer}; this is {__version__})" if writer != __version__ else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CifarlabError(f"{path} does not match its model description{hint}: {first}") from None
    model.to(device).eval()
    if info.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    return model, info
