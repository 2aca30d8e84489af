"""CDN's post-processing: triplet scores, top-k per image, triplet NMS, boxes in
original pixels.

Triplet score of (query q, verb v) = sigmoid(verb logit) x max softmax over the real
object classes (x the interactive probability when switched on; EoID leaves it off),
times an optional object-verb validity mask. Then the top `top_k` per image, then CDN's
`use_nms_filter`: greedy NMS within each (object class, verb) group, suppressing a
triplet whose overlap IoU_h^alpha x IoU_o^beta (+1-pixel IoU, as CDN) with a kept one
exceeds the threshold. NMS runs after the top-k cut, so fewer than top_k may remain.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from eoid.boxes import box_iou_plus1_np, cxcywh_to_xyxy
from eoid.config import PostprocessConfig
from eoid.student.model import StudentOutput


class ImagePredictions(NamedTuple):
    """Triplets of one image, best first. N <= top_k."""

    human_boxes_xyxy_px: np.ndarray  # (N, 4) float32, pixels of the original image
    object_boxes_xyxy_px: np.ndarray  # (N, 4) float32
    object_classes: np.ndarray  # (N,) int64 object index
    verbs: np.ndarray  # (N,) int64 verb index
    scores: np.ndarray  # (N,) float32
    query_idx: np.ndarray  # (N,) int64 query that predicted the triplet


def triplet_nms(
    human_xyxy: np.ndarray,
    object_xyxy: np.ndarray,
    object_classes: np.ndarray,
    verbs: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.7,
    alpha: float = 1.0,
    beta: float = 0.5,
) -> np.ndarray:
    """Indices kept by CDN's pairwise NMS, in descending score order. Inputs (N, 4) /
    (N,).
    """
    keep: list[int] = []
    groups = (
        np.stack([object_classes, verbs], axis=1)
        if len(scores)
        else np.zeros((0, 2), int)
    )
    for group in np.unique(groups, axis=0):
        idx = np.nonzero((groups == group).all(1))[0]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        overlap = (
            box_iou_plus1_np(human_xyxy[idx], human_xyxy[idx]) ** alpha
            * box_iou_plus1_np(object_xyxy[idx], object_xyxy[idx]) ** beta
        )
        alive = np.ones(len(idx), dtype=bool)
        for i in range(len(idx)):
            if alive[i]:
                keep.append(int(idx[i]))
                alive[i + 1 :] &= overlap[i, i + 1 :] <= threshold
    keep_arr = np.asarray(keep, dtype=np.int64)
    return keep_arr[np.argsort(-scores[keep_arr], kind="stable")]


def postprocess(
    outputs: StudentOutput,
    original_sizes_hw: Tensor,
    *,
    top_k: int = 100,
    valid_object_verb: Tensor | None = None,
    use_nms: bool = True,
    nms_threshold: float = 0.7,
    nms_alpha: float = 1.0,
    nms_beta: float = 0.5,
    use_interactive_score: bool = False,
) -> list[ImagePredictions]:
    """Per-image triplets from the final decoder layer.

    original_sizes_hw (B, 2): height, width of each original image in pixels (boxes are
    normalised by the unpadded image, whose aspect equals the original's).
    valid_object_verb (num_objects, num_verbs) bool: possible object-verb combinations
    (others get score 0), or None.
    """
    with torch.no_grad():
        # (B, Q)
        obj_score, obj_class = outputs.object_logits.softmax(-1)[..., :-1].max(-1)
        # (B, Q, V)
        scores = outputs.verb_logits.sigmoid() * obj_score[..., None]
        if use_interactive_score:
            scores = scores * outputs.interactive_prob()[..., None]
        if valid_object_verb is not None:
            scores = scores * valid_object_verb.to(scores.device)[obj_class].to(
                scores.dtype
            )
        h, w = original_sizes_hw.to(scores.device).float().unbind(-1)
        scale = torch.stack([w, h, w, h], dim=-1)[:, None, :]
        human = (
            (cxcywh_to_xyxy(outputs.human_boxes_cxcywh) * scale).float().cpu().numpy()
        )
        obj = (
            (cxcywh_to_xyxy(outputs.object_boxes_cxcywh) * scale).float().cpu().numpy()
        )
        num_verbs = scores.shape[-1]
        top = scores.flatten(1).topk(min(top_k, scores[0].numel()), dim=1)
        top_scores, top_idx = (
            top.values.float().cpu().numpy(),
            top.indices.cpu().numpy(),
        )
        obj_class = obj_class.cpu().numpy()
    results = []
    for b in range(len(top_scores)):
        q, v = top_idx[b] // num_verbs, top_idx[b] % num_verbs
        pred = ImagePredictions(
            human[b, q],
            obj[b, q],
            obj_class[b, q].astype(np.int64),
            v.astype(np.int64),
            top_scores[b],
            q.astype(np.int64),
        )
        if use_nms:
            keep = triplet_nms(
                pred.human_boxes_xyxy_px,
                pred.object_boxes_xyxy_px,
                pred.object_classes,
                pred.verbs,
                pred.scores,
                nms_threshold,
                nms_alpha,
                nms_beta,
            )
            pred = ImagePredictions(*(a[keep] for a in pred))
        results.append(pred)
    return results


def postprocess_kwargs(cfg: PostprocessConfig) -> dict[str, object]:
    """`postprocess` keyword arguments from a PostprocessConfig."""
    return {
        "top_k": cfg.top_k,
        "use_nms": cfg.use_nms,
        "nms_threshold": cfg.nms_threshold,
        "nms_alpha": cfg.nms_alpha,
        "nms_beta": cfg.nms_beta,
        "use_interactive_score": cfg.use_interactive_score,
    }
