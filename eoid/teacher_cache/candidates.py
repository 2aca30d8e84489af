"""Candidate pairs of one image from its ground-truth boxes: the rows the teacher cache
holds.

Every human box is paired with every other box (humans can be objects), and pairs whose
two boxes repeat an earlier pair exactly (same coordinates and object class: HICO-DET
files often list a box once per HOI) are dropped. This is a superset of both
unknown-pair rules the student can use, so one cache serves either.
"""

from __future__ import annotations

import numpy as np


def candidate_pairs(
    boxes_xyxy_px: np.ndarray,
    box_classes: np.ndarray,
    human_class: int,
    labelled_pairs: np.ndarray | None = None,
) -> np.ndarray:
    """(P, 2) int64 (human_box_idx, object_box_idx) pairs of one image, in a fixed
    order.

    boxes_xyxy_px: (B, 4); box_classes: (B,) object index per box. Labelled pairs (K, 2)
    are always kept even when their subject is not of the human class. Order: by human
    box, then object box, first occurrence of each distinct (human box, object box,
    object class).
    """
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
    classes = np.asarray(box_classes, dtype=np.int64).reshape(-1)
    humans = np.flatnonzero(classes == human_class)
    num_boxes = len(boxes)
    grid_h, grid_o = np.meshgrid(humans, np.arange(num_boxes), indexing="ij")
    pairs = np.stack([grid_h.ravel(), grid_o.ravel()], axis=1)
    if labelled_pairs is not None and len(labelled_pairs):
        pairs = np.concatenate(
            [pairs, np.asarray(labelled_pairs, dtype=np.int64).reshape(-1, 2)]
        )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # Identity of a pair = the coordinates of both boxes and the object's class.
    key = np.concatenate(
        [
            boxes[pairs[:, 0]],
            boxes[pairs[:, 1]],
            classes[pairs[:, 1], None].astype(np.float32),
        ],
        axis=1,
    )
    same_box = np.all(key[:, :4] == key[:, 4:8], axis=1)
    pairs, key = pairs[~same_box], key[~same_box]
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.sort(first)
    pairs = pairs[keep]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order].astype(np.int64)


def labelled_mask(
    pairs: np.ndarray,
    boxes_xyxy_px: np.ndarray,
    box_classes: np.ndarray,
    hois: np.ndarray,
) -> np.ndarray:
    """(P,) bool: True where a pair carries a label in `hois` (H, 3) (human_idx,
    object_idx, verb).

    Matched on box coordinates and object class, so a label on a duplicate box still
    marks the pair kept for it.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    hois = np.asarray(hois, dtype=np.int64).reshape(-1, 3)
    if len(pairs) == 0 or len(hois) == 0:
        return np.zeros(len(pairs), dtype=bool)
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
    classes = np.asarray(box_classes, dtype=np.int64).reshape(-1)

    def keys(h: np.ndarray, o: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [boxes[h], boxes[o], classes[o, None].astype(np.float32)], axis=1
        )

    pair_keys = keys(pairs[:, 0], pairs[:, 1])
    label_keys = np.unique(keys(hois[:, 0], hois[:, 1]), axis=0)
    return (pair_keys[:, None, :] == label_keys[None, :, :]).all(axis=2).any(axis=1)
