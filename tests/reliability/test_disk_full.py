"""Disk full while writing a checkpoint or a cache shard: a clear error, and what was
written before intact."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest
import torch

import eoid.checkpoint as checkpoint_module
from eoid.checkpoint import load_checkpoint, save_checkpoint
from eoid.errors import CheckpointError, EoidError
from eoid.pipeline.run_train import run_train

from tiny_train import (
    ROOT,
    WORLD,
    cache_bytes,
    cache_config,
    losses,
    subprocess_env,
    train_config,
)


def test_a_file_size_limit_hit_mid_checkpoint_is_a_checkpoint_error_and_the_old_file_survives(
    tmp_path,
):
    """A real short write (RLIMIT_FSIZE: the kernel refuses bytes past 1 MB, as a full
    disk does).
    """
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path, model={"w": torch.ones(3)}, config={}, vocabulary={}, epoch=1, iteration=3
    )
    before = path.read_bytes()
    script = f"""
import resource, signal, torch
from pathlib import Path
from eoid.errors import CheckpointError
from eoid.checkpoint import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    save_checkpoint(Path({str(path)!r}), model={{"w": torch.zeros(4, 1 << 20)}}, config={{}},
                    vocabulary={{}}, epoch=2, iteration=6)
except CheckpointError as err:
    print(err)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "could not write the checkpoint" in done.stdout
        and "previous checkpoint is intact" in done.stdout
    )
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    # no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def _no_space_on_save(monkeypatch, on_call: int) -> None:
    """torch.save writes some bytes, then the disk is full (ENOSPC) on its `on_call`-th
    call.
    """
    real, calls = torch.save, [0]

    def full(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == on_call:
            f.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", full)


def test_disk_full_at_an_epoch_checkpoint_stops_training_and_keeps_the_previous_one(
    synth, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    # the checkpoint after epoch 2
    _no_space_on_save(monkeypatch, on_call=2)
    with pytest.raises(CheckpointError, match="No space left on device") as err:
        run_train(train_config(synth, out, 2), WORLD)
    assert "previous checkpoint is intact" in str(err.value)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not list(out.glob(".checkpoint.pt.tmp-*")) and not (out / ".lock").exists()
    monkeypatch.undo()
    # space freed: the run finishes
    run_train(train_config(synth, out, 2, resume=True), WORLD)
    assert [i for i, _ in losses(out)] == list(range(1, 7)) and load_checkpoint(
        out / "checkpoint.pt"
    )["epoch"] == 2


def test_disk_full_while_writing_a_cache_shard_keeps_finished_shards_and_resumes_to_the_same_bytes(
    synth, clip_weights, cache, tmp_path, monkeypatch
):
    import zarr.storage._local as zarr_local

    from eoid.pipeline.run_cache import run_cache
    from eoid.teacher_cache import store

    real = zarr_local._put

    def full(path, value, *args, **kwargs):
        if "verb_probs/c/2" in str(path):  # the third teacher shard
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, value, *args, **kwargs)

    monkeypatch.setattr(zarr_local, "_put", full)
    out = tmp_path / "cache"
    with pytest.raises(
        EoidError,
        match=r"could not write teacher shard 2 \(rows 32:48\) "
        r"\(No space left on device",
    ) as err:
        run_cache(cache_config(synth, clip_weights, out), WORLD)
    assert "run the same command again" in str(err.value)
    # shards written before (or beside, by the background writer) are kept; shard 2 is
    # not marked done
    done = store.done_shards(out)
    assert {0, 1} <= done and 2 not in done and not (out / "manifest.json").exists()
    monkeypatch.undo()
    run_cache(cache_config(synth, clip_weights, out), WORLD)
    assert cache_bytes(out) == cache_bytes(cache)


def test_disk_full_while_writing_a_cache_file_leaves_no_temporary_file(
    tmp_path, monkeypatch
):
    from eoid import files
    from eoid.files import read_json, write_json_atomic

    write_json_atomic(tmp_path / "manifest.json", {"ok": 1})
    monkeypatch.setattr(files.os, "fsync", _raise_enospc)
    with pytest.raises(EoidError, match="No space left"):
        write_json_atomic(tmp_path / "manifest.json", {"ok": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert read_json(tmp_path / "manifest.json") == {"ok": 1}


def _raise_enospc(*args):
    raise OSError(errno.ENOSPC, "No space left on device")
