"""Data-parallel training with torch.distributed, as launched by torchrun.

    torchrun --nproc_per_node=2 -m cifarlab train ...

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; cifarlab then joins the process group (nccl on CUDA,
gloo on the CPU). Every process holds the whole data set and draws the same shuffle each epoch; each
takes its own disjoint share of every global batch, DistributedDataParallel averages the gradients,
and sums of loss and accuracy are all-reduced so every number covers the whole data set. Only rank 0
prints and writes the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Context()


def from_environment() -> Context:
    """The torchrun environment, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Context(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def join(context: Context, device: torch.device) -> None:
    """Join the process group (once per process)."""
    if not context.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(minutes=10))


def leave(finished: bool = True) -> None:
    """Leave the group. After a finished job, first wait for every process (rank 0 may still be writing
    the report): tearing the group down while a peer still works can abort the process. After a
    failure, leave at once: the others may be inside a collective that will never complete."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def sum_across(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """The element-wise sum over all processes (the tensor itself with one process)."""
    if context.enabled:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_across(flag: bool, context: Context, device) -> bool:
    """True on every process if it is True on any: processes must agree to stop at the same step."""
    if not context.enabled:
        return flag
    return bool(sum_across(torch.tensor([int(flag)], device=device), context).item())


def gather_in_order(local: torch.Tensor, total: int, context: Context) -> torch.Tensor:
    """Reassemble rows that process r computed for items r, r + world, r + 2 world, ... of `total`."""
    if not context.enabled:
        return local
    longest = (total + context.world - 1) // context.world
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(context.world)]
    dist.all_gather(parts, padded)
    result = torch.empty((total, *local.shape[1:]), dtype=local.dtype, device=local.device)
    for rank, part in enumerate(parts):
        count = len(range(rank, total, context.world))
        result[rank::context.world] = part[:count]
    return result


def broadcast_text(text: str | None, context: Context) -> str | None:
    """Rank 0's string on every process (e.g. the run folder's path, which holds a timestamp)."""
    if not context.enabled:
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]
