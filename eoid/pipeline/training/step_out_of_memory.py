"""The one line a training run stops with when a training step runs out of memory: where
(epoch and batch), what was saved (nothing yet, or the run up to the batch before, in
checkpoint.pt, to resume from) and what to change (memory.out_of_memory_message).
"""

from __future__ import annotations

from pathlib import Path

from eoid.config import TrainConfig
from eoid.devices import World
from eoid.pipeline.training.loop import TrainState
from eoid.pipeline.training.memory import out_of_memory_message


def step_out_of_memory(
    cfg: TrainConfig,
    world: World,
    out: Path,
    state: TrainState,
    epoch: int,
    batches: int,
) -> str:
    """The one line for a training step that ran out of memory (what was saved, what to
    change).
    """
    where = f"at epoch {epoch + 1}, batch {state.batch_in_epoch + 1}/{batches}"
    if state.iteration == 0:
        saved = "Nothing was trained yet; rerun with the changes below."
    else:
        saved = (
            f"The run is saved before that batch (iteration {state.iteration}) in "
            f"{out / 'checkpoint.pt'}."
        )
    return out_of_memory_message(cfg, world.device, where, state.out_of_memory, saved)
