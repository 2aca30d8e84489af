"""metrics.jsonl of a run: one JSON row per training iteration or validation, appended
and flushed.

When the `tensorboard` package is installed (`pip install 'eoid[tensorboard]'`), the
same rows also go to RUN/tensorboard/ as scalars (train/loss, train/lr, val/map_full,
...), every one indexed by the training iteration, so `tensorboard --logdir runs` shows
live curves.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import IO, Any

from eoid.files import write_text_atomic, writing

# row keys that index a row rather than measure it
NOT_SCALARS = ("iteration", "epoch", "time")


def tensorboard_available() -> bool:
    """Whether the optional `tensorboard` package is installed (torch's SummaryWriter
    needs it).
    """
    return importlib.util.find_spec("tensorboard") is not None


def scalar_tags(row: dict) -> dict[str, float]:
    """TensorBoard tags of one metrics row: validation keys under val/, the rest under
    train/.
    """
    prefix = "val/" if any(k.startswith("val_") for k in row) else "train/"
    return {
        prefix + k.removeprefix("val_"): float(v)
        for k, v in row.items()
        if k not in NOT_SCALARS
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
    }


class MetricsLog:
    """Appends rows to a run's metrics.jsonl; each row reaches the file before the next
    step.

    `tensorboard`: a folder for TensorBoard scalars (None: metrics.jsonl only).
    `start_iteration`: where a resumed run continues; TensorBoard events a killed run
    wrote after it are dropped, as truncate_metrics drops its rows. A full disk mid-run
    is one line; the checkpoints are kept.
    """

    def __init__(
        self, path: Path, tensorboard: Path | None = None, start_iteration: int = 0
    ):
        self.path = Path(path)
        with writing(self.path, "metrics.jsonl"):
            self._file: IO[str] = open(path, "a")
        self._iteration = start_iteration
        self._board: Any = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(
                str(tensorboard), purge_step=start_iteration + 1, flush_secs=10
            )

    def write(self, row: dict) -> None:
        with writing(self.path, "metrics.jsonl"):
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        if self._board is not None:
            # a validation row has no iteration of its own: it belongs to the last
            # training step
            self._iteration = int(row.get("iteration", self._iteration))
            for tag, value in scalar_tags(row).items():
                self._board.add_scalar(
                    tag, value, self._iteration, walltime=row.get("time")
                )

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()


def truncate_metrics(path: Path, iteration: int, epoch: int) -> None:
    """Drop the rows a killed run wrote after its last checkpoint (they are about to be
    redone).
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        # training rows up to the checkpoint's iteration (it may stop mid-epoch);
        # validation rows of the epochs it completed
        if (
            (row["iteration"] <= iteration)
            if "iteration" in row
            else row.get("epoch", 0) < epoch
        ):
            kept.append(line)
    write_text_atomic(path, "".join(k + "\n" for k in kept))
