"""What each matched query is trained towards: verb targets (hard labels or the teacher)
and IS targets.

Pure functions of one image's PairTargets and its matching; the losses (losses.py) read
them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eoid.student.matching import ImageMatch, pair_min_iou
from eoid.student.targets import PairTargets

IGNORE = -100  # interactive-score target of a query left out of the IS loss


def verb_targets(
    target: PairTargets,
    target_idx: Tensor,
    distill: bool,
    distill_verb_mask: Tensor,
    teacher_on_no_interaction: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Verb targets of matched pairs: 1 where a seen verb is labelled, else the teacher
    prob.

    target_idx (P,) rows of `target`; distill_verb_mask (V,) bool: verbs the teacher may
    fill (all, or the unseen ones for A_U only); others keep their hard label. A pair
    without a teacher row (`teacher_hit` False) gets no loss on the entries the teacher
    would fill. teacher_on_no_interaction False: pairs labelled only no_interaction keep
    their hard 0s (the teacher's softmax has no no_interaction entry, so it must put
    their mass on a verb). Returns (targets (P, V) float, loss_mask (P, V) bool,
    no_teacher (P,) bool: pairs that lost a distillation term).
    """
    hard = target.verb_labels[target_idx]
    if not distill:
        return (
            hard,
            torch.ones_like(hard, dtype=torch.bool),
            torch.zeros(len(hard), dtype=torch.bool, device=hard.device),
        )
    fill = distill_verb_mask.to(hard.device)[None, :] & (hard != 1)
    if not teacher_on_no_interaction:
        fill &= ~(target.labelled & ~target.interactive)[target_idx][:, None]
    hit = target.teacher_hit[target_idx][:, None]
    soft = torch.where(
        fill & hit, target.teacher_verb_probs[target_idx].to(hard.dtype), hard
    )
    no_teacher = ~target.teacher_hit[target_idx] & fill.any(1)
    return soft, ~(fill & ~hit), no_teacher


def interactive_targets(
    pred_h: Tensor,
    pred_o: Tensor,
    target: PairTargets,
    match: ImageMatch,
    is_iou: float,
    rule: str = "matched",
    no_interaction_verb: int = -1,
) -> Tensor:
    """IS targets of one image's queries: (Q,) int64 in {0, 1, IGNORE}. pred_h, pred_o:
    (Q, 4) cxcywh.

    "Reaching" a pair means min(IoU human, IoU object) >= `is_iou` (plain IoU, this
    layer's boxes). rule "matched" (the paper's text): 1 for a trained query (stage-1
    match or selected unknown match) that reaches its own pair, when that pair is
    interactive (labelled with a verb other than no_interaction) or unknown; IGNORE for
    any untrained query reaching an unknown pair; 0 for the rest. rule "overlap" (the
    original code, EoID.py loss_is): 1 for every query, trained or not, that reaches any
    labelled pair without no_interaction among its labels (`no_interaction_verb`), and
    for every selected unknown match; IGNORE for any other query, trained or not,
    reaching an unknown pair; 0 for the rest.
    """
    num_queries, device = len(pred_h), pred_h.device
    y = torch.zeros(num_queries, dtype=torch.long, device=device)
    if len(target.labelled) == 0:
        return y
    iou = pair_min_iou(
        pred_h.detach(),
        pred_o.detach(),
        target.human_boxes_cxcywh,
        # (Q, P)
        target.object_boxes_cxcywh,
    )
    q, t = match.query_idx.to(device), match.target_idx.to(device)
    reaches_unknown = (iou[:, ~target.labelled] >= is_iou).any(1)
    if rule == "overlap":
        source = target.labelled.clone()  # the original's st == 0 and is_mask == 1
        if no_interaction_verb >= 0:
            source &= target.verb_labels[:, no_interaction_verb] == 0
        positive = (iou[:, source] >= is_iou).any(1)
        positive[q[match.num_stage1 :]] = True
        y[reaches_unknown & ~positive] = IGNORE
        y[positive] = 1
        return y
    positive = (iou[q, t] >= is_iou) & (target.interactive[t] | ~target.labelled[t])
    trained = torch.zeros(num_queries, dtype=torch.bool, device=device)
    trained[q] = True
    y[reaches_unknown & ~trained] = IGNORE
    y[q[positive]] = 1
    return y
