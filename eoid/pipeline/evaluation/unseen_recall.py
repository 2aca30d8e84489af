"""Unseen-pair recall U-R@K (EoID paper, Table 1): pure arrays in, numbers out.

The EoID code has no implementation of this metric; the definition here is the plausible
one (reference §7, unverified): per test image, rank the student's predicted pairs by
their interactive score; a ground-truth human-object pair whose labelled verbs are *all*
unseen is recalled at K when one of the top-K predictions overlaps it with IoU >= 0.5 on
the human box and on the object box (min of the two IoUs, "+1" inclusive-pixel IoU as in
the HICO-DET evaluator). U-R@K = recalled pairs / all such pairs, over the test set. A
prediction may recall several ground-truth pairs (recall, not one-to-one matching);
score ties keep the prediction order.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from eoid.boxes import box_iou_plus1_np
from eoid.pipeline.data.records import ImageRecord


class PairBoxes(NamedTuple):
    """Human-object pairs of one image (ground truth: no scores needed)."""

    human_boxes_xyxy: np.ndarray  # (G, 4) float64, px of the original image
    object_boxes_xyxy: np.ndarray  # (G, 4) float64, px


class RankedPairs(NamedTuple):
    """Predicted pairs of one image with their interactive score."""

    human_boxes_xyxy: np.ndarray  # (Q, 4) float64, px
    object_boxes_xyxy: np.ndarray  # (Q, 4) float64, px
    interactive_scores: np.ndarray  # (Q,) float64


def unseen_pairs_from_records(
    records: Sequence[ImageRecord], unseen_verbs: Sequence[int]
) -> dict[str, PairBoxes]:
    """Per image key, the labelled (human box, object box) pairs whose verbs are all
    unseen.

    A pair is one (human_box_idx, object_box_idx) of the record's hois rows, with the
    set of verbs labelled on it.
    """
    unseen = set(int(v) for v in unseen_verbs)
    out: dict[str, PairBoxes] = {}
    for rec in records:
        verbs_of_pair: dict[tuple[int, int], set[int]] = {}
        for h, o, v in np.asarray(rec.hois, dtype=np.int64).reshape(-1, 3).tolist():
            verbs_of_pair.setdefault((h, o), set()).add(v)
        pairs = [p for p, verbs in verbs_of_pair.items() if verbs <= unseen]
        boxes = np.asarray(rec.boxes_xyxy_px, dtype=np.float64).reshape(-1, 4)
        idx = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        out[rec.key] = PairBoxes(boxes[idx[:, 0]], boxes[idx[:, 1]])
    return out


def unseen_pair_recall(
    gt_pairs: Mapping[str, PairBoxes],
    predictions: Mapping[str, RankedPairs],
    ks: Sequence[int] = (3, 5, 10),
    iou_threshold: float = 0.5,
) -> dict[int, float]:
    """U-R@K for each K in ks: fraction of gt_pairs recalled by an image's top-K
    predictions.

    gt_pairs: per image key, only the pairs to recall (see unseen_pairs_from_records).
    predictions: per image key; a missing image recalls nothing. NaN for every K when
    there is no pair to recall.
    """
    recalled = {k: 0 for k in ks}
    total = 0
    for key, gt in gt_pairs.items():
        num_gt = len(gt.human_boxes_xyxy)
        total += num_gt
        pred = predictions.get(key)
        if num_gt == 0 or pred is None or len(pred.interactive_scores) == 0:
            continue
        order = np.argsort(
            -np.asarray(pred.interactive_scores, dtype=np.float64), kind="stable"
        )
        overlap = np.minimum(
            box_iou_plus1_np(pred.human_boxes_xyxy[order], gt.human_boxes_xyxy),
            box_iou_plus1_np(pred.object_boxes_xyxy[order], gt.object_boxes_xyxy),
        )
        hit = overlap >= iou_threshold  # (Q ranked, G)
        first_hit_rank = np.where(
            hit.any(axis=0), hit.argmax(axis=0), np.iinfo(np.int64).max
        )
        for k in ks:
            recalled[k] += int((first_hit_rank < k).sum())
    return {k: recalled[k] / total if total else float("nan") for k in ks}
