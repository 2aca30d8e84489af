"""COCO instance files (boxes only) through pycocotools, for pseudo-labelled training
images.

Every image of the file becomes a record with its boxes and classes and no labelled
interaction: the teacher and the second matching stage treat all its pairs as unknown.
COCO boxes are [x, y, w, h] px; they become [x1, y1, x2, y2] px. Crowd regions are
skipped.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from eoid.errors import DataError
from eoid.pipeline.data.checks import RawImage


def xywh_to_xyxy(box: list) -> list:
    """[x, y, w, h] -> [x1, y1, x2, y2] (same frame)."""
    x, y, w, h = box
    return [x, y, x + w, y + h]


def parse_coco_instances(path: Path, raw: dict) -> list[RawImage]:
    """RawImages of a COCO instances file (`raw` is its parsed JSON, handed to
    pycocotools).
    """
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = raw
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
    except (KeyError, TypeError) as err:
        raise DataError(
            f"{path}: not a COCO instances file ({type(err).__name__}: {err}). It needs"
            " 'images' [{id, file_name, width, height}] and 'annotations'"
            " [{image_id, bbox, category_id}]."
        ) from None
    out = []
    for index, img in enumerate(raw.get("images", [])):
        problems = []
        anns = coco.imgToAnns.get(img.get("id"), []) if isinstance(img, dict) else []
        boxes, cats = [], []
        for a in anns:
            if a.get("iscrowd", 0):
                continue
            bbox = a.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                problems.append(
                    (
                        "bad_format",
                        f"annotation {a.get('id')!r} has bbox {bbox!r}",
                        "write bbox as [x, y, width, height] px",
                    )
                )
                continue
            boxes.append(xywh_to_xyxy(bbox))
            cats.append(a.get("category_id"))
        size = None
        if (
            isinstance(img, dict)
            and isinstance(img.get("width"), int)
            and isinstance(img.get("height"), int)
        ):
            size = (img["width"], img["height"])
        name = img.get("file_name") if isinstance(img, dict) else None
        out.append(RawImage(index, name, boxes, cats, [], size=size, problems=problems))
    return out
