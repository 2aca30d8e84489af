"""EoID's loss terms, one function and one `TERMS` row each, and what they read.

A term is a function of a `LayerBatch` (one decoder layer's predictions set against its
matching) that returns its sum over the batch and, when its own count divides it, that
count; its row in `TERMS` names it and gives its LossConfig weight field, its normaliser
and the LossParams switch that turns it on. `LossParams` holds the loss values a run
reads, the focal and distillation sums are here, and `loss_weights` maps a LossConfig to
each term's weight. The criterion that builds the batches, runs the terms over every
decoder layer and divides them is in losses.py. A new term: write `loss_x`, add its
row, add its weight to LossConfig (with its range in config_loading.RANGES).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from eoid.boxes import cxcywh_to_xyxy, generalized_box_iou
from eoid.config import LossConfig
from eoid.config_loading import check_value
from eoid.student.loss_targets import IGNORE
from eoid.student.model import StudentOutput


@dataclass(frozen=True)
class LossParams:
    """The loss values of a run (LossConfig's non-weight fields; EoID defaults)."""

    # teacher targets fill the verbs of distill_verb_mask
    distill: bool = True
    distill_norm: str = "tensor"  # see distill_verb_loss
    # the IS term is computed (off: absent, as CDN has none)
    interactive: bool = True
    is_positives: str = "overlap"  # IS target rule, see interactive_targets
    # verb index of no_interaction (-1: the vocabulary has none)
    no_interaction_verb: int = -1
    # class weight of "no object" in the object CE
    no_object_weight: float = 0.1
    focal_alpha: float = 0.5
    focal_gamma: float = 2.0
    teacher_on_no_interaction: bool = True  # see verb_targets

    def __post_init__(self) -> None:
        # the switches' allowed values are LossConfig's (config_loading.RANGES), declared and
        # checked there
        for name in ("distill_norm", "is_positives"):
            check_value(LossConfig, name, getattr(self, name), "the loss values")


# ---------------------------------------------------------------- loss terms of one
# layer


def focal_verb_sum(
    logits: Tensor, y: Tensor, mask: Tensor, alpha: float, gamma: float
) -> tuple[Tensor, int]:
    """EoID's focal loss on entries exactly 0 or 1 (and in mask): (sum, number of
    positives).
    """
    pos = (y == 1) & mask
    neg = (y == 0) & mask
    p = logits.sigmoid()
    pos_loss = alpha * F.logsigmoid(logits) * (1 - p) ** gamma
    neg_loss = (1 - alpha) * F.logsigmoid(-logits) * p**gamma
    return -((pos_loss * pos).sum() + (neg_loss * neg).sum()), int(pos.sum())


def focal_verb_loss(
    logits: Tensor, y: Tensor, mask: Tensor, alpha: float, gamma: float
) -> Tensor:
    """EoID's focal loss on entries exactly 0 or 1 (and in mask), summed /
    max(#positives, 1).
    """
    total, num_pos = focal_verb_sum(logits, y, mask, alpha, gamma)
    return total / max(num_pos, 1)


def distill_verb_loss(
    logits: Tensor, y: Tensor, mask: Tensor, norm: str, num_pairs: float
) -> Tensor:
    """BCE on soft entries (0 < y < 1, in mask). logits, y, mask: (B, Q, V).

    norm "tensor": sum / (B*Q*V), the original; "pairs": sum / num_pairs (matched
    pairs). Neither depends on the batch B relative to the other terms, all of which are
    batch means: against the focal term (divided by its positives, about B * n with n
    positive labels per image) a soft entry weighs (w_distill / w_focal) * n / (Q*V)
    with "tensor" and (w_distill / w_focal) * n / (matched pairs per image) with
    "pairs".
    """
    return distill_verb_sum(logits, y, mask) / (
        logits.numel() if norm == "tensor" else num_pairs
    )


def distill_verb_sum(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Sum of the BCE on soft entries (0 < y < 1, in mask)."""
    soft = (y > 0) & (y < 1) & mask
    return (
        F.binary_cross_entropy_with_logits(logits, y, reduction="none") * soft
    ).sum()


@dataclass(frozen=True)
class LayerBatch:
    """One decoder layer's predictions set against its matching: what every loss term
    reads.

    P = the matched pairs of the batch, in image order; boxes cxcywh, normalised.
    """

    out: StudentOutput  # the layer's outputs in float32
    params: LossParams
    # (B, Q) cross entropy of each query against its object target
    object_ce: Tensor
    # (B, Q) class weight of that target (no object: no_object_weight)
    object_weight: Tensor
    # (B, Q, V) verb targets: hard 0/1 or the teacher's probability
    verb_y: Tensor
    verb_mask: Tensor  # (B, Q, V) bool, entries with a verb loss
    is_y: Tensor  # (B * Q,) interactive-score targets in {0, 1, IGNORE}
    pred_human: Tensor  # (P, 4) matched predictions
    pred_object: Tensor  # (P, 4)
    tgt_human: Tensor  # (P, 4) their ground-truth pairs
    tgt_object: Tensor  # (P, 4)
    # (P,) bool: all-zero object box = role-less action, no object box loss
    real_object: Tensor


# ---------------------------------------------------------------- the terms: one
# function, one row each A term returns its sum over the batch and, when its own count
# divides it, that count.

Summed = tuple[Tensor, "float | None"]


def loss_obj_ce(b: LayerBatch) -> Summed:
    """Object-class CE, a weighted mean: divided by the class weights of the targets."""
    return (b.object_ce * b.object_weight).sum(), float(b.object_weight.sum())


def loss_human_l1(b: LayerBatch) -> Summed:
    return F.l1_loss(b.pred_human, b.tgt_human, reduction="sum"), None


def loss_object_l1(b: LayerBatch) -> Summed:
    real = b.real_object
    return F.l1_loss(b.pred_object[real], b.tgt_object[real], reduction="sum"), None


def loss_human_giou(b: LayerBatch) -> Summed:
    return _giou_loss(b.pred_human, b.tgt_human), None


def loss_object_giou(b: LayerBatch) -> Summed:
    return _giou_loss(b.pred_object[b.real_object], b.tgt_object[b.real_object]), None


def loss_verb_focal(b: LayerBatch) -> Summed:
    """Focal verb loss on hard entries, divided by its positive entries."""
    focal, num_pos = focal_verb_sum(
        b.out.verb_logits,
        b.verb_y,
        b.verb_mask,
        b.params.focal_alpha,
        b.params.focal_gamma,
    )
    return focal, float(num_pos)


def loss_verb_distill(b: LayerBatch) -> Summed:
    """BCE on the teacher's soft entries; its own count is the verb entries (B * Q * V)."""
    return distill_verb_sum(b.out.verb_logits, b.verb_y, b.verb_mask), float(
        b.out.verb_logits.numel()
    )


def loss_is(b: LayerBatch) -> Summed:
    """Interactive-score CE, a mean over the queries not ignored."""
    kept = b.is_y != IGNORE
    is_logits = b.out.interactive_logits.flatten(0, 1)
    total = (
        F.cross_entropy(is_logits[kept], b.is_y[kept], reduction="sum")
        if kept.any()
        else is_logits.sum() * 0
    )
    return total, float(kept.sum())


@dataclass(frozen=True)
class Term:
    """One loss term: its name, the function that sums it, its LossConfig weight, what
    divides it.
    """

    name: str
    summed: Callable[[LayerBatch], Summed]
    weight: str  # the LossConfig field of its weight
    # "pairs": the final layer's matched pairs (for every layer, as the original counts
    # them); "own": the count `summed` returns; "distill_norm": as loss.distill_norm
    # says ("tensor" = own)
    normaliser: str
    # the LossParams flag that turns the term on ("" = always on)
    switch: str = ""


TERMS = (  # in this order in every layer's terms
    Term("loss_obj_ce", loss_obj_ce, "object_ce", "own"),
    Term("loss_human_l1", loss_human_l1, "box_l1", "pairs"),
    Term("loss_object_l1", loss_object_l1, "box_l1", "pairs"),
    Term("loss_human_giou", loss_human_giou, "giou", "pairs"),
    Term("loss_object_giou", loss_object_giou, "giou", "pairs"),
    Term("loss_verb_focal", loss_verb_focal, "verb_focal", "own"),
    Term(
        "loss_verb_distill",
        loss_verb_distill,
        "distill",
        "distill_norm",
        switch="distill",
    ),
    Term("loss_is", loss_is, "interactive", "own", switch="interactive"),
)


def active_terms(loss: LossParams) -> list[Term]:
    """The terms this run computes (the distillation and IS terms only when switched
    on).
    """
    return [t for t in TERMS if not t.switch or getattr(loss, t.switch)]


def divides_by_own_count(term: Term, loss: LossParams) -> bool:
    """Whether the term's own count divides it (else the final layer's matched pairs)."""
    return term.normaliser == "own" or (
        term.normaliser == "distill_norm" and loss.distill_norm == "tensor"
    )


def _giou_loss(pred_cxcywh: Tensor, tgt_cxcywh: Tensor) -> Tensor:
    """Sum of 1 - GIoU over aligned box pairs (N, 4) cxcywh."""
    if len(pred_cxcywh) == 0:
        return pred_cxcywh.sum() * 0
    giou = generalized_box_iou(cxcywh_to_xyxy(pred_cxcywh), cxcywh_to_xyxy(tgt_cxcywh))
    return (1 - giou.diagonal()).sum()


def loss_weights(cfg: LossConfig) -> dict[str, float]:
    """Weight of each term name (without layer suffix), from the config."""
    return {term.name: float(getattr(cfg, term.weight)) for term in TERMS}
