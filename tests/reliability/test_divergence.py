"""A NaN or infinite loss stops training with the batch's image keys named; the last
good checkpoint stays.
"""

from __future__ import annotations

import pytest
import torch

from eoid.checkpoint import load_checkpoint
from eoid.errors import TrainingDiverged
from eoid.pipeline.run_train import run_train
from eoid.pipeline.training import dataset as train_data

from tiny_train import WORLD, train_config

POISONED = "train_000003.png"


def _poison_image_in_epoch(monkeypatch, epoch: int, value: float) -> None:
    """The image POISONED carries `value` in every pixel from epoch `epoch` on (a broken
    decoder, say).
    """
    real = train_data.TrainDataset.__getitem__

    def poisoned(self, index):
        image, targets, meta = real(self, index)
        if meta.key == POISONED and self.epoch >= epoch:
            image = torch.full_like(image, value)
        return image, targets, meta

    monkeypatch.setattr(train_data.TrainDataset, "__getitem__", poisoned)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_image_stops_training_naming_its_batch_and_keeps_the_epoch_checkpoint(
    synth, tmp_path, monkeypatch, value
):
    _poison_image_in_epoch(monkeypatch, epoch=1, value=value)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        run_train(train_config(synth, out, 3), WORLD)
    msg = str(err.value)
    # the batch holding the poisoned image is named, and where to resume from
    assert (
        POISONED in msg
        and "epoch 2" in msg
        and str(out / "checkpoint.pt") in msg
        and "--resume" in msg
    )
    ckpt = load_checkpoint(out / "checkpoint.pt")
    # the end of epoch 1, untouched
    assert ckpt["epoch"] == 1 and ckpt["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    # the run folder is free again
    assert not (out / ".lock").exists()


def test_a_nan_loss_term_stops_training_before_the_optimizer_step(
    synth, tmp_path, monkeypatch
):
    import eoid.pipeline.training.loop as loop

    real, calls = loop.weighted_sum, [0]

    def nan_on_fifth(terms, weights):
        calls[0] += 1
        total = real(terms, weights)
        return total * float("nan") if calls[0] == 5 else total

    monkeypatch.setattr(loop, "weighted_sum", nan_on_fifth)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="iteration 4 on images") as err:
        run_train(train_config(synth, out, 3), WORLD)
    # the four images of that batch
    assert err.value.args[0].count(".png") == 4
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    # no NaN row was logged, and the model state of the checkpoint is finite
    assert all(
        "nan" not in line.lower()
        for line in (out / "metrics.jsonl").read_text().splitlines()
    )
