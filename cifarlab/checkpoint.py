"""Training checkpoints: one safetensors file, written atomically, read without unpickling anything.

Tensors (model weights and buffers, optimizer buffers, random generator states) are safetensors
tensors; everything else (epoch, step, metrics so far, optimizer hyper-parameters, scheduler and grad
scaler states, Python and numpy generator states) is JSON in the file's metadata. The file is
written to a temporary name in the run folder, flushed to disk and renamed over the previous
checkpoint, so a kill at any instant leaves either the old or the new checkpoint, whole.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .errors import CifarlabError
from .rundir import write_atomic

CHECKPOINT = "checkpoint.safetensors"
FORMAT = "cifarlab-checkpoint-1"


@dataclass
class TrainingState:
    """Where training stands: `epoch` is the epoch in progress, `step` the batches of it already
    done (0 at an epoch boundary); `partial` holds that epoch's running sums when step > 0."""

    epoch: int
    step: int = 0
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    partial: dict = field(default_factory=dict)
    lr: float | None = None  # the learning rate the run trains with (found by --lr auto, or given)


def _rng_state() -> tuple[dict, dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.int32).copy())
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": _jsonable(random.getstate())}
    return tensors, meta


def _restore_rng(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().view(np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(meta["python"]))


def _jsonable(value):
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value):
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_tuples(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_tuples(v) for v in value]
    return value


def _split_optimizer(state_dict: dict) -> tuple[dict, dict]:
    """Optimizer state -> (tensors named optim.<param>.<key>, the JSON rest)."""
    tensors, scalars = {}, {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, *, model, optimizer, schedule, scaler, state: TrainingState,
                    model_info: dict, averages: dict | None = None) -> Path:
    """`averages`: the run's weight averages by name ("ema", "lookahead"), each saved as its tensors
    under "NAME." and its update count as NAME_updates."""
    averages = averages or {}
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for name, average in averages.items():
        tensors.update({f"{name}.{k}": v.detach().contiguous().cpu() for k, v in average.state_dict().items()})
    optim_tensors, optim_meta = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = _rng_state()
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    for key, value in state.partial.items():
        if torch.is_tensor(value):
            tensors[f"partial.{key}"] = value.detach().contiguous().cpu()
    meta = {"format": FORMAT, "model_info": model_info, "optimizer": optim_meta,
            "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(), "rng": rng_meta,
            **{f"{name}_updates": average.updates for name, average in averages.items()},
            "state": {"epoch": state.epoch, "step": state.step, "history": state.history,
                      "train_seconds": state.train_seconds, "lr": state.lr,
                      "partial": {k: v for k, v in state.partial.items() if not torch.is_tensor(v)}}}
    data = save(tensors, metadata={"cifarlab": json.dumps(meta)})
    path = Path(run_dir) / CHECKPOINT
    write_atomic(path, data)
    return path


@dataclass
class Checkpoint:
    tensors: dict
    meta: dict

    @property
    def state(self) -> TrainingState:
        s = self.meta["state"]
        partial = dict(s["partial"])
        partial.update(self._prefixed("partial."))
        return TrainingState(s["epoch"], s["step"], s["history"], s["train_seconds"], partial, s.get("lr"))

    def restore(self, *, model, optimizer, schedule, scaler, averages: dict | None = None) -> None:
        """Load every state into freshly built objects; a mismatch is a clear CifarlabError."""
        try:
            model.load_state_dict(self._prefixed("model."))
            optimizer.load_state_dict(_join_optimizer(self.tensors, self.meta["optimizer"]))
            for name, average in (averages or {}).items():
                average.load_state_dict(self._prefixed(f"{name}."), self.meta[f"{name}_updates"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CifarlabError(f"the checkpoint does not fit this model and optimizer: {exc}") from None
        keep_param_layouts(optimizer)
        schedule.load_state_dict(self.meta["scheduler"])
        if self.meta["scaler"]:  # empty for a disabled (non-fp16) scaler
            scaler.load_state_dict(self.meta["scaler"])
        _restore_rng(self.tensors, self.meta["rng"])

    def _prefixed(self, prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def keep_param_layouts(optimizer) -> None:
    """Give each optimizer buffer its parameter's memory format (channels_last survives a resume)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load_checkpoint(run_dir: Path) -> Checkpoint:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CifarlabError(f"{run_dir} has no {CHECKPOINT} to resume from")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["cifarlab"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CifarlabError(f"{path} is not a readable cifarlab checkpoint (truncated or not a checkpoint: "
                            f"{type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CifarlabError(f"{path} is not a cifarlab checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    return Checkpoint(tensors, meta)
