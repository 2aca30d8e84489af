"""metrics.jsonl rows, and the same rows as TensorBoard scalars when tensorboard is
installed.
"""

from __future__ import annotations

import json

import pytest

from eoid.pipeline.training.metrics import MetricsLog, scalar_tags


def test_scalar_tags_put_validation_under_val_and_leave_out_the_indexing_keys():
    train = {
        "iteration": 3,
        "epoch": 0,
        "time": 1.0,
        "loss": 2.5,
        "loss_verb_distill": 0.0,
        "lr": 1e-4,
    }
    assert scalar_tags(train) == {
        "train/loss": 2.5,
        "train/loss_verb_distill": 0.0,
        "train/lr": 1e-4,
    }
    assert scalar_tags({"epoch": 4, "val_map_full": 31.5, "time": 2.0}) == {
        "val/map_full": 31.5
    }


def test_tensorboard_gets_every_row_indexed_by_iteration_and_metrics_jsonl_stays_the_same(
    tmp_path,
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [
        {"iteration": 1, "epoch": 0, "loss": 3.0, "lr": 0.1, "time": 10.0},
        {"iteration": 2, "epoch": 0, "loss": 2.0, "lr": 0.1, "time": 11.0},
        {"epoch": 0, "val_map_full": 12.5, "time": 12.0},
    ]
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tensorboard")
    for row in rows:
        log.write(row)
    log.close()
    assert [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ] == rows
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (1, 3.0),
        (2, 2.0),
    ]
    # a validation row belongs to the last training step before it
    assert [(e.step, e.value) for e in events.Scalars("val/map_full")] == [(2, 12.5)]


def test_without_a_tensorboard_folder_only_metrics_jsonl_is_written(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"iteration": 1, "loss": 1.0})
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
