"""EoID's training losses: CDN's set loss, focal + distillation verb loss,
interactive-score CE.

Every decoder layer (final and each aux) gets its own two-stage matching and its own
terms; aux terms carry the suffix `_{i}` (i = 0 for the first decoder layer), as in
DETR. Terms are unweighted; `loss_weights(LossConfig)` and `weighted_sum` apply the
weights. Nothing here talks to torch.distributed: each term is a sum divided by a count,
and the runner may pass `average_counts`, which replaces every count by its mean over
ranks, so that DDP's gradient mean over N processes of B images equals one process of
N*B images.

Counts: box L1/GIoU (human and object) = matched pairs of the final layer, for the aux
layers too, as the original counts them once per batch (it divides object terms by the
count of non-zero object boxes: the same on HICO-DET); focal verb loss = positive
entries (as the original, but global); distillation BCE = see `distill_verb_loss`;
object CE = the class weights of its targets (a weighted mean); IS CE = the queries not
ignored (a mean).

A term is one function of a `LayerBatch` and one row of `TERMS` (name, function, weight
field, normaliser). A new term: write `loss_x`, add its row, add its weight to
LossConfig (with its range in config.RANGES).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from eoid.boxes import cxcywh_to_xyxy, generalized_box_iou
from eoid.config import LossConfig, MatcherConfig
from eoid.config_loading import check_value
from eoid.errors import ConfigError

# re-exported: the IS loss's ignore label
from eoid.student.loss_targets import IGNORE as IGNORE

# re-exported
from eoid.student.loss_targets import interactive_targets as interactive_targets
from eoid.student.loss_targets import verb_targets as verb_targets  # re-exported
from eoid.student.matching import ImageMatch, MatchParams, match_batch
from eoid.student.model import StudentOutput
from eoid.student.targets import PairTargets


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
        # the switches' allowed values are LossConfig's (config.RANGES), declared and
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


def gather_layer(
    out: StudentOutput,
    targets: list[PairTargets],
    matches: list[ImageMatch],
    loss: LossParams,
    distill_verb_mask: Tensor,
    is_iou: float,
) -> tuple[LayerBatch, int]:
    """The LayerBatch of one decoder layer, and the number of pairs that lost a
    distillation term.
    """
    # losses in float32 under autocast
    out = StudentOutput(*(t.float() for t in out[:5]))
    batch, num_queries, num_classes = out.object_logits.shape
    device = out.object_logits.device
    obj_target = torch.full(
        (batch, num_queries), num_classes - 1, dtype=torch.long, device=device
    )
    verb_y = torch.zeros_like(out.verb_logits)
    verb_mask = torch.ones_like(out.verb_logits, dtype=torch.bool)
    is_y = torch.full((batch, num_queries), IGNORE, dtype=torch.long, device=device)
    ph, po, th, to = [], [], [], []
    num_no_teacher = 0
    for b, (tgt, m) in enumerate(zip(targets, matches)):
        tgt = tgt.to(device)
        q, t = m.query_idx.to(device), m.target_idx.to(device)
        obj_target[b, q] = tgt.object_classes[t]
        y, mask, no_teacher = verb_targets(
            tgt, t, loss.distill, distill_verb_mask, loss.teacher_on_no_interaction
        )
        verb_y[b, q], verb_mask[b, q] = y, mask
        num_no_teacher += int(no_teacher.sum())
        if loss.interactive:
            is_y[b] = interactive_targets(
                out.human_boxes_cxcywh[b],
                out.object_boxes_cxcywh[b],
                tgt,
                m,
                is_iou,
                loss.is_positives,
                loss.no_interaction_verb,
            )
        (
            ph.append(out.human_boxes_cxcywh[b, q]),
            po.append(out.object_boxes_cxcywh[b, q]),
        )
        th.append(tgt.human_boxes_cxcywh[t]), to.append(tgt.object_boxes_cxcywh[t])
    class_weight = torch.ones(num_classes, device=device)
    class_weight[-1] = loss.no_object_weight
    ph, po, th, to = torch.cat(ph), torch.cat(po), torch.cat(th), torch.cat(to)
    # (B, Q)
    ce = F.cross_entropy(
        out.object_logits.transpose(1, 2), obj_target, reduction="none"
    )
    layer = LayerBatch(
        out,
        loss,
        ce,
        class_weight[obj_target],
        verb_y,
        verb_mask,
        is_y.flatten(),
        ph,
        po,
        th,
        to,
        (to != 0).any(1),
    )
    return layer, num_no_teacher


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


def layer_losses(
    out: StudentOutput,
    targets: list[PairTargets],
    matches: list[ImageMatch],
    loss: LossParams,
    distill_verb_mask: Tensor,
    is_iou: float,
) -> tuple[dict[str, Tensor], dict[str, float], dict[str, int]]:
    """Summed loss terms of one decoder layer given its matching, their counts, and
    stats.

    Each term's loss is its sum divided by a count (see `TERMS`); `compute_losses`
    divides. Counts: each term's own count under its name, and "pairs" (the matched
    pairs).
    """
    layer, num_no_teacher = gather_layer(
        out, targets, matches, loss, distill_verb_mask, is_iou
    )
    num_pairs = sum(len(m.query_idx) for m in matches)
    sums: dict[str, Tensor] = {}
    counts = {"pairs": float(num_pairs)}
    for term in active_terms(loss):
        sums[term.name], count = term.summed(layer)
        if count is not None:
            counts[term.name] = count
    is_flat = layer.is_y
    stats = {
        "num_pairs": num_pairs,
        "num_labelled_matched": sum(m.num_stage1 for m in matches),
        "num_unknown_assigned": sum(len(m.stage2_query_idx) for m in matches),
        "num_unknown_gated": sum(int(m.stage2_gated.sum()) for m in matches),
        "num_unknown_selected": num_pairs - sum(m.num_stage1 for m in matches),
        "num_no_teacher": num_no_teacher,
        "num_is_positive": int((is_flat == 1).sum()),
        "num_is_ignored": int((is_flat == IGNORE).sum()) if loss.interactive else 0,
    }
    return sums, counts, stats


def _giou_loss(pred_cxcywh: Tensor, tgt_cxcywh: Tensor) -> Tensor:
    """Sum of 1 - GIoU over aligned box pairs (N, 4) cxcywh."""
    if len(pred_cxcywh) == 0:
        return pred_cxcywh.sum() * 0
    giou = generalized_box_iou(cxcywh_to_xyxy(pred_cxcywh), cxcywh_to_xyxy(tgt_cxcywh))
    return (1 - giou.diagonal()).sum()


# ---------------------------------------------------------------- all layers


def decoder_layers(outputs: StudentOutput) -> list[tuple[str, StudentOutput]]:
    """(suffix, output) per decoder layer: ("", final) first, then ("_0", first layer),
    ...
    """
    return [("", outputs)] + [(f"_{i}", a) for i, a in enumerate(outputs.aux)]


def negative_verbs_for_cost(distill: bool, distill_verb_mask: Tensor) -> Tensor:
    """Verbs whose 0 label is a negative in the matching cost: all without distillation,
    else those the teacher does not fill (EoID's `seen_mask == 0`)."""
    return torch.ones_like(distill_verb_mask) if not distill else ~distill_verb_mask


def match_layers(
    outputs: StudentOutput,
    targets: list[PairTargets],
    distill_verb_mask: Tensor,
    distill: bool = True,
    params: MatchParams = MatchParams(),
) -> list[list[ImageMatch]]:
    """Each decoder layer's own two-stage matching, in `decoder_layers` order."""
    negative = negative_verbs_for_cost(distill, distill_verb_mask.bool())
    return [
        match_batch(
            o.human_boxes_cxcywh,
            o.object_boxes_cxcywh,
            o.object_logits,
            o.verb_logits,
            o.interactive_logits,
            targets,
            negative,
            params,
        )
        for _, o in decoder_layers(outputs)
    ]


def compute_losses(
    outputs: StudentOutput,
    targets: list[PairTargets],
    distill_verb_mask: Tensor,
    match: MatchParams = MatchParams(),
    loss: LossParams = LossParams(),
    average_counts: Callable[[dict[str, float]], dict[str, float]] | None = None,
    matches: list[list[ImageMatch]] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All unweighted loss terms of a batch (final layer + aux layers) and the final
    layer's counts.

    distill_verb_mask (V,) bool: verbs the teacher fills. average_counts: maps this
    process's counts (one flat dict) to their mean over ranks (the runner's all-reduce);
    None = local. matches: from `match_layers`, if the caller already has them; None =
    match here.
    """
    mask = distill_verb_mask.bool()
    if matches is None:
        matches = match_layers(outputs, targets, mask, loss.distill, match)
    sums: dict[str, Tensor] = {}
    counts: dict[str, float] = {}
    stats: dict[str, Any] = {}
    for (suffix, out), layer_matches in zip(decoder_layers(outputs), matches):
        layer_sums, layer_counts, layer_stats = layer_losses(
            out, targets, layer_matches, loss, mask, match.is_iou
        )
        sums.update({k + suffix: v for k, v in layer_sums.items()})
        counts.update({k + suffix: v for k, v in layer_counts.items()})
        if suffix == "":
            stats = dict(layer_stats)
    if average_counts is not None:
        counts = average_counts(counts)
    pairs = max(counts["pairs"], 1.0)
    terms = {}
    for suffix, _ in decoder_layers(outputs):
        for term in active_terms(loss):
            name = term.name + suffix
            own = divides_by_own_count(term, loss)
            terms[name] = sums[name] / (max(counts[name], 1.0) if own else pairs)
    terms = {k: terms[k] for k in sums}  # the order of the sums
    stats["num_pairs_normaliser"] = pairs
    return terms, stats


# ---------------------------------------------------------------- weights and config
# mapping


def loss_weights(cfg: LossConfig) -> dict[str, float]:
    """Weight of each term name (without layer suffix), from the config."""
    return {term.name: float(getattr(cfg, term.weight)) for term in TERMS}


def weighted_sum(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """sum_k weights[base(k)] * terms[k]; base strips the aux suffix `_{i}`. Zero
    weights skip.
    """
    total = None
    for key, value in terms.items():
        w = weights[re.sub(r"_\d+$", "", key)]
        if w:
            total = value * w if total is None else total + value * w
    return total if total is not None else next(iter(terms.values())) * 0


@dataclass(frozen=True)
class Criterion:
    """The matcher and loss values of one run; `match` then `__call__`, or `__call__`
    alone.
    """

    distill_verb_mask: Tensor  # (V,) bool: verbs the teacher fills
    match_params: MatchParams = MatchParams()
    loss_params: LossParams = LossParams()

    def match(
        self, outputs: StudentOutput, targets: list[PairTargets]
    ) -> list[list[ImageMatch]]:
        return match_layers(
            outputs,
            targets,
            self.distill_verb_mask,
            self.loss_params.distill,
            self.match_params,
        )

    def __call__(
        self,
        outputs: StudentOutput,
        targets: list[PairTargets],
        matches: list[list[ImageMatch]] | None = None,
        average_counts: Callable[[dict[str, float]], dict[str, float]] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return compute_losses(
            outputs,
            targets,
            self.distill_verb_mask,
            self.match_params,
            self.loss_params,
            average_counts,
            matches,
        )


def build_criterion(
    matcher: MatcherConfig,
    loss: LossConfig,
    num_verbs: int,
    unseen_verb_mask: Tensor | None = None,
    no_interaction_verb: int | None = None,
) -> Criterion:
    """Map the configs to a Criterion. unseen_verb_mask (V,) bool: the setting's
    unseen verbs, needed when loss.a_u_only is set (the teacher then fills those
    verbs only); no_interaction_verb: its verb index (the "overlap" IS rule needs
    it), None if there is none."""
    if loss.a_u_only:
        if unseen_verb_mask is None or not bool(unseen_verb_mask.any()):
            raise ConfigError(
                "loss.a_u_only = true needs a zero-shot setting with unseen verbs "
                '(UA); set data.setting = "ua" or loss.a_u_only = false'
            )
        mask = unseen_verb_mask.bool()
    else:
        mask = torch.ones(num_verbs, dtype=torch.bool)
    # the params carry the config fields of the same names; distill and the IS term are
    # on when their weights are above 0 (at 0 they are not computed at all)
    loss_values = {
        f.name: getattr(loss, f.name)
        for f in dataclasses.fields(LossParams)
        if f.name != "no_interaction_verb"
    }
    return Criterion(
        mask,
        MatchParams(**dataclasses.asdict(matcher)),
        LossParams(
            **{
                **loss_values,
                "distill": loss.distill > 0,
                "interactive": loss.interactive > 0,
                "no_interaction_verb": (
                    -1 if no_interaction_verb is None else no_interaction_verb
                ),
            }
        ),
    )
