"""Rerunning a run folder: a finished run is never rewritten, a longer run trains on,
and a --resume with nothing to resume says so."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from eoid.checkpoint import load_checkpoint
from eoid.cli import main
from eoid.errors import ConfigError
from eoid.pipeline.run_train import run_train

from tiny_train import WORLD, train_command, train_config


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time: 'touched no file'."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


@pytest.mark.parametrize("resume", [True, False])
def test_rerunning_a_finished_run_changes_no_file(
    synth, trained_run, tmp_path, caplog, resume
):
    out = _copy(trained_run, tmp_path / "run")
    before = _files(out)
    with caplog.at_level(logging.INFO, logger="eoid"):
        assert run_train(train_config(synth, out, 1, resume=resume), WORLD) == out
    assert _files(out) == before
    assert "is finished (epoch 1 of 1" in caplog.text


def test_the_finished_run_command_prints_the_summary_and_exits_0(
    synth, trained_run, tmp_path
):
    out = _copy(trained_run, tmp_path / "run")
    before = _files(out)
    result = CliRunner().invoke(main, train_command(synth, out, 1, resume=True)[3:])
    assert result.exit_code == 0, result.output
    assert (
        "selected: the last epoch" in result.output and f"run: {out}" in result.output
    )
    assert _files(out) == before


def test_a_run_with_a_test_set_scores_it_once_and_a_rerun_leaves_results_json(
    synth, trained_run, tmp_path
):
    # the copied run trained every epoch but has no results.json (no test set then):
    # finishing it scores the test set; the next rerun finds it finished and rewrites
    # nothing
    out = _copy(trained_run, tmp_path / "run")
    test = (
        f"data.test_annotations={synth / 'test.json'}",
        f"data.test_images={synth / 'images'}",
    )
    run_train(
        train_config(synth, out, 1, *test, "allow_changes=true", resume=True), WORLD
    )
    assert (out / "results.json").is_file()
    before = _files(out)
    run_train(
        train_config(synth, out, 1, *test, "allow_changes=true", resume=True), WORLD
    )
    assert _files(out) == before


def test_a_finished_run_asked_for_more_epochs_trains_on(synth, trained_run, tmp_path):
    out = _copy(trained_run, tmp_path / "run")
    run_train(train_config(synth, out, 2, resume=True), WORLD)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_a_finished_run_with_other_values_and_no_resume_is_still_refused(
    synth, trained_run, tmp_path
):
    out = _copy(trained_run, tmp_path / "run")
    before = _files(out)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_train(train_config(synth, out, 1, "optim.lr=2e-4"), WORLD)
    assert _files(out) == before


def test_resume_on_a_new_folder_says_there_is_nothing_to_resume_and_starts(
    synth, tmp_path, caplog
):
    out = tmp_path / "new"
    with caplog.at_level(logging.WARNING, logger="eoid"):
        run_train(train_config(synth, out, 1, resume=True), WORLD)
    assert (
        "holds no checkpoint.pt, so there is nothing to resume: starting a new run"
        in caplog.text
    )
    assert (out / "checkpoint.pt").is_file()
