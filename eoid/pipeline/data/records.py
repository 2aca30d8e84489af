"""The in-memory record of one annotated image, shared by every reader and phase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image: its boxes in original pixel coordinates and its labelled (human,
    object, verb) triplets.

    Boxes are xyxy in pixels of the original image file (before any augmentation); the
    teacher cache and the evaluator work in this frame.
    """

    # file_name as written in the annotation file: unique, the cache key
    key: str
    path: Path  # the image file, inside the image folder
    width: int  # original width, px
    height: int  # original height, px
    boxes_xyxy_px: np.ndarray  # (num_boxes, 4) float32
    box_classes: np.ndarray  # (num_boxes,) int64 object index in the vocabulary
    # (num_labels, 3) int64 rows (human_box_idx, object_box_idx, verb_idx)
    hois: np.ndarray

    @property
    def num_boxes(self) -> int:
        return len(self.boxes_xyxy_px)

    def with_hois(self, hois: np.ndarray) -> "ImageRecord":
        """The same image with another label set (boxes unchanged)."""
        return ImageRecord(
            self.key,
            self.path,
            self.width,
            self.height,
            self.boxes_xyxy_px,
            self.box_classes,
            np.asarray(hois, dtype=np.int64).reshape(-1, 3),
        )
