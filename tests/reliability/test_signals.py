"""SIGINT/SIGTERM stop training at the next batch boundary, save the position, and say how to resume.

The saved checkpoint records the batches of the interrupted epoch already trained and the dropout
RNG state, so `--resume` neither repeats nor skips a batch: the resumed run equals an
uninterrupted one bit for bit.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import eoid.pipeline.run_train as rt
import eoid.pipeline.training.loop as loop
from eoid.checkpoint import load_checkpoint
from eoid.errors import Interrupted

from tiny_train import ROOT, WORLD, losses, same_weights, subprocess_env, train_command, train_config, weights


def _signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Deliver `signum` to this process while the loss of training step `step` (1-based) is computed."""
    real, calls = loop.weighted_sum, [0]

    def signalling(terms, loss_weights):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signum)
        return real(terms, loss_weights)
    monkeypatch.setattr(loop, "weighted_sum", signalling)


# 3 batches per epoch: step 5 is batch 2 of epoch 2 (a stop mid-epoch), step 6 its last batch
@pytest.mark.parametrize("signum,step,where", [(signal.SIGINT, 5, "epoch 2, batch 2/3"),
                                               (signal.SIGTERM, 5, "epoch 2, batch 2/3"),
                                               (signal.SIGINT, 6, "epoch 2 (iteration 6)")])
def test_a_signal_stops_after_the_current_batch_and_resume_equals_an_uninterrupted_run(
        synth, inprocess_reference, tmp_path, monkeypatch, signum, step, where):
    out = tmp_path / "run"
    _signal_at_step(monkeypatch, step, signum)
    handler_before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as err:
        rt.run_train(train_config(synth, out, 3), WORLD)
    msg = str(err.value)
    assert signal.Signals(signum).name in msg and where in msg and "--resume" in msg
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["iteration"] == step                       # the batch in flight was finished and saved
    assert ckpt["epoch"] == (1 if step == 5 else 2)        # epochs completed
    assert ckpt["extra"].get("batches_done", 0) == (2 if step == 5 else 0)
    assert signal.getsignal(signum) == handler_before      # the caller's handler is back
    monkeypatch.undo()
    rt.run_train(train_config(synth, out, 3, resume=True), WORLD)
    assert losses(out) == losses(inprocess_reference)
    assert same_weights(weights(out), weights(inprocess_reference))


def test_sigterm_to_the_process_group_with_loader_workers_exits_143_as_a_saved_run_with_the_resume_hint(
        synth, tmp_path):
    """As a cluster scheduler or Ctrl-C does it: every process of the job gets the signal."""
    out = tmp_path / "run"
    cmd = train_command(synth, out, 50, "optim.num_workers=1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    while proc.poll() is None and len(losses(out) if (out / "metrics.jsonl").exists() else []) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]   # as a shell reports a signalled job
    assert "stopped by SIGTERM" in stderr and "the run is saved in" in stderr and "--resume" in stderr
    assert "Error" not in stderr                            # a saved run, not a failure
    assert "Traceback" not in stderr                        # one clear line, not a worker crash
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["iteration"] == len(losses(out)) >= 2      # every logged step is in the checkpoint
    assert not (out / ".lock").exists()
