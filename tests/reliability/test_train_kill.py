"""SIGKILL `eoid train` at random moments; rerunning the same command ends where an
uninterrupted run ends.

A kill leaves at most the last complete checkpoint (written to a temporary name,
fsynced, renamed) and a metrics.jsonl with rows past it; the rerun drops those rows,
redoes the lost iterations with the same data order, augmentation and dropout, and so
reproduces the losses and the final weights bit for bit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_train import (
    ROOT,
    losses,
    same_weights,
    subprocess_env,
    train_command,
    weights,
)

EPOCHS = 3  # 3 batches per epoch: 9 iterations
ITERATIONS = 9


def _logged_rows(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_the_same_command_ends_with_the_uninterrupted_losses_and_weights(  # noqa: E501 (a test name is one word)
    synth, reference_run, tmp_path
):
    out = tmp_path / "run"
    # the one command a user reruns
    cmd = train_command(synth, out, EPOCHS, resume=True)
    rng = np.random.default_rng(8)
    # kill after 0 (still starting), then after a random number of logged iterations,
    # plus a random delay
    targets = [0] + sorted(rng.integers(1, ITERATIONS - 2, size=2).tolist())
    killed_at = []
    for target in targets:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None and _logged_rows(out) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(_logged_rows(out))
        # whatever a kill leaves is a complete checkpoint
        if (out / "checkpoint.pt").exists():
            assert (
                torch.load(out / "checkpoint.pt", weights_only=True)["format"]
                == "eoid-checkpoint"
            )
    assert sum(0 < k < ITERATIONS for k in killed_at) >= 1, (
        f"no kill landed mid-training: {killed_at}"
    )
    done = subprocess.run(
        cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert losses(out) == losses(reference_run), killed_at
    assert same_weights(weights(out), weights(reference_run)), killed_at


def test_a_kill_while_the_checkpoint_is_written_leaves_the_previous_checkpoint_loadable(
    tmp_path,
):
    from eoid.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path, model={"w": torch.ones(3)}, config={}, vocabulary={}, epoch=1, iteration=3
    )
    # a child writes a much bigger checkpoint over it and is killed as soon as its
    # temporary file appears
    script = (
        "import torch; from eoid.checkpoint import save_checkpoint;"
        f" save_checkpoint(__import__('pathlib').Path({str(path)!r}), model={{'w':"
        " torch.zeros(64, 1024, 1024)}, config={}, vocabulary={}, epoch=2,"
        " iteration=6)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=subprocess_env()
    )
    while proc.poll() is None and not list(tmp_path.glob(".checkpoint.pt.tmp-*")):
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        "the writer finished before the kill: make it bigger"
    )
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["model"]["w"], torch.ones(3))
