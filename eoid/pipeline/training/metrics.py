"""metrics.jsonl of a run: one JSON row per training iteration or validation, appended and flushed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from eoid.files import write_text_atomic, writing


class MetricsLog:
    """Appends rows to a run's metrics.jsonl; each row reaches the file before the next step."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with writing(self.path, "metrics.jsonl"):
            self._file: IO[str] = open(path, "a")

    def write(self, row: dict) -> None:
        with writing(self.path, "metrics.jsonl"):    # disk full mid-run: one line, checkpoints kept
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def truncate_metrics(path: Path, iteration: int, epoch: int) -> None:
    """Drop the rows a killed run wrote after its last checkpoint (they are about to be redone)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        # training rows up to the checkpoint's iteration (it may stop mid-epoch); validation rows
        # of the epochs it completed
        if (row["iteration"] <= iteration) if "iteration" in row else row.get("epoch", 0) < epoch:
            kept.append(line)
    write_text_atomic(path, "".join(k + "\n" for k in kept))
