"""Corrupt or hostile CLIP weight files and edited eoid checkpoints: one line naming
the file, and nothing in them ever runs (weights_only=True, never a pickle)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from eoid.checkpoint import load_checkpoint
from eoid.errors import CheckpointError, EoidError
from eoid.pipeline.run_train import run_train

from tiny_train import TINY_CLIP, WORLD, train_config


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _garbage(good: Path, bad: Path, marker: Path) -> None:
    bad.write_bytes(os.urandom(4096))


def _truncated_zip(good: Path, bad: Path, marker: Path) -> None:
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def _pickle_with_code(good: Path, bad: Path, marker: Path) -> None:
    torch.save({"visual.proj": _RunsCode(marker)}, bad)


def _safetensors(good: Path) -> bytes:
    from safetensors.torch import save

    return save(
        {k: v.contiguous() for k, v in torch.load(good, weights_only=True).items()}
    )


def _safetensors_bad_header(good: Path, bad: Path, marker: Path) -> None:
    data = _safetensors(good)
    # header length past the file end
    bad.write_bytes(struct.pack("<Q", 1 << 40) + data[8:])


def _safetensors_garbled_header(good: Path, bad: Path, marker: Path) -> None:
    data = bytearray(_safetensors(good))
    # the JSON header is no longer JSON
    data[8:40] = b"#" * 32
    bad.write_bytes(bytes(data))


def _safetensors_truncated(good: Path, bad: Path, marker: Path) -> None:
    data = _safetensors(good)
    bad.write_bytes(data[: len(data) // 2])


def _empty(good: Path, bad: Path, marker: Path) -> None:
    bad.write_bytes(b"")


def _other_architecture(good: Path, bad: Path, marker: Path) -> None:
    state = torch.load(good, weights_only=True)
    # a width this model does not have
    state["visual.proj"] = torch.zeros(3, 3)
    torch.save(state, bad)


HOSTILE = {
    "garbage bytes": (_garbage, ".pt"),
    "truncated zip": (_truncated_zip, ".pt"),
    "pickle that runs a command": (_pickle_with_code, ".pt"),
    "safetensors header length past the end": (_safetensors_bad_header, ".safetensors"),
    "safetensors header not JSON": (_safetensors_garbled_header, ".safetensors"),
    "truncated safetensors": (_safetensors_truncated, ".safetensors"),
    "empty file": (_empty, ".bin"),
    "weights of another architecture": (_other_architecture, ".pt"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_corrupt_or_hostile_clip_weights_file_is_one_line_naming_it(
    clip_weights, tmp_path, kind
):
    from eoid.teacher_cache.teacher import load_teacher

    make, suffix = HOSTILE[kind]
    bad, marker = tmp_path / f"weights{suffix}", tmp_path / "pwned"
    make(clip_weights, bad, marker)
    with pytest.raises(EoidError) as err:
        load_teacher(str(TINY_CLIP), str(bad))
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg
    assert not marker.exists()


# ------------------------------------------------------------------------ eoid
# checkpoints


def _edited(run: Path, to: Path, edit) -> Path:
    ckpt = load_checkpoint(run / "checkpoint.pt")
    edit(ckpt)
    torch.save(ckpt, to)
    return to


def _wrong_shape(ckpt: dict) -> None:
    name = next(k for k, v in ckpt["model"].items() if v.ndim == 2)
    ckpt["model"][name] = torch.zeros(3, 3)


EDITS = {
    "without 'vocabulary'": lambda c: c.pop("vocabulary"),
    "without 'config'": lambda c: c.pop("config"),
    "without 'model'": lambda c: c.pop("model"),
    "with a weight of the wrong shape": _wrong_shape,
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_checkpoint_is_one_line_naming_it_when_evaluating(
    trained_run, tmp_path, edit
):
    from eoid.pipeline.data.student_models import model_from_checkpoint

    path = _edited(trained_run, tmp_path / "edited.pt", EDITS[edit])
    with pytest.raises(CheckpointError) as err:
        model_from_checkpoint(path, "cpu")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_checkpoint_is_one_line_naming_it_when_resuming(
    synth, trained_run, tmp_path, edit
):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out, ignore=shutil.ignore_patterns(".lock"))
    _edited(trained_run, out / "checkpoint.pt", EDITS[edit])
    with pytest.raises(CheckpointError) as err:
        run_train(train_config(synth, out, 2, resume=True), WORLD)
    assert "\n" not in str(err.value) and str(out / "checkpoint.pt") in str(err.value)
