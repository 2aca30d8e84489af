"""A run folder keeps its history: a refused --resume changes no file, a resume that
changes a hyper-parameter needs --allow-changes and is then recorded with the epoch
it took effect, and no checkpoint ever holds non-finite weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from eoid.checkpoint import load_checkpoint, save_checkpoint
from eoid.config import TrainConfig
from eoid.config_loading import load_config
from eoid.errors import CheckpointError, ConfigError, TrainingDiverged
from eoid.pipeline.run_train import run_train

from tiny_train import WORLD, train_config


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "change,error",
    [
        ("student.num_queries=12", CheckpointError),
        ("optim.lr=2e-4", ConfigError),
        ("loss.giou=2", ConfigError),
    ],
)
def test_a_refused_resume_leaves_every_file_of_the_run_unchanged(
    synth, trained_run, tmp_path, change, error
):
    out = _copy_run(trained_run, tmp_path / "run")
    before = _files(out)
    with pytest.raises(error):
        run_train(train_config(synth, out, 2, change, resume=True), WORLD)
    assert _files(out) == before


def test_a_resume_that_changes_a_hyper_parameter_names_it_and_the_flag(
    synth, trained_run, tmp_path
):
    out = _copy_run(trained_run, tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        run_train(train_config(synth, out, 2, "optim.lr=2e-4", resume=True), WORLD)
    msg = str(err.value)
    assert (
        "optim.lr" in msg
        and "0.0001" in msg
        and "0.0002" in msg
        and "--allow-changes" in msg
    )
    assert "\n" not in msg


def test_allow_changes_records_the_change_and_the_epoch_it_took_effect_without_rewriting_the_original(  # noqa: E501 (a test name is one word)
    synth, trained_run, tmp_path
):
    out = _copy_run(trained_run, tmp_path / "run")
    original = (out / "config.toml").read_text()
    run_train(
        train_config(synth, out, 2, "optim.lr=2e-4", "allow_changes=true", resume=True),
        WORLD,
    )
    rows = [
        json.loads(line)
        for line in (out / "config_changes.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 1
    assert rows[0]["from_epoch"] == 2 and rows[0]["iteration"] == 3
    # a longer run, recorded
    assert rows[0]["changes"] == {
        "optim.epochs": {"was": 1, "now": 2},
        "optim.lr": {"was": 1e-4, "now": 2e-4},
    }
    config = (out / "config.toml").read_text()
    # the original values stay
    assert config.startswith(original)
    assert load_config(TrainConfig, out / "config.toml").optim.lr == 1e-4
    assert (
        "optim.lr" in config[len(original) :] and "epoch 2" in config[len(original) :]
    )
    assert load_checkpoint(out / "checkpoint.pt")["config"]["optim"]["lr"] == 2e-4


def test_a_resume_that_changes_only_how_the_run_is_executed_needs_no_flag(
    synth, trained_run, tmp_path
):
    out = _copy_run(trained_run, tmp_path / "run")
    run_train(train_config(synth, out, 1, "optim.num_workers=1", resume=True), WORLD)
    assert not (out / "config_changes.jsonl").exists()


def test_no_checkpoint_is_written_with_non_finite_weights(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path, model={"w": torch.ones(3)}, config={}, vocabulary={}, epoch=1, iteration=3
    )
    before = path.read_bytes()
    with pytest.raises(TrainingDiverged, match=r"'w'.*non-finite"):
        save_checkpoint(
            path,
            model={"w": torch.tensor([1.0, float("nan"), 2.0])},
            config={},
            vocabulary={},
            epoch=2,
            iteration=6,
        )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
