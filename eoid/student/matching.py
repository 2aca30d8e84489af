"""EoID's two-stage bipartite matching: cost terms, assignment and selection, each
testable alone.

Stage 1 matches the image's labelled (seen) pairs to all queries with CDN's cost. Stage
2 matches its unknown pairs to the queries stage 1 left free, without the verb term; a
stage-2 match counts only if both its boxes reach `is_iou` IoU with the pair (the
paper's gate; the original code's numpy-`in` bug is not reproduced, EOID_CODE_FACTS §3),
and of those the `topk` with interactive probability > `thres_is` are the potential
interactive pairs. All boxes are normalised cxcywh in the augmented image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from eoid.boxes import cxcywh_to_xyxy, generalized_box_iou, pair_iou
from eoid.student.targets import PairTargets


@dataclass(frozen=True)
class MatchParams:
    """The matcher's values (MatcherConfig's fields, CDN/EoID defaults)."""

    cost_box_l1: float = 2.5  # weight of L1 between cxcywh boxes
    cost_giou: float = 1.0  # weight of -GIoU
    cost_object: float = 1.0  # weight of -p(object class)
    cost_verb: float = 1.0  # weight of the verb cost; stage 1 only
    topk: int = 3  # at most this many unknown pairs trained per image
    thres_is: float = 0.5  # interactive probability a potential pair must exceed
    is_iou: float = 0.5  # IoU (both boxes) a stage-2 match needs to count


class ImageMatch(NamedTuple):
    """One image's matching at one decoder layer. Target indices are rows of its
    PairTargets.
    """

    # (M + k,) int64: queries trained as pairs; stage 1, then selected stage 2
    query_idx: Tensor
    # (M + k,) int64: the pair each of those queries is trained on
    target_idx: Tensor
    # the first num_stage1 entries come from stage 1 (labelled pairs)
    num_stage1: int
    # (S,) int64: every stage-2 assignment, before the IoU gate and top-k
    stage2_query_idx: Tensor
    stage2_target_idx: Tensor  # (S,) int64
    stage2_gated: Tensor  # (S,) bool: that assignment passed the IoU gate


# ---------------------------------------------------------------- cost terms


def box_l1_cost(pred_h: Tensor, pred_o: Tensor, tgt_h: Tensor, tgt_o: Tensor) -> Tensor:
    """CDN's box L1 cost: max over human and object of cdist-L1 of cxcywh boxes. (Q, T).

    Targets whose object box is all zero (role-less actions, V-COCO) use the human term
    only.
    """
    human, obj = torch.cdist(pred_h, tgt_h, p=1), torch.cdist(pred_o, tgt_o, p=1)
    return torch.maximum(human, _only_real_objects(obj, human, tgt_o))


def giou_cost(pred_h: Tensor, pred_o: Tensor, tgt_h: Tensor, tgt_o: Tensor) -> Tensor:
    """CDN's GIoU cost: max over human and object of -GIoU. (Q, T)."""
    human = -generalized_box_iou(cxcywh_to_xyxy(pred_h), cxcywh_to_xyxy(tgt_h))
    obj = -generalized_box_iou(cxcywh_to_xyxy(pred_o), cxcywh_to_xyxy(tgt_o))
    return torch.maximum(human, _only_real_objects(obj, human, tgt_o))


def _only_real_objects(obj_cost: Tensor, human_cost: Tensor, tgt_o: Tensor) -> Tensor:
    no_object = (tgt_o == 0).all(dim=1)
    return torch.where(no_object[None, :], human_cost, obj_cost)


def object_class_cost(object_prob: Tensor, tgt_classes: Tensor) -> Tensor:
    """-p(target class): object_prob (Q, C+1) softmax incl. no-object, tgt_classes (T,).
    (Q, T).
    """
    return -object_prob[:, tgt_classes]


def verb_cost(verb_prob: Tensor, tgt_verbs: Tensor, negative_verbs: Tensor) -> Tensor:
    """CDN/EoID verb cost (EOID_CODE_FACTS §3): -(mean recall of positives + of
    negatives) / 2.

    verb_prob (Q, V) sigmoid; tgt_verbs (T, V) hard multi-hot labels; negative_verbs
    (V,) bool: verbs whose 0 label counts as a negative (all verbs without distillation;
    with it, the verbs the teacher does not fill, i.e. the seen verbs in UA with A_U
    only, none in UC).
    """
    pos = verb_prob @ tgt_verbs.T / (tgt_verbs.sum(1)[None] + 1e-4)
    neg_t = (1 - tgt_verbs) * negative_verbs.to(tgt_verbs.dtype)[None]
    neg = (1 - verb_prob) @ neg_t.T / (neg_t.sum(1)[None] + 1e-4)
    return -(pos + neg) / 2


def pair_min_iou(
    pred_h: Tensor, pred_o: Tensor, tgt_h: Tensor, tgt_o: Tensor
) -> Tensor:
    """min(IoU of humans, IoU of objects) between predicted and target pairs, cxcywh.
    (Q, T).
    """
    return pair_iou(
        cxcywh_to_xyxy(pred_h),
        cxcywh_to_xyxy(pred_o),
        cxcywh_to_xyxy(tgt_h),
        cxcywh_to_xyxy(tgt_o),
    )


# ---------------------------------------------------------------- assignment and
# selection


def assign(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment. cost: (Q, T). Returns (query_idx,
    target_idx), int64.
    """
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(
        cols, dtype=torch.long
    )


def match_unknown(
    cost_unknown: Tensor,
    free_queries: Tensor,
    iou_ok: Tensor,
    interactive_prob: Tensor,
    topk: int,
    thres_is: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Stage 2: assign unknown pairs among the free queries, gate by IoU, keep the
    potential ones.

    cost_unknown (Q, K) box + object cost; free_queries (F,) int64; iou_ok (Q, K) bool
    (both boxes reach is_iou); interactive_prob (Q,). Returns (query_idx, unknown_idx)
    of the at most `topk` gated assignments with interactive_prob > thres_is, highest
    first, and (all_query_idx, all_unknown_idx, gated) for every assignment.
    """
    q, k = assign(cost_unknown[free_queries])
    q = free_queries[q]
    gated = iou_ok[q, k]
    keep = (gated & (interactive_prob[q] > thres_is)).nonzero().squeeze(1)
    keep = keep[interactive_prob[q[keep]].argsort(descending=True, stable=True)[:topk]]
    return q[keep], k[keep], q, k, gated


def match_image(
    pred_h: Tensor,
    pred_o: Tensor,
    object_prob: Tensor,
    verb_prob: Tensor,
    interactive_prob: Tensor,
    target: PairTargets,
    negative_verbs: Tensor,
    params: MatchParams = MatchParams(),
) -> ImageMatch:
    """Two-stage matching of one image at one decoder layer.

    pred_h, pred_o (Q, 4) cxcywh; object_prob (Q, C+1); verb_prob (Q, V);
    interactive_prob (Q,).
    """
    num_queries = len(pred_h)
    p = params
    with torch.no_grad():
        box = (
            p.cost_box_l1
            * box_l1_cost(
                pred_h, pred_o, target.human_boxes_cxcywh, target.object_boxes_cxcywh
            )
            + p.cost_giou
            * giou_cost(
                pred_h, pred_o, target.human_boxes_cxcywh, target.object_boxes_cxcywh
            )
            + p.cost_object * object_class_cost(object_prob, target.object_classes)
        )
        labelled = target.labelled.nonzero().squeeze(1)
        unknown = (~target.labelled).nonzero().squeeze(1)
        cost1 = box[:, labelled] + p.cost_verb * verb_cost(
            verb_prob, target.verb_labels[labelled], negative_verbs
        )
        q1, t1 = assign(cost1)
        t1 = labelled[t1]
        free = torch.ones(num_queries, dtype=torch.bool)
        free[q1] = False
        free_queries = free.nonzero().squeeze(1)
        empty = torch.zeros(0, dtype=torch.long)
        if len(unknown) and len(free_queries):
            iou_ok = (
                pair_min_iou(
                    pred_h,
                    pred_o,
                    target.human_boxes_cxcywh[unknown],
                    target.object_boxes_cxcywh[unknown],
                )
                >= p.is_iou
            )
            q2, k2, all_q, all_k, gated = match_unknown(
                box[:, unknown],
                free_queries,
                iou_ok.cpu(),
                interactive_prob.cpu(),
                p.topk,
                p.thres_is,
            )
            t2, all_t = unknown[k2], unknown[all_k]
        else:
            q2, t2, all_q, all_t, gated = (
                empty,
                empty,
                empty,
                empty,
                torch.zeros(0, dtype=torch.bool),
            )
    return ImageMatch(
        torch.cat([q1, q2]), torch.cat([t1, t2]), len(q1), all_q, all_t, gated
    )


def match_batch(
    pred_human_cxcywh: Tensor,
    pred_object_cxcywh: Tensor,
    object_logits: Tensor,
    verb_logits: Tensor,
    interactive_logits: Tensor,
    targets: list[PairTargets],
    negative_verbs: Tensor,
    params: MatchParams = MatchParams(),
) -> list[ImageMatch]:
    """Two-stage matching of every image of a batch at one decoder layer.

    Predictions are (B, Q, ...) as in StudentOutput (interactive_logits (B, Q, 2));
    targets: one PairTargets per image (on CPU or the predictions' device).
    Returns one ImageMatch per image, indices on the CPU.
    """
    # float32 on the CPU: scipy needs it, and bf16 (autocast) costs would round ties
    # together
    object_prob = object_logits.detach().float().softmax(-1).cpu()
    verb_prob = verb_logits.detach().float().sigmoid().cpu()
    is_prob = interactive_logits.detach().float().softmax(-1)[..., 1].cpu()
    ph, po = (
        pred_human_cxcywh.detach().float().cpu(),
        pred_object_cxcywh.detach().float().cpu(),
    )
    negative_verbs = negative_verbs.cpu()
    return [
        match_image(
            ph[b],
            po[b],
            object_prob[b],
            verb_prob[b],
            is_prob[b],
            t.to("cpu"),
            negative_verbs,
            params,
        )
        for b, t in enumerate(targets)
    ]
