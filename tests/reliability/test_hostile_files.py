"""Checkpoints and caches from someone else: nothing in them runs, and a misfit is
refused saying what differs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from eoid.checkpoint import load_checkpoint, save_checkpoint
from eoid.errors import CacheMismatchError, CheckpointError, ConfigError, DataError
from eoid.pipeline.run_train import run_train

from tiny_train import WORLD, train_config


class _RunsCode:
    """Unpickling this calls os.system: what a hostile 'checkpoint' would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Plain:
    def __init__(self):
        self.weights = torch.ones(2)


def _good_checkpoint(path: Path) -> Path:
    save_checkpoint(
        path, model={"w": torch.ones(2)}, config={}, vocabulary={}, epoch=1, iteration=1
    )
    return path


def test_a_checkpoint_whose_unpickling_would_run_a_command_is_refused_without_running_it(
    tmp_path,
):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save(
        {"format": "eoid-checkpoint", "version": 1, "model": _RunsCode(marker)}, path
    )
    with pytest.raises(CheckpointError, match="not a readable eoid checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_checkpoint_holding_a_class_instance_is_refused(tmp_path):
    torch.save(
        {"format": "eoid-checkpoint", "version": 1, "model": _Plain()},
        tmp_path / "obj.pt",
    )
    with pytest.raises(CheckpointError, match="not a readable eoid checkpoint"):
        load_checkpoint(tmp_path / "obj.pt")


@pytest.mark.parametrize("content", [b"garbage\n", None])
def test_a_refused_checkpoint_never_advises_loading_it_with_weights_only_false(
    tmp_path, content
):
    """torch's refusal says re-running with weights_only=False "will likely succeed":
    that runs the file's code, so the one line keeps only the reason."""
    path = tmp_path / "c.pt"
    if content is None:
        torch.save({"format": "eoid-checkpoint", "version": 1, "model": _Plain()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert (
        "weights-only load failed: " in msg and "False" not in msg and "\n" not in msg
    )
    assert ("Unsupported operand" if content else "_Plain") in msg


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_a_truncated_checkpoint_is_refused_saying_it_may_be_truncated(tmp_path, keep):
    data = _good_checkpoint(tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "c.pt")


def test_a_foreign_state_dict_and_another_format_version_are_refused(tmp_path):
    # e.g. a DETR or timm file
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an eoid checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    ckpt = torch.load(_good_checkpoint(tmp_path / "c.pt"), weights_only=True)
    torch.save({**ckpt, "version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "v99.pt")


@pytest.fixture(scope="module")
def one_epoch_run(synth, tmp_path_factory) -> Path:
    return run_train(
        train_config(synth, tmp_path_factory.mktemp("one") / "run", 1), WORLD
    )


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def test_resuming_with_another_vocabulary_is_refused_naming_what_differs(
    synth, one_epoch_run, tmp_path
):
    vocab = json.loads((synth / "vocabulary.json").read_text())
    vocab["verbs"] = vocab["verbs"] + [{"name": "juggle", "phrase": "juggling"}]
    vocab["hois"] = vocab["hois"] + [[len(vocab["verbs"]) - 1, 1]]
    if "verb_ids" in vocab:
        vocab["verb_ids"] = vocab["verb_ids"] + [max(vocab["verb_ids"]) + 1]
    (tmp_path / "other_vocab.json").write_text(json.dumps(vocab))
    out = _copy_run(one_epoch_run, tmp_path / "run")
    cfg = train_config(
        synth, out, 2, f"data.dataset={tmp_path / 'other_vocab.json'}", resume=True
    )
    n = len(vocab["verbs"])
    with pytest.raises(
        CheckpointError, match=f"verbs: checkpoint has {n - 1}, this run {n}"
    ) as err:
        run_train(cfg, WORLD)
    assert "juggle" in str(err.value) and str(out / "checkpoint.pt") in str(err.value)


def test_resuming_with_another_student_is_refused_naming_the_field(
    synth, one_epoch_run, tmp_path
):
    out = _copy_run(one_epoch_run, tmp_path / "run")
    with pytest.raises(
        CheckpointError, match="student.num_queries: checkpoint has 8, this run 12"
    ):
        run_train(
            train_config(synth, out, 2, "student.num_queries=12", resume=True), WORLD
        )


def test_an_edited_checkpoint_is_refused_when_evaluating(one_epoch_run, tmp_path):
    from eoid.pipeline.data.student_models import model_from_checkpoint

    ckpt = load_checkpoint(one_epoch_run / "checkpoint.pt")
    ckpt["model"].pop(next(iter(ckpt["model"])))
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        model_from_checkpoint(tmp_path / "edited.pt", "cpu")


def test_a_checkpoint_recipe_this_eoid_cannot_read_is_refused_naming_the_checkpoint(
    tmp_path,
):
    from eoid.checkpoint import evaluation_recipe

    path = tmp_path / "other.pt"
    save_checkpoint(
        path,
        model={},
        config={"augment": {"test_size": 160, "zoom": 2}},
        vocabulary={},
        epoch=1,
        iteration=1,
    )
    with pytest.raises(ConfigError, match=r"other\.pt \[augment\].*zoom"):
        evaluation_recipe(path)
    save_checkpoint(
        path,
        model={},
        config={"augment": {"test_size": 160}},
        vocabulary={},
        epoch=1,
        iteration=1,
    )
    recipe = evaluation_recipe(path)
    assert recipe["augment"]["test_size"] == 160 and "post" not in recipe


# ------------------------------------------------------------------------------------------
# caches


def _damaged(cache: Path, to: Path) -> Path:
    shutil.copytree(cache, to)
    return to


def test_a_cache_with_a_truncated_shard_file_is_refused(cache, tmp_path):
    from eoid.teacher_cache.lookup import CacheReader

    bad = _damaged(cache, tmp_path / "cache")
    shard = bad / "verb_probs" / "c" / "1" / "0"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CacheMismatchError, match=r"verb_probs/c/1/0 \(changed\)"):
        CacheReader(bad)


def test_a_cache_with_a_lost_shard_file_is_refused_not_read_as_zeros(cache, tmp_path):
    from eoid.teacher_cache.lookup import CacheReader

    bad = _damaged(cache, tmp_path / "cache")
    # zarr alone would return rows 32..47 as zeros
    (bad / "verb_probs" / "c" / "2" / "0").unlink()
    with pytest.raises(CacheMismatchError, match=r"verb_probs/c/2/0 \(missing\)"):
        CacheReader(bad)


def test_a_cache_of_another_vocabulary_is_refused_by_training(synth, cache, tmp_path):
    vocab = json.loads((synth / "vocabulary.json").read_text())
    vocab["verbs"][0]["name"] = "renamed"
    (tmp_path / "v.json").write_text(json.dumps(vocab))
    cfg = train_config(
        synth,
        tmp_path / "run",
        1,
        f"data.dataset={tmp_path / 'v.json'}",
        "loss.distill=1",
    )
    cfg = dataclasses.replace(cfg, cache=str(cache))
    with pytest.raises(CacheMismatchError, match="vocabulary fingerprint: cache has"):
        run_train(cfg, WORLD)


def test_a_cache_of_another_format_version_is_refused(cache, tmp_path):
    from eoid.teacher_cache.lookup import CacheReader

    bad = _damaged(cache, tmp_path / "cache")
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(
        CacheMismatchError,
        match="cache format version 99, this eoid reads version 2. "
        r"Rebuild it with `eoid cache-teacher`\.$",
    ):
        CacheReader(bad)


# --------------------------------------------------------------------- file names
# (readers' tests cover '..' and absolute paths; these are the remaining escapes)


@pytest.mark.parametrize(
    "file_name,words",
    [
        ("..\\..\\etc\\passwd", "backslash"),
        ("C:/Windows/win.ini", "absolute"),
        ("a.png\x00.txt", "NUL"),
        ("images/../../x.png", "'..'"),
    ],
)
def test_file_names_that_could_leave_the_image_folder_are_refused(
    synth, tmp_path, file_name, words
):
    from eoid.pipeline.data.readers import read_annotations
    from eoid.pipeline.data.vocab import load_vocabulary

    records = json.loads((synth / "train.json").read_text())[:2]
    records[1]["file_name"] = file_name
    (tmp_path / "a.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match=f"record 1 .*{words}"):
        read_annotations(
            tmp_path / "a.json",
            synth / "images",
            load_vocabulary(str(synth / "vocabulary.json")),
        )
