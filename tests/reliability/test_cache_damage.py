"""A damaged teacher cache is refused by `eoid cache verify` and by `eoid train`
(before any step), in one line that names the cache: the manifest's checksums prove
every file's bytes, and every row must be a distribution (finite, summing to 1 over
the verbs valid for its object)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from eoid.errors import CacheMismatchError
from eoid.pipeline.run_cache_verify import run_verify
from eoid.pipeline.run_train import run_train

from tiny_train import WORLD, cache_config, train_config


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _reorder_keys(meta: dict) -> None:
    keys = meta["image_keys"]
    keys[0], keys[1] = keys[1], keys[0]


def _narrower_verb_probs(array: dict) -> None:
    array["shape"][1] -= 1


DAMAGE = {
    "flipped byte in a verb_probs chunk": lambda c: _flip_byte(
        c / "verb_probs" / "c" / "1" / "0"
    ),
    "zero-byte verb_probs chunk": (
        lambda c: (c / "verb_probs" / "c" / "2" / "0").write_bytes(b"")
    ),
    "two verb_probs chunks swapped": lambda c: _swap(
        c / "verb_probs" / "c" / "0" / "0", c / "verb_probs" / "c" / "1" / "0"
    ),
    "two human_xyxy chunks swapped": lambda c: _swap(
        c / "human_xyxy" / "c" / "0" / "0", c / "human_xyxy" / "c" / "1" / "0"
    ),
    "image_keys reordered in meta.json": lambda c: _edit_json(
        c / "meta.json", _reorder_keys
    ),
    "meta.json deleted": lambda c: (c / "meta.json").unlink(),
    "manifest.json truncated": (
        lambda c: (c / "manifest.json").write_bytes(
            (c / "manifest.json").read_bytes()[:100]
        )
    ),
    "manifest.json without fingerprint": lambda c: _edit_json(
        c / "manifest.json", lambda m: m.pop("fingerprint")
    ),
    "verb_probs shape edited in zarr.json": lambda c: _edit_json(
        c / "verb_probs" / "zarr.json", _narrower_verb_probs
    ),
    "verb_probs zarr.json deleted": lambda c: (c / "verb_probs" / "zarr.json").unlink(),
}


@pytest.fixture
def damaged(cache, tmp_path, request) -> Path:
    bad = tmp_path / "cache"
    shutil.copytree(cache, bad)
    DAMAGE[request.param](bad)
    return bad


def _refused_in_one_line(call) -> str:
    with pytest.raises(CacheMismatchError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("damaged", sorted(DAMAGE), indirect=True)
def test_cache_verify_refuses_a_damaged_cache(damaged):
    msg = _refused_in_one_line(lambda: run_verify(damaged))
    assert str(damaged) in msg


def _train_on(synth: Path, cache: Path, out: Path):
    cfg = train_config(synth, out, 1, "loss.distill=1")
    return lambda: run_train(dataclasses.replace(cfg, cache=str(cache)), WORLD)


@pytest.mark.parametrize("damaged", sorted(DAMAGE), indirect=True)
def test_training_refuses_a_damaged_cache_before_any_step(synth, damaged, tmp_path):
    msg = _refused_in_one_line(_train_on(synth, damaged, tmp_path / "run"))
    assert str(damaged) in msg
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_cache_verify_refuses_damaged_image_embeddings_that_training_never_reads(
    cache, tmp_path
):
    bad = tmp_path / "cache"
    shutil.copytree(cache, bad)
    _flip_byte(bad / "image_emb" / "c" / "1" / "0")
    msg = _refused_in_one_line(lambda: run_verify(bad))
    assert "image_emb/c/1/0" in msg


def test_a_cache_written_before_checksums_is_refused_with_the_rebuild_command(
    cache, tmp_path
):
    old = tmp_path / "cache"
    shutil.copytree(cache, old)

    def as_version_1(manifest: dict) -> None:
        manifest.pop("checksums", None)
        manifest["format_version"] = manifest["fingerprint"]["format_version"] = 1

    _edit_json(old / "manifest.json", as_version_1)
    msg = _refused_in_one_line(lambda: run_verify(old))
    assert "eoid cache-teacher" in msg and "version 1" in msg


def test_the_manifest_lists_a_checksum_for_every_array_file(cache):
    listed = set(json.loads((cache / "manifest.json").read_text())["checksums"])
    arrays = {
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.is_file()
        and p.parts[len(cache.parts)] not in ("progress", "partial")
        and not p.name.startswith(".")
        and p.name not in ("manifest.json", "plan.json")
    }
    assert arrays and arrays <= listed


# --- rows that are not distributions, written with valid checksums (a teacher bug or a
# NaN gamma) ---


def _nan_rows(probs: torch.Tensor, no_interaction: int) -> torch.Tensor:
    probs = probs.clone()
    probs[1] = float("nan")
    return probs


def _half_mass(probs: torch.Tensor, no_interaction: int) -> torch.Tensor:
    return probs * 0.5


def _mass_on_an_invalid_verb(probs: torch.Tensor, no_interaction: int) -> torch.Tensor:
    probs = probs.clone()
    # the teacher never gives no_interaction mass
    probs[:, no_interaction] = 1.0
    return probs / probs.sum(1, keepdim=True)


BAD_ROWS = {
    "NaN rows": (_nan_rows, "finite"),
    "rows summing to 0.5": (_half_mass, "sum"),
    "mass on a verb the teacher excludes": (_mass_on_an_invalid_verb, "verb"),
}


@pytest.fixture(scope="module", params=sorted(BAD_ROWS))
def bad_rows_cache(request, synth, clip_weights, tmp_path_factory) -> tuple[Path, str]:
    import eoid.teacher_cache.writer as writer
    from eoid.pipeline.run_cache import run_cache

    corrupt, words = BAD_ROWS[request.param]
    verbs = [
        v["name"] for v in json.loads((synth / "vocabulary.json").read_text())["verbs"]
    ]
    real = writer.pair_verb_probs
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            writer,
            "pair_verb_probs",
            lambda *a, **k: corrupt(real(*a, **k), verbs.index("no_interaction")),
        )
        out = run_cache(
            cache_config(synth, clip_weights, tmp_path_factory.mktemp("rows") / "c"),
            WORLD,
        )
    return out, words


def test_cache_verify_refuses_rows_that_are_not_distributions(bad_rows_cache):
    cache, words = bad_rows_cache
    assert words in _refused_in_one_line(lambda: run_verify(cache))


def test_training_refuses_rows_that_are_not_distributions(
    synth, bad_rows_cache, tmp_path
):
    cache, words = bad_rows_cache
    assert words in _refused_in_one_line(_train_on(synth, cache, tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_an_annotation_file_without_records_builds_no_cache(
    synth, clip_weights, tmp_path
):
    from eoid.errors import DataError
    from eoid.pipeline.run_cache import run_cache

    (tmp_path / "empty.json").write_text("[]")
    cfg = cache_config(synth, clip_weights, tmp_path / "cache")
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, train_annotations=str(tmp_path / "empty.json")
        ),
    )
    with pytest.raises(DataError, match="no records"):
        run_cache(cfg, WORLD)
    assert not (tmp_path / "cache" / "manifest.json").exists()


def test_cache_inspect_creates_the_folder_of_its_png(cache, tmp_path):
    from eoid.pipeline.run_cache_inspect import run_inspect

    png = tmp_path / "new" / "dir" / "grid.png"
    run_inspect(cache, png, num_samples=4)
    assert png.is_file()
