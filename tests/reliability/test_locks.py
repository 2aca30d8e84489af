"""One writer per run folder: a second `eoid train` is refused naming the holder; a
dead holder's lock is broken."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from eoid.errors import LockedError
from eoid.locks import FolderLock
from eoid.pipeline.run_train import run_train

from tiny_train import WORLD, run_cli, train_command, train_config


def test_a_second_eoid_train_on_a_live_run_folder_is_refused_naming_pid_and_host(
    synth, tmp_path
):
    out = tmp_path / "run"
    out.mkdir()
    with FolderLock(out / ".lock"):  # this test process is the live first writer
        done = run_cli(train_command(synth, out, 1, resume=True))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("Error:")
        and f"pid {os.getpid()} on {socket.gethostname()}" in last
    )
    assert "Traceback" not in done.stderr and not (out / "checkpoint.pt").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_is_broken_with_a_warning(
    synth, tmp_path, caplog
):
    out = tmp_path / "run"
    out.mkdir()
    pid = _dead_pid()
    (out / ".lock").write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "since": 0})
    )
    caplog.set_level(logging.WARNING)
    run_train(train_config(synth, out, 1), WORLD)
    assert f"removing the stale lock of pid {pid}" in caplog.text
    assert (out / "checkpoint.pt").exists() and not (out / ".lock").exists()


def test_a_lock_from_another_host_needs_break_lock(synth, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(
        json.dumps({"pid": 1234, "host": "node-17.cluster", "since": 0})
    )
    with pytest.raises(
        LockedError, match="pid 1234 on another host node-17.cluster.*--break-lock"
    ):
        run_train(train_config(synth, out, 1), WORLD)
    assert not (out / "checkpoint.pt").exists()
    cfg = train_config(synth, out, 1)
    run_train(dataclasses.replace(cfg, break_lock=True), WORLD)
    assert (out / "checkpoint.pt").exists()
