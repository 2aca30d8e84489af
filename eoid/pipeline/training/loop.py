"""The epoch loop of `eoid train` (DETR's engine.train_one_epoch), its batch order and
its checks.

One step: forward (bf16 autocast on GPU), outputs checked finite, two-stage matching and
every loss term, the weighted sum checked finite, backward, clipping, AdamW. Every
logged number is a mean over ranks. The loop stops after the batch in which a stop
signal arrived; `TrainState` then holds the position a checkpoint saves, so --resume
redoes nothing and skips nothing. A step that runs out of memory stops the loop before
the optimizer moves: the position before that batch is saved the same way.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from eoid.config import OptimConfig
from eoid.devices import World
from eoid.errors import TrainingDiverged
from eoid.pipeline.training.distributed import average_over_ranks
from eoid.pipeline.training.memory import is_out_of_memory
from eoid.stop import StopFlag
from eoid.student.losses import Criterion, weighted_sum
from eoid.student.model import StudentOutput


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This rank's share of each global batch; the order depends on (seed, epoch) only."""

    def __init__(self, num_items: int, batch_size: int, world: World, seed: int):
        self.num_items, self.batch_size, self.world, self.seed = (
            num_items,
            batch_size,
            world,
            seed,
        )
        self.epoch = 0
        # batches of this epoch already trained (resume after a mid-epoch stop)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def global_batches(self) -> int:
        return math.ceil(self.num_items / (self.batch_size * self.world.world_size))

    def __len__(self) -> int:
        return self.global_batches()

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(
            self.num_items
        )
        per_global = self.batch_size * self.world.world_size
        # wrap to fill the last batch
        order = np.resize(order, self.global_batches() * per_global)
        for k in range(self.skip, self.global_batches()):
            start = k * per_global + self.world.rank * self.batch_size
            yield order[start : start + self.batch_size].tolist()


@dataclass
class TrainState:
    """Where training stands: what a checkpoint saves besides the weights."""

    iteration: int = 0  # optimizer steps taken in total
    batch_in_epoch: int = 0  # batches of the current epoch trained
    # torch RNG to restore before the next batch (mid-epoch resume)
    rng_state: Any = None
    # (H, W) px of a batch whose step ran out of memory
    out_of_memory: tuple[int, int] | None = None


@dataclass(frozen=True)
class StudentAndLoss:
    """What the epoch trains and what scores it."""

    # the student in train mode, DDP-wrapped in a multi-process world
    model: torch.nn.Module
    criterion: Criterion  # two-stage matching and every unweighted loss term
    # loss term -> weight (LossConfig), summed by weighted_sum
    weights: dict[str, float]


@dataclass(frozen=True)
class Optimization:
    """How the weights move. The runner steps the learning-rate schedule between epochs."""

    optimizer: torch.optim.Optimizer  # AdamW; its state advances in place
    # epochs, max_iters, amp, clip_max_norm of the [optim] recipe
    config: OptimConfig


@dataclass(frozen=True)
class EpochData:
    """Where this rank's batches come from."""

    # yields (images (B, 3, H, W), masks (B, H, W) True on padding, targets [B], metas
    # [B])
    loader: Any
    # OnlineTeacher: fills teacher rows per batch; None: the targets carry them
    online: Any = None


@dataclass(frozen=True)
class RunContext:
    """The run around the loop: this process, its stop signal, its last checkpoint, its
    metrics sink.
    """

    world: World
    # checked after every batch, agreed over ranks
    stop: StopFlag
    # the checkpoint a divergence message points to
    last: Path
    # one metrics row per step (rank 0); None: none
    log_row: Callable[[dict], None] | None = None
    show_bar: bool = True  # rank 0 draws the epoch's progress bar


def nonfinite_fields(outputs: StudentOutput) -> list[str]:
    """Names of the model outputs holding a NaN or an infinity (auxiliary layers
    included).
    """
    bad = []
    for name, value in zip(outputs._fields, outputs):
        tensors = (
            [value]
            if torch.is_tensor(value)
            else [t for aux in value for t in aux if torch.is_tensor(t)]
        )
        if any(not bool(torch.isfinite(t).all()) for t in tensors):
            bad.append(name)
    return bad


def diverged_message(
    what: str, epoch: int, iteration: int, metas: list, last: Path
) -> str:
    """The TrainingDiverged text: what went non-finite, where, on which images, and what
    to do.
    """
    return (
        f"{what} became non-finite at epoch {epoch + 1}, iteration {iteration} on"
        f" images {[m.key for m in metas]}. The last good checkpoint {last} is kept;"
        " lower optim.lr or check those images, then --resume."
    )


def as_float32(outputs: StudentOutput) -> StudentOutput:
    """Model outputs in float32 for matching and losses (autocast may give bf16)."""
    return type(outputs)(
        *(
            o.float() if torch.is_tensor(o) else tuple(as_float32(a) for a in o)
            for o in outputs
        )
    )


def _forward_backward(
    student: StudentAndLoss,
    images: torch.Tensor,
    masks: torch.Tensor,
    targets: list,
    use_amp: bool,
    world: World,
    where: tuple[int, int, list, Path],
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """One batch's forward, checks, loss and backward: (weighted loss, terms, matching
    stats).

    where: (epoch, iteration, metas, last checkpoint) for a divergence message.
    """
    epoch, iteration, metas, last = where
    with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
        outputs = student.model(images, masks)
    outputs = as_float32(outputs)
    if nonfinite_fields(outputs):  # checked before matching: scipy refuses NaN costs
        raise TrainingDiverged(
            diverged_message(
                f"model outputs {nonfinite_fields(outputs)}",
                epoch,
                iteration,
                metas,
                last,
            )
        )
    # every loss count averaged over ranks: N processes x B images = 1 x N*B images
    terms, stats = student.criterion(
        outputs, targets, average_counts=lambda c: average_over_ranks(c, world)
    )
    total = weighted_sum(terms, student.weights)
    if not torch.isfinite(total):
        bad = [k for k, v in terms.items() if not torch.isfinite(v)]
        raise TrainingDiverged(
            diverged_message(f"loss (terms {bad})", epoch, iteration, metas, last)
        )
    total.backward()
    return total, terms, stats


def train_one_epoch(
    student: StudentAndLoss,
    optimization: Optimization,
    data: EpochData,
    run: RunContext,
    epoch: int,
    state: TrainState,
) -> None:
    """Train until the loader ends, optim.max_iters is reached, a stop signal arrives or
    a step runs out of memory (then `state.out_of_memory` holds the batch's size and the
    step is not taken).

    `epoch` counts from 0; `state` advances in place (iteration, batch in the epoch, RNG
    to restore).
    """
    model, optimizer, optim = student.model, optimization.optimizer, optimization.config
    world, stop, online = run.world, run.stop, data.online
    use_amp = optim.amp and world.device.startswith("cuda")
    bar = tqdm(
        data.loader,
        desc=f"epoch {epoch + 1}/{optim.epochs}",
        disable=not (world.is_main and run.show_bar),
        leave=False,
        dynamic_ncols=True,
    )
    for images, masks, targets, metas in bar:
        if optim.max_iters and state.iteration >= optim.max_iters:
            break
        # dropout continues where a mid-epoch stop left it
        if state.rng_state is not None:
            torch.set_rng_state(state.rng_state)
            state.rng_state = None
        rng_before = torch.get_rng_state()
        images, masks = images.to(world.device), masks.to(world.device)
        targets = [t.to(world.device) for t in targets]
        if online is not None:
            targets = online.fill(targets, metas)
        optimizer.zero_grad(set_to_none=True)
        try:
            where = (epoch, state.iteration, metas, run.last)
            total, terms, stats = _forward_backward(
                student, images, masks, targets, use_amp, world, where
            )
        except RuntimeError as err:  # torch.OutOfMemoryError is one too
            if not is_out_of_memory(err):
                raise
            # the weights are untouched: the runner saves the position before this
            # batch, as a stop
            state.out_of_memory = (int(images.shape[-2]), int(images.shape[-1]))
            optimizer.zero_grad(set_to_none=True)
            torch.set_rng_state(rng_before)
            break
        if optim.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_max_norm)
        optimizer.step()
        state.iteration += 1
        state.batch_in_epoch += 1
        # the logged numbers are means over ranks (sums for the counters)
        logged = average_over_ranks(
            {
                "loss": float(total.detach()),
                **{k: float(v.detach()) for k, v in terms.items()},
                **{k: float(v) for k, v in stats.items()},
                "teacher_misses": sum(m.teacher_misses for m in metas),
                "candidate_pairs": sum(m.num_pairs for m in metas),
            },
            world,
        )
        if run.log_row is not None:
            run.log_row(
                {
                    "iteration": state.iteration,
                    "epoch": epoch,
                    **logged,
                    "teacher_miss_rate": (
                        logged["teacher_misses"] / max(logged["candidate_pairs"], 1)
                    ),
                    "lr": optimizer.param_groups[0]["lr"],
                    "time": time.time(),
                }
            )
        bar.set_postfix(loss=f"{float(total.detach()):.3f}")
        if average_over_ranks({"stop": float(stop.requested)}, world)["stop"] > 0:
            break  # every rank stops after the same batch
