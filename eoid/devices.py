"""The process world: one frozen value made from torchrun's environment, passed down
explicitly.

A leaf: the cache phase, training, evaluation, prediction and the CLI all take a `World`. The
collectives over it that only training uses (mean over ranks, barrier) sit in
eoid/pipeline/training/distributed.py.

Launch: `torchrun --nproc_per_node=4 -m eoid.cli train ...` (or the `eoid` script
through `torchrun --no-python`). Without torchrun variables it is a one-process world.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Rank, size and device of this process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_world(device: str | None = None) -> World:
    """World from torchrun's RANK/LOCAL_RANK/WORLD_SIZE; joins the process group
    (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(rank=rank, local_rank=local_rank, world_size=world_size, device=device)
