"""Validation of one annotated image, shared by every reader: raw fields in, an
ImageRecord or problems out.

Each format parser (hico.py, vcoco.py, coco.py) turns its file into `RawImage`s that
keep the file's own ids (COCO category ids, 1-based verb ids, box indices);
`check_raw_image` checks them against the vocabulary and the image folder and builds the
`ImageRecord`.

Decisions (documented here because every reader shares them):
- Boxes are xyxy in pixels of the original image. A box may stick out of the image by at
  most `BOX_TOLERANCE_PX` (1 px: HICO-DET's converted boxes use both 0- and 1-based
  ends); more is an error, because the teacher would crop mostly padding. Coordinates
  are kept unclamped.
- `file_name` is a relative POSIX path inside the image folder: absolute paths, `..`
  parts, backslashes and NUL are refused (lexical check, so symlinked image folders
  still work).
- Images are checked from their header (size) only, unless `decode_images` is set: then
  every image is decoded in full, so a truncated or corrupt file is found before
  training starts. Readers set it with skip_bad (a broken image is then skipped up front
  and listed, instead of stopping training at the first epoch that reads it).
- With `check_images=False` no image file is touched: the size comes from the annotation
  file when it has one (.mat, COCO), else width = height = 0 ("unknown") and the
  outside-the-image test is skipped. Use it for label statistics, never for training.
- A label whose object index is -1 (V-COCO actions without an object box) is dropped
  when `drop_objectless` is set (the V-COCO policy, see vcoco.py) and is an index error
  otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from eoid.pipeline.data.image_files import file_name_problem, image_size
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary

BOX_TOLERANCE_PX = 1.0


@dataclass
class RawImage:
    """One image as a parser read it, before validation (ids as written in the file)."""

    # record index in the annotation file (0-based)
    index: int
    # as written; checked to be a safe relative path
    file_name: Any
    boxes: Any  # sequence of [x1, y1, x2, y2] px
    # one object category id per box (vocab.object_ids)
    category_ids: Any
    # sequence of (subject_id, object_id, verb_id)
    labels: Any
    # (width, height) when the annotation file has it
    size: tuple[int, int] | None = None
    # (kind, problem, fix)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class BadRecord:
    """One problem of one record: where it is, what is wrong and how to fix it."""

    file: Path
    index: int  # record index in the file; -1 for a problem of the whole file
    file_name: str
    # short code, e.g. "bad_box", "unknown_object" (counted by check_dataset)
    kind: str
    problem: str
    fix: str

    @property
    def reason(self) -> str:
        return f"{self.problem}. Fix: {self.fix}"

    def message(self) -> str:
        # a whole-file problem: its text already names the file and the fix
        if self.index < 0:
            return self.problem
        return (
            f"{self.file}: record {self.index} (file_name {self.file_name!r}): "
            f"{self.problem}. Fix: {self.fix}"
        )


def check_raw_image(
    raw: RawImage,
    file: Path,
    images: Path,
    vocab: Vocabulary,
    *,
    check_images: bool = True,
    drop_objectless: bool = False,
    tolerance_px: float = BOX_TOLERANCE_PX,
    decode_images: bool = False,
    known_sizes: Mapping[Path, tuple[int, int] | Exception] | None = None,
) -> tuple[ImageRecord | None, list[BadRecord]]:
    """Validate one raw image; returns (record, []) or (None, every problem found).

    `known_sizes`: image_sizes() of the files, read ahead (else each is opened here)."""
    fn = raw.file_name if isinstance(raw.file_name, str) else repr(raw.file_name)
    problems: list[BadRecord] = []

    def bad(kind: str, problem: str, fix: str) -> None:
        problems.append(BadRecord(file, raw.index, fn, kind, problem, fix))

    for kind, problem, fix in raw.problems:
        bad(kind, problem, fix)
    if problems and raw.file_name is None:
        # the parser could not read the record at all: nothing more to check
        return None, problems

    # the image file and its size
    width = height = 0
    path = images / "__invalid__"
    name_problem = file_name_problem(raw.file_name)
    if name_problem:
        bad(
            "bad_file_name",
            name_problem,
            "write file_name relative to the image folder, e.g."
            " 'HICO_train2015_00000001.jpg'",
        )
    else:
        path = images / raw.file_name
        if raw.size is not None:
            width, height = raw.size
        if check_images:
            try:
                exists = path.is_file()
                why = "does not exist"
            except OSError as err:  # e.g. a name longer than the file system allows
                exists, why = False, f"cannot be looked up ({err.strerror or err})"
            if not exists:
                bad(
                    "missing_image",
                    f"image file {str(path)[:300]} {why}",
                    "check the image folder (--images) and the file_name, or remove the"
                    " record",
                )
            else:
                try:
                    found = (known_sizes or {}).get(path)
                    if isinstance(found, Exception):
                        raise found
                    iw, ih = (
                        found
                        if found is not None
                        else image_size(path, decode=decode_images)
                    )
                except Exception as err:  # PIL raises many types for broken files
                    bad(
                        "unreadable_image",
                        f"image {path} cannot be read ({type(err).__name__}: {err})",
                        "replace the broken image file",
                    )
                else:
                    if raw.size is not None and (iw, ih) != tuple(raw.size):
                        bad(
                            "size_mismatch",
                            f"annotation says {raw.size[0]}x{raw.size[1]} px but the "
                            f"image is {iw}x{ih} px",
                            "re-export the annotation for this image",
                        )
                    width, height = iw, ih

    boxes = _boxes_array(raw.boxes, bad)
    classes = (
        _box_classes(raw.category_ids, len(boxes), vocab, bad)
        if boxes is not None
        else None
    )
    if boxes is not None:
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            if not all(math.isfinite(c) for c in (x1, y1, x2, y2)):
                bad(
                    "bad_box",
                    f"box {i} {[x1, y1, x2, y2]} has a NaN or infinite coordinate",
                    "fix or remove the box",
                )
            elif x2 <= x1 or y2 <= y1:
                bad(
                    "bad_box",
                    f"box {i} {[x1, y1, x2, y2]} is empty (needs x2 > x1 and y2 > y1, "
                    "boxes are [x1, y1, x2, y2] px)",
                    "fix the box or remove it and its labels",
                )
            elif width > 0 and (
                x1 < -tolerance_px
                or y1 < -tolerance_px
                or x2 > width + tolerance_px
                or y2 > height + tolerance_px
            ):
                bad(
                    "bad_box",
                    f"box {i} {[x1, y1, x2, y2]} lies outside the {width}x{height} px "
                    f"image (tolerance {tolerance_px:g} px)",
                    "check that boxes are xyxy in original image pixels (not xywh, not"
                    " normalised)",
                )
    # a malformed box is reported once: its labels are checked against the boxes as
    # listed
    listed = len(raw.boxes) if isinstance(raw.boxes, (list, tuple)) else 0
    num_boxes = len(boxes) if boxes is not None else listed
    hois = _labels(raw.labels, num_boxes, classes, vocab, drop_objectless, bad)
    if problems:
        return None, problems
    assert boxes is not None and classes is not None
    return (
        ImageRecord(
            key=raw.file_name,
            path=path,
            width=width,
            height=height,
            boxes_xyxy_px=boxes,
            box_classes=classes,
            hois=hois,
        ),
        [],
    )


def _holds_bool(value: Any) -> bool:
    """JSON true/false where a number belongs: Python reads a bool as the int 1/0, so it
    is refused.
    """
    return isinstance(value, bool) or (
        isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)
    )


def _boxes_array(boxes: Any, bad) -> np.ndarray | None:
    if _holds_bool(boxes):
        bad(
            "bad_format",
            "a box coordinate is true or false, not a number",
            "write each 'bbox' as four numbers",
        )
        return None
    try:
        arr = np.asarray(boxes if boxes is not None else [], dtype=np.float64)
        arr = arr.reshape(-1, 4) if arr.size == 0 else arr
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 4:
        bad(
            "bad_format",
            "boxes are not a list of [x1, y1, x2, y2] numbers",
            "write each 'bbox' as four numbers",
        )
        return None
    return arr.astype(np.float32)


def _box_classes(
    category_ids: Any, num_boxes: int, vocab: Vocabulary, bad
) -> np.ndarray | None:
    ids = list(category_ids) if category_ids is not None else []
    if len(ids) != num_boxes:
        bad(
            "bad_format",
            f"{len(ids)} category ids for {num_boxes} boxes",
            "give every box a category_id",
        )
        return None
    index = vocab.object_index
    out = np.full(len(ids), -1, dtype=np.int64)  # -1: unknown class (already reported)
    for i, cid in enumerate(ids):
        if (
            not isinstance(cid, (int, np.integer))
            or isinstance(cid, bool)
            or int(cid) not in index
        ):
            bad(
                "unknown_object",
                f"box {i} has category_id {cid!r}, which is not an object of the "
                f"{vocab.name!r} vocabulary",
                f"use one of its object ids ({min(index)}..{max(index)}, "
                "COCO ids for hico-det and v-coco) or another vocabulary",
            )
        else:
            out[i] = index[int(cid)]
    return out


def _labels(
    labels: Any,
    num_boxes: int,
    classes: np.ndarray | None,
    vocab: Vocabulary,
    drop_objectless: bool,
    bad,
) -> np.ndarray:
    verb_index = vocab.verb_index
    valid = vocab.valid
    rows: list[tuple[int, int, int]] = []
    for k, label in enumerate(labels if labels is not None else []):
        try:
            s, o, vid = label
        except (TypeError, ValueError):
            bad(
                "bad_format",
                f"label {k} is not (subject_id, object_id, category_id)",
                "write each hoi_annotation with subject_id, object_id and category_id",
            )
            continue
        if not all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool)
            for x in (s, o, vid)
        ):
            bad(
                "bad_format",
                f"label {k} has non-integer ids {(s, o, vid)!r}",
                "write integer ids",
            )
            continue
        s, o, vid = int(s), int(o), int(vid)
        if o == -1 and drop_objectless:
            continue
        ok = True
        for role, i in (("subject_id", s), ("object_id", o)):
            if not 0 <= i < num_boxes:
                bad(
                    "index_out_of_range",
                    f"label {k} has {role} {i} but the image has {num_boxes} boxes "
                    f"(valid 0..{num_boxes - 1})",
                    "point subject_id/object_id at an entry of 'annotations'",
                )
                ok = False
        if vid not in verb_index:
            bad(
                "unknown_verb",
                f"label {k} has verb category_id {vid}, not a verb of the"
                f" {vocab.name!r} vocabulary",
                f"use a verb id in {min(verb_index)}..{max(verb_index)}",
            )
            ok = False
        if not ok or classes is None:
            continue
        v = verb_index[vid]
        if classes[s] < 0 or classes[o] < 0:
            continue  # the box's unknown category is reported once, not again per label
        if classes[s] != vocab.human:
            bad(
                "subject_not_human",
                f"label {k}: subject box {s} is a {vocab.objects[classes[s]]!r}, "
                f"not a {vocab.objects[vocab.human]!r}",
                "the subject of an interaction must be a person box",
            )
        elif not valid[classes[o], v]:
            bad(
                "invalid_hoi",
                f"label {k}: verb {vocab.verbs[v]!r} with object"
                f" {vocab.objects[classes[o]]!r} is not one of the vocabulary's HOI"
                " categories",
                "check the verb id and the object's category_id",
            )
        else:
            rows.append((s, o, v))
    unique = list(dict.fromkeys(rows))  # a label written twice counts once
    return np.asarray(unique, dtype=np.int64).reshape(-1, 3)
