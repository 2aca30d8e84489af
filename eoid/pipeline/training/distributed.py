"""The collectives of a distributed training run: the mean of numbers over ranks, and a
barrier.

Each takes the process's `World` (eoid/devices.py, which also joins the process group)
and is a no-op in a one-process world.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from eoid.devices import World


def average_over_ranks(values: dict[str, float], world: World) -> dict[str, float]:
    """Mean of each number over all ranks (one all-reduce); the input itself in a
    one-process world.
    """
    if not world.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor(
        [float(values[k]) for k in keys],
        dtype=torch.float64,
        device=world.device if world.device.startswith("cuda") else "cpu",
    )
    dist.all_reduce(t)
    return {k: float(v) / world.world_size for k, v in zip(keys, t.tolist())}


def barrier(world: World) -> None:
    """Wait for every rank (no-op in a one-process world)."""
    if world.distributed:
        dist.barrier()
