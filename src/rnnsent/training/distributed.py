"""PyTorch's own distributed engine, as torchrun sets it up.

``torchrun --nproc-per-node N -m rnnsent train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`setup` reads them and joins the process
group (gloo on CPU, nccl on GPU). A plain run is a world of one and touches nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str = "auto") -> World:
    """Join the process group when launched by torchrun; choose the device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if device not in ("auto", "cpu") and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    chosen = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if size > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return World(rank, size, local_rank, chosen)


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks (in place); a no-op in a world of one."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(world: World, flag: bool) -> bool:
    """True when ``flag`` is true on any rank."""
    if not world.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
