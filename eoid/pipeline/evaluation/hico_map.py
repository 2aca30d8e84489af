"""HICO-DET mAP as the official evaluation computes it: pure arrays in, numbers out.

The rules follow ho-rcnn's MATLAB code (ywchao/ho-rcnn, evaluation/eval_one.m and
evaluation/VOCevaldet_bboxpair.m), which the HICO-DET benchmark numbers come from:

- Per HOI category, the detections of every test image are put in one list, image by
  image in the test-list order and row by row inside an image, then sorted by decreasing
  score with MATLAB's *stable* `sort`. Ties therefore keep that order: the earlier image
  first, then the earlier row of the same image. Here the image order is the order of
  the `gt` mapping.
- Each detection, in that order, is compared with the ground-truth pairs of its category
  in its image: overlap = min(IoU of the humans, IoU of the objects), IoU with the
  inclusive-pixel "+1" widths. The pair with the largest overlap is chosen (the first
  one on a tie). It is a true positive when the overlap is >= 0.5 and that pair is not
  yet taken; otherwise a false positive (a taken best pair gives a false positive, never
  a fall-back to the second best).
- AP is the **11-point interpolated precision** (`for t = 0:0.1:1, p = max(prec(rec >=
  t))`), not the area under the precision envelope. `ap_method="official"` reproduces it
  with the thresholds MATLAB's colon operator produces; "voc11" is CDN's Python port
  (`np.arange` thresholds; it differs only when a recall lands exactly on 0.6 or 0.7);
  "area" is the VOC2010+ all-point AP (as V-COCO's vsrl_eval.py uses), for comparison
  only.
- Max recall per category is the final recall (`REC(i) = rec(end)`).
- Known-object mode ("ko" in eval_one.m): for a category, only the detections in images
  where some HOI with that category's object is labelled are kept. The official code
  reads this from HICO's image-level labels (`anno_test == 1`), which also count labels
  whose boxes are marked invisible; here it is taken from the ground-truth pairs given.
- Means: the official Full mean runs over all 600 categories, every one of which has
  test instances. A category with no ground-truth pair in `gt` (possible on a subset or
  another dataset) is left out of every mean here and gets AP NaN, instead of the
  official AP 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from eoid.boxes import box_iou_plus1_np
from eoid.errors import DataError
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.evaluation.ap_arithmetic import average_precision


class ImageGT(NamedTuple):
    """Ground-truth HOI pairs of one image; one row per labelled (human, object, HOI)."""

    human_boxes_xyxy: np.ndarray  # (G, 4) float64, px of the original image
    object_boxes_xyxy: np.ndarray  # (G, 4) float64, px
    hoi_idx: np.ndarray  # (G,) int64 index into the vocabulary's HOI list


class ImageDetections(NamedTuple):
    """Scored HOI detections of one image; one row per (human box, object box, HOI)."""

    human_boxes_xyxy: np.ndarray  # (D, 4) float64, px of the original image
    object_boxes_xyxy: np.ndarray  # (D, 4) float64, px
    hoi_idx: np.ndarray  # (D,) int64
    scores: np.ndarray  # (D,) float64, higher = more confident


class Matches(NamedTuple):
    """Every detection of every image, flattened in the official ranking order."""

    hoi_idx: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float64, non-increasing
    is_tp: np.ndarray  # (N,) bool
    image_rank: np.ndarray  # (N,) int64 position of the image in `gt`
    num_gt_per_hoi: np.ndarray  # (num_hois,) int64
    objects_present: np.ndarray  # (num_images, num_objects) bool, from the GT pairs


@dataclass(frozen=True)
class HoiMapResult:
    """AP per HOI category and the group means (fractions in [0, 1]; NaN = no GT / empty
    group).
    """

    ap_per_hoi: np.ndarray  # (num_hois,) float64
    max_recall_per_hoi: np.ndarray  # (num_hois,) float64
    num_gt_per_hoi: np.ndarray  # (num_hois,) int64
    mean_ap: dict[str, float]  # keys: full, rare, non_rare, seen, unseen
    mean_max_recall: dict[str, float]
    ap_method: str
    known_object: bool


def empty_detections() -> ImageDetections:
    """An image with no detections."""
    return ImageDetections(
        np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
    )


def gt_from_records(
    records: Sequence[ImageRecord], vocab: Vocabulary
) -> dict[str, ImageGT]:
    """Ground truth per image key from `ImageRecord`s; a label that is not a HOI is a
    DataError.

    Each hois row (human_box_idx, object_box_idx, verb_idx) becomes one pair whose HOI
    is vocab.hoi_index()[verb, class of the object box]. Keys keep the records' order,
    which is the image order that breaks score ties.
    """
    table = vocab.hoi_index()
    gt: dict[str, ImageGT] = {}
    for i, rec in enumerate(records):
        hois = np.asarray(rec.hois, dtype=np.int64).reshape(-1, 3)
        boxes = np.asarray(rec.boxes_xyxy_px, dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(rec.box_classes, dtype=np.int64)
        if rec.key in gt:
            raise DataError(
                f"record {i} ({rec.key}): the image key appears twice in the"
                " annotations. Remove the duplicate record."
            )
        if len(hois) and (hois[:, :2].max() >= len(boxes) or hois[:, :2].min() < 0):
            raise DataError(
                f"record {i} ({rec.key}): a label points to a box index outside "
                f"0..{len(boxes) - 1}. Fix the annotation file."
            )
        verbs, objects = hois[:, 2], classes[hois[:, 1]]
        if len(hois) and not (
            (0 <= verbs).all()
            and (verbs < vocab.num_verbs).all()
            and (0 <= objects).all()
            and (objects < vocab.num_objects).all()
        ):
            raise DataError(
                f"record {i} ({rec.key}): a label has a verb or object index outside"
                f" the vocabulary {vocab.name!r}. Fix the annotation file or pass its"
                " vocabulary."
            )
        hoi_idx = table[verbs, objects] if len(hois) else np.zeros(0, np.int64)
        bad = np.flatnonzero(hoi_idx < 0)
        if len(bad):
            j = int(bad[0])
            raise DataError(
                f"record {i} ({rec.key}): label {j} is ({vocab.verbs[verbs[j]]},"
                f" {vocab.objects[objects[j]]}), which is not a HOI category of"
                f" vocabulary {vocab.name!r}. Remove that label or use a vocabulary"
                " that lists the pair."
            )
        gt[rec.key] = ImageGT(
            boxes[hois[:, 0]], boxes[hois[:, 1]], hoi_idx.astype(np.int64)
        )
    return gt


def _match_image(gt: ImageGT, det: ImageDetections, iou_threshold: float) -> np.ndarray:
    """(D,) bool true positives of one image's detections, D in the given row order."""
    num_det = len(det.scores)
    is_tp = np.zeros(num_det, dtype=bool)
    if num_det == 0 or len(gt.hoi_idx) == 0:
        return is_tp
    overlap = np.minimum(
        box_iou_plus1_np(det.human_boxes_xyxy, gt.human_boxes_xyxy),
        # (D, G)
        box_iou_plus1_np(det.object_boxes_xyxy, gt.object_boxes_xyxy),
    )
    overlap = np.where(det.hoi_idx[:, None] == gt.hoi_idx[None, :], overlap, -np.inf)
    # first maximum, as MATLAB's strict '>'
    best_gt = overlap.argmax(axis=1)
    best_overlap = overlap[np.arange(num_det), best_gt]
    order = np.argsort(-det.scores, kind="stable")  # ranking order inside the image
    taken = np.zeros(len(gt.hoi_idx), dtype=bool)
    for d in order[best_overlap[order] >= iou_threshold]:
        if not taken[best_gt[d]]:
            taken[best_gt[d]] = True
            is_tp[d] = True
    return is_tp


def match_detections(
    gt: Mapping[str, ImageGT],
    detections: Mapping[str, ImageDetections],
    num_hois: int,
    hoi_to_object: np.ndarray,
    iou_threshold: float = 0.5,
) -> Matches:
    """Label every detection true or false positive and rank all of them as the official
    code does.

    gt: per image key, in test-list order (that order breaks score ties). detections:
    per image key, a subset of gt's keys; a missing image has no detections.
    hoi_to_object: (num_hois,) object index of each HOI, for the known-object mode.
    """
    unknown = [k for k in detections if k not in gt]
    if unknown:
        raise DataError(
            f"detections for {len(unknown)} image(s) not in the ground truth, e.g. "
            f"{unknown[0]!r}. "
            "Evaluate against the annotation file the predictions were made for."
        )
    hoi_to_object = np.asarray(hoi_to_object, dtype=np.int64)
    num_objects = int(hoi_to_object.max()) + 1 if len(hoi_to_object) else 0
    num_gt = np.zeros(num_hois, dtype=np.int64)
    objects_present = np.zeros((len(gt), num_objects), dtype=bool)
    parts = []
    for rank, (key, image_gt) in enumerate(gt.items()):
        if len(image_gt.hoi_idx) and (
            image_gt.hoi_idx.min() < 0 or image_gt.hoi_idx.max() >= num_hois
        ):
            raise DataError(
                f"ground truth of {key!r} has a HOI index outside 0..{num_hois - 1}."
            )
        np.add.at(num_gt, image_gt.hoi_idx, 1)
        objects_present[rank, hoi_to_object[image_gt.hoi_idx]] = True
        det = detections.get(key)
        if det is None or len(det.scores) == 0:
            continue
        if det.hoi_idx.min() < 0 or det.hoi_idx.max() >= num_hois:
            raise DataError(
                f"detections of {key!r} have a HOI index outside 0..{num_hois - 1}."
            )
        parts.append(
            (
                det.hoi_idx,
                det.scores,
                _match_image(image_gt, det, iou_threshold),
                np.full(len(det.scores), rank),
            )
        )
    if parts:
        hoi_idx, scores, is_tp, image_rank = (np.concatenate(x) for x in zip(*parts))
    else:
        hoi_idx, scores, is_tp, image_rank = (
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros(0, bool),
            np.zeros(0, np.int64),
        )
    # Rows are already in (image, row) order, so a stable sort on -score is the official
    # ranking.
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return Matches(
        hoi_idx[order].astype(np.int64),
        scores[order].astype(np.float64),
        is_tp[order],
        image_rank[order].astype(np.int64),
        num_gt,
        objects_present,
    )


def _group_means(
    values: np.ndarray,
    num_gt: np.ndarray,
    rare_hois: Sequence[int],
    unseen_hois: Sequence[int],
) -> dict[str, float]:
    """Means of per-HOI values over Full / Rare / Non-rare / Seen / Unseen, HOIs with GT
    only.
    """
    scored = num_gt > 0
    rare = np.zeros(len(values), dtype=bool)
    rare[list(rare_hois)] = True
    unseen = np.zeros(len(values), dtype=bool)
    unseen[list(unseen_hois)] = True
    groups = {
        "full": scored,
        "rare": scored & rare,
        "non_rare": scored & ~rare,
        "seen": scored & ~unseen,
        "unseen": scored & unseen,
    }
    return {
        name: float(values[mask].mean()) if mask.any() else float("nan")
        for name, mask in groups.items()
    }


def hoi_map_from_matches(
    matches: Matches,
    hoi_to_object: np.ndarray,
    rare_hois: Sequence[int] = (),
    unseen_hois: Sequence[int] = (),
    known_object: bool = False,
    ap_method: str = "official",
) -> HoiMapResult:
    """Per-HOI AP, max recall and the Full / Rare / Non-rare / Seen / Unseen means.

    rare_hois: HOIs with < 10 training instances (given, as the official count comes
    from the training set). unseen_hois: the zero-shot setting's held-out HOIs (empty:
    Seen = Full).
    """
    num_hois = len(matches.num_gt_per_hoi)
    keep = np.ones(len(matches.hoi_idx), dtype=bool)
    if known_object:
        obj = np.asarray(hoi_to_object, dtype=np.int64)[matches.hoi_idx]
        keep = matches.objects_present[matches.image_rank, obj]
    hoi_idx, is_tp = matches.hoi_idx[keep], matches.is_tp[keep]
    # keeps the ranking inside each HOI
    by_hoi = np.argsort(hoi_idx, kind="stable")
    bounds = np.searchsorted(hoi_idx[by_hoi], np.arange(num_hois + 1))
    ap = np.full(num_hois, np.nan)
    max_recall = np.full(num_hois, np.nan)
    for h in range(num_hois):
        ranked = is_tp[by_hoi[bounds[h] : bounds[h + 1]]]
        ap[h], max_recall[h] = average_precision(
            ranked, int(matches.num_gt_per_hoi[h]), ap_method
        )
    num_gt = matches.num_gt_per_hoi
    return HoiMapResult(
        ap,
        max_recall,
        num_gt.copy(),
        _group_means(ap, num_gt, rare_hois, unseen_hois),
        _group_means(max_recall, num_gt, rare_hois, unseen_hois),
        ap_method,
        known_object,
    )


def evaluate_hoi_map(
    gt: Mapping[str, ImageGT],
    detections: Mapping[str, ImageDetections],
    hoi_to_object: np.ndarray,
    rare_hois: Sequence[int] = (),
    unseen_hois: Sequence[int] = (),
    known_object: bool = False,
    ap_method: str = "official",
    iou_threshold: float = 0.5,
) -> HoiMapResult:
    """HICO-DET mAP of `detections` against `gt` (see the module docstring for the
    rules).

    hoi_to_object: (num_hois,) int64, also fixes num_hois. To get both modes, call
    `match_detections` once and `hoi_map_from_matches` twice.
    """
    hoi_to_object = np.asarray(hoi_to_object, dtype=np.int64)
    matches = match_detections(
        gt, detections, len(hoi_to_object), hoi_to_object, iou_threshold
    )
    return hoi_map_from_matches(
        matches, hoi_to_object, rare_hois, unseen_hois, known_object, ap_method
    )


def detections_from_triplets(
    human_boxes_xyxy: np.ndarray,
    object_boxes_xyxy: np.ndarray,
    verb_idx: np.ndarray,
    object_idx: np.ndarray,
    scores: np.ndarray,
    hoi_index: np.ndarray,
) -> ImageDetections:
    """Detections of one image from (verb, object) triplets; pairs that are no HOI are
    dropped.

    hoi_index: (num_verbs, num_objects) int64 from Vocabulary.hoi_index(), -1 = not a
    HOI. Such triplets can never be true positives and no official category scores them
    (CDN's evaluator skips them too), so they are removed rather than refused.
    """
    hoi = np.asarray(hoi_index)[
        np.asarray(verb_idx, np.int64), np.asarray(object_idx, np.int64)
    ]
    keep = hoi >= 0
    return ImageDetections(
        np.asarray(human_boxes_xyxy, np.float64).reshape(-1, 4)[keep],
        np.asarray(object_boxes_xyxy, np.float64).reshape(-1, 4)[keep],
        hoi[keep].astype(np.int64),
        np.asarray(scores, np.float64)[keep],
    )
