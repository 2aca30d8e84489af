"""HICO-DET annotation parsers: the PPDM/QPIC/CDN JSON and the original `anno_bbox.mat`.

Both produce `RawImage`s (checks.py validates them). The JSON format, also used by
V-COCO's HOIA files (vcoco.py):

    [{"file_name": "HICO_train2015_00000001.jpg",
      # px, COCO ids
      "annotations": [{"bbox": [x1, y1, x2, y2], "category_id": 1}, ...],
      # verb id 1-based
      "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 73}, ...]}]

`hoi_category_id`, when present, is ignored (the verb and the object's class define the
HOI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eoid.errors import DataError
from eoid.pipeline.data.checks import RawImage
from eoid.pipeline.data.vocab import Vocabulary

FORMAT_FIX = (
    "each record needs 'file_name', 'annotations' and 'hoi_annotation' (PPDM/CDN"
    " format)"
)


def parse_hoi_json(raw: list, object_key: str = "object_id") -> list[RawImage]:
    """RawImages of a PPDM/CDN-style JSON list (already parsed); structure problems stay
    per record.
    """
    out = []
    for index, rec in enumerate(raw):
        if not isinstance(rec, dict):
            out.append(
                RawImage(
                    index,
                    None,
                    [],
                    [],
                    [],
                    problems=[
                        (
                            "bad_format",
                            f"record is a {type(rec).__name__}, not an object",
                            FORMAT_FIX,
                        )
                    ],
                )
            )
            continue
        problems = []
        anns = rec.get("annotations")
        hois = rec.get("hoi_annotation")
        if not isinstance(anns, list) or not isinstance(hois, list):
            problems.append(
                (
                    "bad_format",
                    "'annotations' or 'hoi_annotation' is missing or not a list",
                    FORMAT_FIX,
                )
            )
            anns, hois = [], []
        boxes, cats = [], []
        for i, a in enumerate(anns):
            if not isinstance(a, dict) or "bbox" not in a or "category_id" not in a:
                problems.append(
                    (
                        "bad_format",
                        f"annotation {i} lacks 'bbox' or 'category_id'",
                        FORMAT_FIX,
                    )
                )
                continue
            boxes.append(a["bbox"])
            cats.append(a["category_id"])
        if problems:
            boxes, cats = [], []
        labels = []
        for k, h in enumerate(hois):
            if (
                not isinstance(h, dict)
                or not {"subject_id", object_key, "category_id"} <= h.keys()
            ):
                problems.append(
                    (
                        "bad_format",
                        (
                            f"hoi_annotation {k} lacks subject_id, {object_key} or "
                            "category_id"
                        ),
                        FORMAT_FIX,
                    )
                )
                continue
            labels.append((h["subject_id"], h[object_key], h["category_id"]))
        out.append(
            RawImage(
                index, rec.get("file_name"), boxes, cats, labels, problems=problems
            )
        )
    return out


def _items(x: Any) -> list:
    """A MATLAB struct/cell array loaded with squeeze_me=True as a flat list (a scalar
    is one item).
    """
    if x is None:
        return []
    return list(x.ravel()) if isinstance(x, np.ndarray) else [x]


def _field(s: Any, name: str) -> Any:
    return getattr(s, name) if hasattr(s, name) else s[name]


def parse_anno_bbox_mat(
    path: Path, vocab: Vocabulary, split: str = "train"
) -> list[RawImage]:
    """RawImages of HICO-DET's original `anno_bbox.mat` (`bbx_train` or `bbx_test`).

    Each image lists HOI entries: `id` (1-based index into the 600 HOIs, i.e.
    vocab.hois), `bboxhuman`/`bboxobject` (structs x1, x2, y1, y2; MATLAB 1-based
    pixels), `connection` (rows of 1-based (human, object) indices), `invis` (1 = not
    visible, no boxes). Boxes are shifted by -1 px to the 0-based frame of the JSON
    files (the PPDM JSON equals the .mat minus 1), identical (class, box) entries are
    merged across HOI entries, and each connection becomes one (human, object, verb)
    label.
    """
    import scipy.io

    key = {"train": "bbx_train", "test": "bbx_test"}.get(split)
    if key is None:
        raise DataError(
            f"{path}: unknown split {split!r} for anno_bbox.mat; use 'train' or 'test'."
        )
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    # scipy raises ValueError/TypeError/OSError for broken files
    except Exception as err:
        raise DataError(
            f"{path}: not a readable MATLAB file ({type(err).__name__}: {err}). "
            "Pass HICO-DET's anno_bbox.mat or a JSON annotation file."
        ) from None
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"{path}: no '{key}' in this .mat file (found {found}). "
            "Pass HICO-DET's anno_bbox.mat."
        )
    out = []
    for index, entry in enumerate(_items(mat[key])):
        try:
            out.append(_mat_image(index, entry, vocab))
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as err:
            out.append(
                RawImage(
                    index,
                    None,
                    [],
                    [],
                    [],
                    problems=[
                        (
                            "bad_format",
                            (
                                "entry does not have the anno_bbox.mat layout"
                                f" ({type(err).__name__}: {err})"
                            ),
                            "use the original HICO-DET anno_bbox.mat",
                        )
                    ],
                )
            )
    return out


def _mat_image(index: int, entry: Any, vocab: Vocabulary) -> RawImage:
    file_name = str(_field(entry, "filename"))
    size = _field(entry, "size")
    wh = (int(_field(size, "width")), int(_field(size, "height")))
    boxes: list[list[float]] = []
    cats: list[int] = []
    slot: dict[tuple, int] = {}
    labels = []
    problems = []

    def box_index(b: Any, obj: int) -> int:
        xyxy = [
            float(_field(b, "x1")) - 1,
            float(_field(b, "y1")) - 1,
            float(_field(b, "x2")) - 1,
            float(_field(b, "y2")) - 1,
        ]
        k = (obj, *xyxy)
        if k not in slot:
            slot[k] = len(boxes)
            boxes.append(xyxy)
            cats.append(vocab.object_ids[obj])
        return slot[k]

    for hoi in _items(_field(entry, "hoi")):
        hid = int(_field(hoi, "id"))
        invis = np.asarray(_field(hoi, "invis")).ravel()
        if invis.size and int(invis[0]) == 1:
            continue
        if not 1 <= hid <= len(vocab.hois):
            problems.append(
                (
                    "unknown_verb",
                    f"HOI id {hid} is not in 1..{len(vocab.hois)}",
                    "use the HICO-DET vocabulary with anno_bbox.mat",
                )
            )
            continue
        verb, obj = vocab.hois[hid - 1]
        humans = [box_index(b, vocab.human) for b in _items(_field(hoi, "bboxhuman"))]
        objects = [box_index(b, obj) for b in _items(_field(hoi, "bboxobject"))]
        conn = np.asarray(_field(hoi, "connection"), dtype=np.int64).reshape(-1, 2)
        for h, o in conn.tolist():
            if not (1 <= h <= len(humans) and 1 <= o <= len(objects)):
                problems.append(
                    (
                        "index_out_of_range",
                        (
                            f"HOI {hid}: connection ({h}, {o}) but the entry has"
                            f" {len(humans)} human and {len(objects)} object boxes"
                            " (1-based)"
                        ),
                        "fix the connection of this HOI entry",
                    )
                )
                continue
            labels.append((humans[h - 1], objects[o - 1], vocab.verb_ids[verb]))
    return RawImage(index, file_name, boxes, cats, labels, size=wh, problems=problems)
