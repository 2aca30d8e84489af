"""The results of a training run: its selected checkpoint (the best on validation, else
the last) scored on the test set once, at the end, into results.json (whose meta says
how many training images the run used), and the summary a finished run prints: the
selected epoch and, if scored, the test-set table.
"""

from __future__ import annotations

import json
from pathlib import Path

from eoid.checkpoint import load_checkpoint
from eoid.config import TrainConfig
from eoid.devices import World
from eoid.pipeline.evaluation.predictions_io import format_table
from eoid.pipeline.evaluation.scoring import evaluate_checkpoint


def finish(
    cfg: TrainConfig, out: Path, world: World, train_images: int, progress: bool = True
) -> None:
    """Evaluate the selected checkpoint on the test set, once, at the end;
    results.json's meta says how many training images the run used (data.fraction of
    them)."""
    if not cfg.data.test_annotations:
        return
    chosen = (
        out / "checkpoint_best.pt"
        if (out / "checkpoint_best.pt").exists()
        else out / "checkpoint.pt"
    )
    evaluate_checkpoint(
        chosen,
        cfg.data,
        cfg.augment,
        cfg.post,
        out,
        world.device,
        progress=progress,
        meta={"train_images": train_images, "data_fraction": cfg.data.fraction},
    )


def run_summary(out: Path) -> str:
    """What a finished run printed at its end: the selected epoch and, if scored, the
    test-set table.
    """
    checkpoint = out / "checkpoint_best.pt"
    lines = []
    if checkpoint.exists():
        best = load_checkpoint(checkpoint, mmap=True)["extra"].get("best", {})
        score = percent(best.get("score"))
        lines.append(
            f"selected: epoch {best.get('epoch')} (validation mAP, Full: {score} %),"
            f" {checkpoint}"
        )
    else:
        lines.append(
            f"selected: the last epoch (no validation split), {out / 'checkpoint.pt'}"
        )
    if (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
        lines += [
            "test set:",
            format_table(results),
            f"results: {out / 'results.json'}",
        ]
    return "\n".join(lines + [f"run: {out}"])


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
