"""SIGINT/SIGTERM stop training at the next batch boundary, save the position, and say
how to resume.

The saved checkpoint records the batches of the interrupted epoch already trained and
the dropout RNG state, so `--resume` neither repeats nor skips a batch: the resumed run
equals an uninterrupted one bit for bit.
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
from eoid.errors import Interrupted, StoppedAtOnce

from tiny_train import (
    ROOT,
    WORLD,
    cache_bytes,
    cache_command,
    losses,
    same_weights,
    subprocess_env,
    train_command,
    train_config,
    weights,
)


def _signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Deliver `signum` to this process while the loss of training step `step` (1-based)
    is computed.
    """
    real, calls = loop.weighted_sum, [0]

    def signalling(terms, loss_weights):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signum)
        return real(terms, loss_weights)

    monkeypatch.setattr(loop, "weighted_sum", signalling)


# 3 batches per epoch: step 5 is batch 2 of epoch 2 (a stop mid-epoch), step 6 its last
# batch
@pytest.mark.parametrize(
    "signum,step,where",
    [
        (signal.SIGINT, 5, "epoch 2, batch 2/3"),
        (signal.SIGTERM, 5, "epoch 2, batch 2/3"),
        (signal.SIGINT, 6, "epoch 2 (iteration 6)"),
    ],
)
def test_a_signal_stops_after_the_current_batch_and_resume_equals_an_uninterrupted_run(
    synth, inprocess_reference, tmp_path, monkeypatch, signum, step, where
):
    out = tmp_path / "run"
    _signal_at_step(monkeypatch, step, signum)
    handler_before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as err:
        rt.run_train(train_config(synth, out, 3), WORLD)
    msg = str(err.value)
    assert signal.Signals(signum).name in msg and where in msg and "--resume" in msg
    ckpt = load_checkpoint(out / "checkpoint.pt")
    # the batch in flight was finished and saved
    assert ckpt["iteration"] == step
    assert ckpt["epoch"] == (1 if step == 5 else 2)  # epochs completed
    assert ckpt["extra"].get("batches_done", 0) == (2 if step == 5 else 0)
    # the caller's handler is back
    assert signal.getsignal(signum) == handler_before
    monkeypatch.undo()
    rt.run_train(train_config(synth, out, 3, resume=True), WORLD)
    assert losses(out) == losses(inprocess_reference)
    assert same_weights(weights(out), weights(inprocess_reference))


def test_sigterm_to_the_process_group_with_loader_workers_exits_143_as_a_saved_run_with_the_resume_hint(  # noqa: E501 (a test name is one word)
    synth, tmp_path
):
    """As a cluster scheduler or Ctrl-C does it: every process of the job gets the
    signal.
    """
    out = tmp_path / "run"
    cmd = train_command(synth, out, 50, "optim.num_workers=1")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while (
        proc.poll() is None
        and len(losses(out) if (out / "metrics.jsonl").exists() else []) < 2
    ):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    # as a shell reports a signalled job
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert (
        "stopped by SIGTERM" in stderr
        and "the run is saved in" in stderr
        and "--resume" in stderr
    )
    assert "Error" not in stderr  # a saved run, not a failure
    # one clear line, not a worker crash
    assert "Traceback" not in stderr
    ckpt = load_checkpoint(out / "checkpoint.pt")
    # every logged step is in the checkpoint
    assert ckpt["iteration"] == len(losses(out)) >= 2
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_naming_it(signum):
    from eoid.stop import StopFlag

    with StopFlag() as stop:
        os.kill(os.getpid(), signum)  # the first: a flag, the work goes on
        assert stop.raised == signal.Signals(signum).name
        with pytest.raises(StoppedAtOnce) as err:
            os.kill(os.getpid(), signum)  # the second: now
    assert err.value.signal_name == signal.Signals(signum).name and isinstance(
        err.value, KeyboardInterrupt
    )


@pytest.mark.parametrize(
    "stop,code",
    [
        (StoppedAtOnce("SIGTERM"), 143),
        (StoppedAtOnce("SIGINT"), 130),
        (KeyboardInterrupt(), 130),
    ],
)
def test_the_cli_exits_128_plus_the_signal_for_a_stop_at_once(stop, code, capsys):
    from eoid.cli_options import saved_on_stop

    @saved_on_stop()
    def command():
        raise stop

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exited:
            command()
    finally:  # the CLI ignores further signals once it exits; this process goes on
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert exited.value.code == code
    assert "what was saved before it is kept" in capsys.readouterr().err


def _signal_twice(proc: subprocess.Popen, signum: int) -> str:
    proc.send_signal(signum)
    time.sleep(0.05)
    proc.send_signal(signum)
    return proc.communicate(timeout=120)[1]


@pytest.mark.slow
def test_sigint_twice_during_cache_teacher_exits_130_and_the_rerun_gives_the_same_bytes(
    synth, clip_weights, cache, tmp_path
):
    out = tmp_path / "cache"
    cmd = cache_command(synth, clip_weights, out)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # in the shard loop
    while proc.poll() is None and not list(out.glob("progress/.shard-*.lock")):
        time.sleep(0.005)
    stderr = _signal_twice(proc, signal.SIGINT)
    # not -2, a raw signal death
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "SIGINT" in stderr
    done = subprocess.run(
        cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert cache_bytes(out) == cache_bytes(cache) and not list(out.rglob(".*"))


@pytest.mark.slow
def test_sigterm_twice_during_training_exits_143_and_keeps_the_checkpoint(
    synth, tmp_path
):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        train_command(synth, out, 50),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while (
        proc.poll() is None
        and len(losses(out) if (out / "metrics.jsonl").exists() else []) < 2
    ):
        time.sleep(0.01)
    stderr = _signal_twice(proc, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]  # not -15
    assert "Traceback" not in stderr and "SIGTERM" in stderr
    if (out / "checkpoint.pt").exists():  # whatever was saved is whole
        assert load_checkpoint(out / "checkpoint.pt")["iteration"] >= 1
    assert not (out / ".lock").exists() and not list(out.glob(".*.tmp-*"))
