"""Out of memory during training: one line naming the batch, the image size and the
preset; the position before the failed batch is saved, and --resume ends with the
uninterrupted weights."""

from __future__ import annotations

import pytest
import torch

from eoid.checkpoint import load_checkpoint
from eoid.pipeline import run_train as run_train_module
from eoid.pipeline.run_train import run_train
from eoid.pipeline.training import loop
from eoid.pipeline.training.memory import OutOfMemory, is_out_of_memory
from eoid.pipeline.training.resume import batches_done

from tiny_train import WORLD, losses, same_weights, train_config, weights

CPU_OOM = RuntimeError(
    "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: "
    "you tried to allocate 9544371200 bytes."
)
CUDA_OOM = torch.OutOfMemoryError(
    "CUDA out of memory. Tried to allocate 8.89 GiB. GPU 0 has a total "
    "capacity of 23.6 GiB of which 2.1 GiB is free."
)


def _fail_at_step(monkeypatch, step: int, error: BaseException) -> None:
    """The loss of training step `step` (1-based) raises `error`, as an allocation
    would.
    """
    real, calls = loop.weighted_sum, []

    def weighted_sum(terms, weights):
        calls.append(1)
        if len(calls) == step:
            raise error
        return real(terms, weights)

    monkeypatch.setattr(loop, "weighted_sum", weighted_sum)


def test_the_errors_torch_raises_when_memory_runs_out_are_recognised():
    assert is_out_of_memory(CPU_OOM) and is_out_of_memory(CUDA_OOM)
    assert is_out_of_memory(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ...")
    )
    assert not is_out_of_memory(
        RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    )


@pytest.mark.parametrize("error", [CPU_OOM, CUDA_OOM], ids=["cpu", "cuda"])
def test_an_oom_mid_epoch_is_one_line_and_resume_ends_with_the_uninterrupted_run(
    synth, inprocess_reference, tmp_path, monkeypatch, error
):
    # 12 images in batches of 4: 3 steps per epoch; step 5 is epoch 2, batch 2
    out = tmp_path / "run"
    _fail_at_step(monkeypatch, 5, error)
    with pytest.raises(OutOfMemory) as err:
        run_train(train_config(synth, out, 3), WORLD)
    message = str(err.value)
    assert "\n" not in message
    for part in (
        "epoch 2, batch 2/3",
        "optim.batch_size 4",
        "px padded batch",
        "student.preset 'tiny'",
        "saved before that batch (iteration 4)",
        "--resume",
    ):
        assert part in message, part
    saved = load_checkpoint(out / "checkpoint.pt")
    assert (saved["epoch"], saved["iteration"], saved["extra"]["batches_done"]) == (
        1,
        4,
        1,
    )

    monkeypatch.undo()
    run_train(train_config(synth, out, 3, resume=True), WORLD)
    assert losses(out) == losses(inprocess_reference)
    assert same_weights(weights(out), weights(inprocess_reference))


def test_an_oom_at_the_first_step_writes_no_checkpoint_and_says_nothing_was_trained(
    synth, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    _fail_at_step(monkeypatch, 1, CPU_OOM)
    with pytest.raises(OutOfMemory, match="Nothing was trained yet"):
        run_train(train_config(synth, out, 1), WORLD)
    assert not (out / "checkpoint.pt").exists()


def test_an_oom_outside_a_step_is_one_line_and_keeps_the_last_checkpoint(
    synth, tmp_path, monkeypatch
):
    out = tmp_path / "run"

    def validate(*args, **kwargs):
        raise CPU_OOM

    monkeypatch.setattr(run_train_module, "_validate", validate)
    with pytest.raises(OutOfMemory, match="last checkpoint .* is kept") as err:
        run_train(train_config(synth, out, 1, "data.val_fraction=0.25"), WORLD)
    assert "student.preset 'tiny'" in str(err.value) and "\n" not in str(err.value)


def test_a_resume_with_a_smaller_batch_goes_on_from_the_same_image():
    # 3 batches of 4 done = 12 images; with batches of 2 that is 6 batches, with batches
    # of 5, 2 (8 images: 4 are trained again rather than skipped)
    ckpt = {"config": {"optim": {"batch_size": 4}}, "extra": {"batches_done": 3}}
    assert (
        batches_done(ckpt, 2) == 6
        and batches_done(ckpt, 5) == 2
        and batches_done(ckpt, 4) == 3
    )
