"""Broken records: a clear error naming the record, or with skip_bad a skipped record
counted and listed.

The synthetic training set (12 images) gets one broken record at a time. Without
skip_bad the run stops with the record's file_name (the reader's problems also with its
index, before any training); with skip_bad it trains on the other 11 with their labels
unchanged and lists the broken one in RUN/bad_records.json. Decision: with skip_bad the
reader decodes every image in full, so an image whose header is fine but whose pixels
are truncated is skipped up front too; without it the header is read only and such an
image stops training, naming the record, when the loader first decodes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eoid.errors import ConfigError, DataError
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_train import run_train

from tiny_train import WORLD, train_config

BROKEN = 5  # the record index that gets broken


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height px (no pixel data): a decompression bomb's
    header.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def _truncated(path: Path, fmt: str) -> bytes:
    buf = __import__("io").BytesIO()
    Image.open(path).convert("RGB").save(buf, format=fmt)
    return buf.getvalue()[: len(buf.getvalue()) * 2 // 3]


def _break(kind: str, rec: dict, images: Path) -> None:
    """Damage record `rec` (and its image, a private copy) in the way `kind` names."""
    img = images / rec["file_name"]
    boxes = rec["annotations"]
    if kind == "truncated_png":
        img.write_bytes(_truncated(img, "PNG"))
    elif kind == "truncated_jpeg":
        rec["file_name"] = img.with_suffix(".jpg").name
        (images / rec["file_name"]).write_bytes(_truncated(img, "JPEG"))
    elif kind == "garbage_image":
        img.write_bytes(b"this is not an image" * 10)
    elif kind == "empty_file":
        img.write_bytes(b"")
    elif kind == "missing_image":
        img.unlink()
    elif kind == "huge_image":
        img.write_bytes(_png_header_only(100_000, 100_000))
    elif kind == "zero_area_box":
        x1, y1 = boxes[0]["bbox"][:2]
        boxes[0]["bbox"] = [x1, y1, x1, y1 + 10]
    elif kind == "nan_coordinate":
        boxes[0]["bbox"][2] = math.nan
    elif kind == "unknown_object_class":
        boxes[-1]["category_id"] = 9999
    elif kind == "unknown_verb":
        rec["hoi_annotation"][0]["category_id"] = 9999
    else:
        raise AssertionError(kind)


KINDS = {
    "truncated_png": "unreadable_image",
    "truncated_jpeg": "unreadable_image",
    "garbage_image": "unreadable_image",
    "empty_file": "unreadable_image",
    "missing_image": "missing_image",
    "huge_image": "unreadable_image",
    "zero_area_box": "bad_box",
    "nan_coordinate": "bad_box",
    "unknown_object_class": "unknown_object",
    "unknown_verb": "unknown_verb",
}
# headers fine: found when pixels are decoded
DECODE_ONLY = {"truncated_png", "truncated_jpeg"}


def _broken_world(synth: Path, tmp: Path, kind: str) -> tuple[Path, Path, str]:
    images = tmp / "images"
    shutil.copytree(synth / "images", images)
    records = json.loads((synth / "train.json").read_text())
    _break(kind, records[BROKEN], images)
    (tmp / "train.json").write_text(json.dumps(records))
    return tmp / "train.json", images, records[BROKEN]["file_name"]


def _config(synth, tmp, ann, images, *extra, epochs=1):
    cfg = train_config(synth, tmp / "run", epochs, *extra, annotations=ann)
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, train_images=str(images))
    )


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_broken_record_stops_training_with_a_message_naming_it(synth, tmp_path, kind):
    ann, images, name = _broken_world(synth, tmp_path, kind)
    with pytest.raises(DataError) as err:
        run_train(_config(synth, tmp_path, ann, images), WORLD)
    msg = str(err.value)
    assert repr(name) in msg
    # found by the loader, when training first decodes the image
    if kind in DECODE_ONLY:
        assert "--skip-bad" in msg
    # found by the reader: before any training, with the record index
    else:
        assert (
            f"record {BROKEN}" in msg
            and "Fix:" in msg
            and not (tmp_path / "run" / "checkpoint.pt").exists()
        )
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_skip_bad_leaves_out_exactly_the_broken_record_and_reads_the_others_unchanged(
    synth, tmp_path, kind
):
    ann, images, name = _broken_world(synth, tmp_path, kind)
    vocab = load_vocabulary(str(synth / "vocabulary.json"))
    result = read_annotations(ann, images, vocab, skip_bad=True)
    assert {b.index for b in result.bad} == {BROKEN} and {
        b.kind for b in result.bad
    } == {KINDS[kind]}
    assert all(b.file_name == name for b in result.bad)
    # never a silent wrong label: the other records are read exactly as from the clean
    # file
    clean = read_annotations(synth / "train.json", synth / "images", vocab).records
    expected = clean[:BROKEN] + clean[BROKEN + 1 :]
    assert [r.key for r in result.records] == [r.key for r in expected]
    for a, b in zip(result.records, expected):
        assert np.array_equal(a.hois, b.hois) and np.array_equal(
            a.boxes_xyxy_px, b.boxes_xyxy_px
        )
        assert np.array_equal(a.box_classes, b.box_classes)


@pytest.mark.parametrize("kind", ["truncated_jpeg", "huge_image", "nan_coordinate"])
def test_training_with_skip_bad_counts_the_skipped_record_and_lists_it_in_bad_records_json(
    synth, tmp_path, kind, caplog
):
    ann, images, name = _broken_world(synth, tmp_path, kind)
    caplog.set_level(logging.WARNING)
    out = run_train(
        _config(
            synth, tmp_path, ann, images, "data.skip_bad=true", "optim.max_iters=1"
        ),
        WORLD,
    )
    report = json.loads((out / "bad_records.json").read_text())
    assert {r["index"] for r in report} == {BROKEN} and {r["kind"] for r in report} == {
        KINDS[kind]
    }
    assert all(r["file_name"] == name for r in report)
    assert (
        "skipped 1 bad record(s)" in caplog.text
        and str(out / "bad_records.json") in caplog.text
    )


def test_an_empty_image_list_is_refused_before_training(synth, tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ConfigError, match="no training images left"):
        run_train(
            _config(synth, tmp_path, tmp_path / "empty.json", synth / "images"), WORLD
        )


def test_skipping_every_record_is_refused_not_an_empty_run(synth, tmp_path):
    records = json.loads((synth / "train.json").read_text())
    for r in records:
        r["file_name"] = "gone_" + r["file_name"]
    (tmp_path / "all_bad.json").write_text(json.dumps(records))
    with pytest.raises(ConfigError, match="no training images left"):
        run_train(
            _config(
                synth,
                tmp_path,
                tmp_path / "all_bad.json",
                synth / "images",
                "data.skip_bad=true",
            ),
            WORLD,
        )


def test_an_image_with_no_boxes_trains_as_a_background_image(synth, tmp_path):
    records = json.loads((synth / "train.json").read_text())
    records[BROKEN]["annotations"], records[BROKEN]["hoi_annotation"] = [], []
    (tmp_path / "no_boxes.json").write_text(json.dumps(records))
    out = run_train(
        _config(synth, tmp_path, tmp_path / "no_boxes.json", synth / "images"), WORLD
    )
    assert not (out / "bad_records.json").exists() and (out / "checkpoint.pt").exists()


def test_cache_teacher_with_skip_bad_says_how_many_it_skipped_and_where_they_are_listed(
    synth, clip_weights, tmp_path, caplog
):
    from eoid.pipeline.run_cache import run_cache

    from tiny_train import cache_config

    ann, images, name = _broken_world(synth, tmp_path, "nan_coordinate")
    cfg = cache_config(synth, clip_weights, tmp_path / "cache")
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data,
            train_annotations=str(ann),
            train_images=str(images),
            skip_bad=True,
        ),
    )
    caplog.set_level(logging.WARNING)
    out = run_cache(cfg, WORLD)
    assert (
        "skipped 1 bad record(s)" in caplog.text
        and str(out / "bad_records.json") in caplog.text
    )
    assert name in (out / "bad_records.json").read_text()
