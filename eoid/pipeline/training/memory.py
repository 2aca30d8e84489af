"""Memory as a one-line error: refuse a recipe whose attention cannot fit, name an OOM's
knobs.

Before training, `require_memory` compares the encoder's attention at the recipe's
largest padded batch (student.memory) with what the device has free; above it, the run
is refused before any file is written. An out-of-memory error during training (CPU
allocator or CUDA) becomes `OutOfMemory`, naming the batch, the image size and the
preset.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from eoid.config import TrainConfig
from eoid.errors import EoidError
from eoid.pipeline.data.transforms import augment_params, largest_batch_px
from eoid.student.memory import encoder_attention_bytes, fused_attention
from eoid.student.presets import get_preset

# the keys that shrink the need, named in every memory message
KNOBS = ("optim.batch_size", "augment.max_size", "augment.scales", "student.preset")

# what torch's CPU allocator says when malloc fails (DefaultCPUAllocator), and other
# backends
_CPU_OOM = ("not enough memory", "can't allocate memory", "out of memory")


class OutOfMemory(EoidError):
    """A training step or recipe that needs more memory than the device has."""


def available_bytes(device: str) -> int | None:
    """Free memory of `device` in bytes ("cuda:N": the GPU's free memory; "cpu":
    MemAvailable, capped by a cgroup limit such as a container's or a batch job's);
    None if unknown."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    free = _meminfo_available()
    limit = _cgroup_room()
    return min(x for x in (free, limit) if x is not None) if free or limit else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2); None without a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((root / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def require_memory(cfg: TrainConfig, device: str, available: int | None = None) -> int:
    """Refuse (OutOfMemory) a recipe whose encoder attention alone exceeds the free
    memory.

    `available`: free bytes (default: measured on `device`). Returns the estimate in
    bytes.
    """
    preset = get_preset(cfg.student.preset)
    dropout = cfg.student.dropout if cfg.student.dropout >= 0 else preset.dropout
    height, width = largest_batch_px(augment_params(cfg.augment), cfg.optim.batch_size)
    amp = cfg.optim.amp and device.startswith("cuda")
    need = encoder_attention_bytes(
        preset,
        height,
        width,
        cfg.optim.batch_size,
        2 if amp else 4,
        dropout,
        training=True,
        fused=fused_attention(device),
    )
    available = available_bytes(device) if available is None else available
    if need and available is not None and need > available:
        raise OutOfMemory(
            f"student.preset {cfg.student.preset!r} at up to {height}x{width} px"
            f" (augment.max_size {cfg.augment.max_size}, augment.scales up to"
            f" {max(cfg.augment.scales)}) and optim.batch_size {cfg.optim.batch_size}"
            f" needs about {gigabytes(need)} for the encoder's attention alone (dropout"
            f" {dropout} on {device.split(':')[0]} keeps every S x S matrix), and"
            f" {device} has {gigabytes(available)} free. Lower {', '.join(KNOBS[:3])},"
            " choose a stride-32 student.preset (cdn-s), or set student.dropout = 0;"
            " nothing was written."
        )
    return need


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is torch running out of memory (CUDA's OutOfMemoryError, or the CPU
    allocator's RuntimeError)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(
        s in str(err).lower() for s in _CPU_OOM
    )


def out_of_memory_message(
    cfg: TrainConfig,
    device: str,
    where: str,
    batch_px: tuple[int, int] | None,
    saved: str,
) -> str:
    """The one line for an out-of-memory error: the step, the batch, image size, preset
    and knobs.

    batch_px: (height, width) of the padded batch that failed, if known; `saved`: what
    was kept.
    """
    size = (
        f"a {batch_px[0]}x{batch_px[1]} px padded batch"
        if batch_px
        else f"images up to augment.max_size {cfg.augment.max_size} px"
    )
    where = f" {where}" if where else ""
    return (
        f"out of memory on {device}{where}: optim.batch_size {cfg.optim.batch_size},"
        f" {size}, student.preset {cfg.student.preset!r}. {saved} Lower"
        " optim.batch_size (resume with --resume --allow-changes), augment.max_size /"
        " augment.scales, or choose a smaller student.preset."
    )
