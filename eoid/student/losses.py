"""EoID's training losses: CDN's set loss, focal + distillation verb loss, interactive-score CE.

Every decoder layer (final and each aux) gets its own two-stage matching and its own terms;
aux terms carry the suffix `_{i}` (i = 0 for the first decoder layer), as in DETR. Terms are
unweighted; `loss_weights(LossConfig)` and `weighted_sum` apply the weights. Nothing here
talks to torch.distributed: each term is a sum divided by a count, and the runner may pass
`average_counts`, which replaces every count by its mean over ranks, so that DDP's gradient
mean over N processes of B images equals one process of N*B images.

Counts: box L1/GIoU (human and object) = matched pairs of the final layer, for the aux layers
too, as the original counts them once per batch (it divides object terms by the count of
non-zero object boxes: the same on HICO-DET); focal verb loss = positive entries (as the
original, but global); distillation BCE = see `distill_verb_loss`; object CE = the class
weights of its targets (a weighted mean); IS CE = the queries not ignored (a mean).
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
from eoid.errors import ConfigError
from eoid.student.matching import ImageMatch, MatchParams, match_batch, pair_min_iou
from eoid.student.model import StudentOutput
from eoid.student.targets import PairTargets

IGNORE = -100   # interactive-score target of a query left out of the IS loss
DISTILL_NORMS = ("tensor", "pairs")
IS_POSITIVES = ("overlap", "matched")   # see interactive_targets


@dataclass(frozen=True)
class LossParams:
    """The loss values of a run (LossConfig's non-weight fields; EoID defaults)."""
    distill: bool = True                      # teacher targets fill the verbs of distill_verb_mask
    distill_norm: str = "tensor"              # see distill_verb_loss
    interactive: bool = True                  # the IS term is computed (off: absent, as CDN has none)
    is_positives: str = "overlap"             # IS target rule, see interactive_targets
    no_interaction_verb: int = -1             # verb index of no_interaction (-1: the vocabulary has none)
    no_object_weight: float = 0.1             # class weight of "no object" in the object CE
    focal_alpha: float = 0.5
    focal_gamma: float = 2.0
    teacher_on_no_interaction: bool = True    # see verb_targets


# ---------------------------------------------------------------- targets

def verb_targets(target: PairTargets, target_idx: Tensor, distill: bool,
                 distill_verb_mask: Tensor, teacher_on_no_interaction: bool = True
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Verb targets of matched pairs: 1 where a seen verb is labelled, else the teacher prob.

    target_idx (P,) rows of `target`; distill_verb_mask (V,) bool: verbs the teacher may fill
    (all, or the unseen ones for A_U only); others keep their hard label. A pair without a
    teacher row (`teacher_hit` False) gets no loss on the entries the teacher would fill.
    teacher_on_no_interaction False: pairs labelled only no_interaction keep their hard 0s
    (the teacher's softmax has no no_interaction entry, so it must put their mass on a verb).
    Returns (targets (P, V) float, loss_mask (P, V) bool, no_teacher (P,) bool: pairs that
    lost a distillation term).
    """
    hard = target.verb_labels[target_idx]
    if not distill:
        return hard, torch.ones_like(hard, dtype=torch.bool), torch.zeros(len(hard), dtype=torch.bool,
                                                                          device=hard.device)
    fill = distill_verb_mask.to(hard.device)[None, :] & (hard != 1)
    if not teacher_on_no_interaction:
        fill &= ~(target.labelled & ~target.interactive)[target_idx][:, None]
    hit = target.teacher_hit[target_idx][:, None]
    soft = torch.where(fill & hit, target.teacher_verb_probs[target_idx].to(hard.dtype), hard)
    no_teacher = ~target.teacher_hit[target_idx] & fill.any(1)
    return soft, ~(fill & ~hit), no_teacher


def interactive_targets(pred_h: Tensor, pred_o: Tensor, target: PairTargets, match: ImageMatch,
                        is_iou: float, rule: str = "matched", no_interaction_verb: int = -1) -> Tensor:
    """IS targets of one image's queries: (Q,) int64 in {0, 1, IGNORE}. pred_h, pred_o: (Q, 4) cxcywh.

    "Reaching" a pair means min(IoU human, IoU object) >= `is_iou` (plain IoU, this layer's boxes).
    rule "matched" (the paper's text): 1 for a trained query (stage-1 match or selected unknown
    match) that reaches its own pair, when that pair is interactive (labelled with a verb other
    than no_interaction) or unknown; IGNORE for any untrained query reaching an unknown pair;
    0 for the rest.
    rule "overlap" (the original code, EoID.py loss_is): 1 for every query, trained or not, that
    reaches any labelled pair without no_interaction among its labels (`no_interaction_verb`),
    and for every selected unknown match; IGNORE for any other query, trained or not, reaching
    an unknown pair; 0 for the rest.
    """
    num_queries, device = len(pred_h), pred_h.device
    y = torch.zeros(num_queries, dtype=torch.long, device=device)
    if len(target.labelled) == 0:
        return y
    iou = pair_min_iou(pred_h.detach(), pred_o.detach(), target.human_boxes_cxcywh,
                       target.object_boxes_cxcywh)                                    # (Q, P)
    q, t = match.query_idx.to(device), match.target_idx.to(device)
    reaches_unknown = (iou[:, ~target.labelled] >= is_iou).any(1)
    if rule == "overlap":
        source = target.labelled.clone()   # the original's st == 0 and is_mask == 1
        if no_interaction_verb >= 0:
            source &= target.verb_labels[:, no_interaction_verb] == 0
        positive = (iou[:, source] >= is_iou).any(1)
        positive[q[match.num_stage1:]] = True
        y[reaches_unknown & ~positive] = IGNORE
        y[positive] = 1
        return y
    positive = (iou[q, t] >= is_iou) & (target.interactive[t] | ~target.labelled[t])
    trained = torch.zeros(num_queries, dtype=torch.bool, device=device)
    trained[q] = True
    y[reaches_unknown & ~trained] = IGNORE
    y[q[positive]] = 1
    return y


# ---------------------------------------------------------------- loss terms of one layer

def focal_verb_sum(logits: Tensor, y: Tensor, mask: Tensor, alpha: float, gamma: float
                   ) -> tuple[Tensor, int]:
    """EoID's focal loss on entries exactly 0 or 1 (and in mask): (sum, number of positives)."""
    pos = (y == 1) & mask
    neg = (y == 0) & mask
    p = logits.sigmoid()
    pos_loss = alpha * F.logsigmoid(logits) * (1 - p) ** gamma
    neg_loss = (1 - alpha) * F.logsigmoid(-logits) * p ** gamma
    return -((pos_loss * pos).sum() + (neg_loss * neg).sum()), int(pos.sum())


def focal_verb_loss(logits: Tensor, y: Tensor, mask: Tensor, alpha: float, gamma: float) -> Tensor:
    """EoID's focal loss on entries exactly 0 or 1 (and in mask), summed / max(#positives, 1)."""
    total, num_pos = focal_verb_sum(logits, y, mask, alpha, gamma)
    return total / max(num_pos, 1)


def distill_verb_loss(logits: Tensor, y: Tensor, mask: Tensor, norm: str, num_pairs: float) -> Tensor:
    """BCE on soft entries (0 < y < 1, in mask). logits, y, mask: (B, Q, V).

    norm "tensor": sum / (B*Q*V), the original; "pairs": sum / num_pairs (matched pairs).
    Neither depends on the batch B relative to the other terms, all of which are batch means:
    against the focal term (divided by its positives, about B * n with n positive labels per
    image) a soft entry weighs (w_distill / w_focal) * n / (Q*V) with "tensor" and
    (w_distill / w_focal) * n / (matched pairs per image) with "pairs".
    """
    return distill_verb_sum(logits, y, mask) / (logits.numel() if norm == "tensor" else num_pairs)


def distill_verb_sum(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Sum of the BCE on soft entries (0 < y < 1, in mask)."""
    soft = (y > 0) & (y < 1) & mask
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * soft).sum()


def layer_losses(out: StudentOutput, targets: list[PairTargets], matches: list[ImageMatch],
                 loss: LossParams, distill_verb_mask: Tensor, is_iou: float
                 ) -> tuple[dict[str, Tensor], dict[str, float], dict[str, int]]:
    """Summed loss terms of one decoder layer given its matching, their counts, and stats.

    Each term's loss is its sum divided by a count (see `TERM_COUNT`); `compute_losses` divides.
    The distillation term exists only with `loss.distill`, the IS term only with `loss.interactive`.
    """
    out = StudentOutput(*(t.float() for t in out[:5]))   # losses in float32 under autocast
    batch, num_queries, num_classes = out.object_logits.shape
    device = out.object_logits.device
    obj_target = torch.full((batch, num_queries), num_classes - 1, dtype=torch.long, device=device)
    verb_y = torch.zeros_like(out.verb_logits)
    verb_mask = torch.ones_like(out.verb_logits, dtype=torch.bool)
    is_y = torch.full((batch, num_queries), IGNORE, dtype=torch.long, device=device)
    ph, po, th, to = [], [], [], []
    num_no_teacher = 0
    for b, (tgt, m) in enumerate(zip(targets, matches)):
        tgt = tgt.to(device)
        q, t = m.query_idx.to(device), m.target_idx.to(device)
        obj_target[b, q] = tgt.object_classes[t]
        y, mask, no_teacher = verb_targets(tgt, t, loss.distill, distill_verb_mask,
                                           loss.teacher_on_no_interaction)
        verb_y[b, q], verb_mask[b, q] = y, mask
        num_no_teacher += int(no_teacher.sum())
        if loss.interactive:
            is_y[b] = interactive_targets(out.human_boxes_cxcywh[b], out.object_boxes_cxcywh[b], tgt, m,
                                          is_iou, loss.is_positives, loss.no_interaction_verb)
        ph.append(out.human_boxes_cxcywh[b, q]), po.append(out.object_boxes_cxcywh[b, q])
        th.append(tgt.human_boxes_cxcywh[t]), to.append(tgt.object_boxes_cxcywh[t])
    class_weight = torch.ones(num_classes, device=device)
    class_weight[-1] = loss.no_object_weight
    ph, po, th, to = torch.cat(ph), torch.cat(po), torch.cat(th), torch.cat(to)
    real_obj = (to != 0).any(1)   # all-zero object box = role-less action: no object box loss
    ce = F.cross_entropy(out.object_logits.transpose(1, 2), obj_target, reduction="none")   # (B, Q)
    weight = class_weight[obj_target]
    focal, num_pos = focal_verb_sum(out.verb_logits, verb_y, verb_mask, loss.focal_alpha, loss.focal_gamma)
    sums = {
        "loss_obj_ce": (ce * weight).sum(),
        "loss_human_l1": F.l1_loss(ph, th, reduction="sum"),
        "loss_object_l1": F.l1_loss(po[real_obj], to[real_obj], reduction="sum"),
        "loss_human_giou": _giou_loss(ph, th),
        "loss_object_giou": _giou_loss(po[real_obj], to[real_obj]),
        "loss_verb_focal": focal,
    }
    num_pairs = sum(len(m.query_idx) for m in matches)
    counts = {"object_weight": float(weight.sum()), "verb_positives": float(num_pos),
              "verb_entries": float(out.verb_logits.numel()), "pairs": float(num_pairs)}
    if loss.distill:
        sums["loss_verb_distill"] = distill_verb_sum(out.verb_logits, verb_y, verb_mask)
    is_flat = is_y.flatten()
    kept = is_flat != IGNORE
    if loss.interactive:
        is_logits = out.interactive_logits.flatten(0, 1)
        sums["loss_is"] = (F.cross_entropy(is_logits[kept], is_flat[kept], reduction="sum")
                           if kept.any() else is_logits.sum() * 0)
        counts["is_queries"] = float(kept.sum())
    stats = {"num_pairs": num_pairs,
             "num_labelled_matched": sum(m.num_stage1 for m in matches),
             "num_unknown_assigned": sum(len(m.stage2_query_idx) for m in matches),
             "num_unknown_gated": sum(int(m.stage2_gated.sum()) for m in matches),
             "num_unknown_selected": num_pairs - sum(m.num_stage1 for m in matches),
             "num_no_teacher": num_no_teacher,
             "num_is_positive": int((is_flat == 1).sum()),
             "num_is_ignored": int((is_flat == IGNORE).sum()) if loss.interactive else 0}
    return sums, counts, stats


# the count each summed term is divided by ("pairs" = matched pairs of the final layer)
TERM_COUNT = {"loss_obj_ce": "object_weight", "loss_human_l1": "pairs", "loss_object_l1": "pairs",
              "loss_human_giou": "pairs", "loss_object_giou": "pairs",
              "loss_verb_focal": "verb_positives", "loss_is": "is_queries"}


def _giou_loss(pred_cxcywh: Tensor, tgt_cxcywh: Tensor) -> Tensor:
    """Sum of 1 - GIoU over aligned box pairs (N, 4) cxcywh."""
    if len(pred_cxcywh) == 0:
        return pred_cxcywh.sum() * 0
    giou = generalized_box_iou(cxcywh_to_xyxy(pred_cxcywh), cxcywh_to_xyxy(tgt_cxcywh))
    return (1 - giou.diagonal()).sum()


# ---------------------------------------------------------------- all layers

def decoder_layers(outputs: StudentOutput) -> list[tuple[str, StudentOutput]]:
    """(suffix, output) per decoder layer: ("", final) first, then ("_0", first layer), ..."""
    return [("", outputs)] + [(f"_{i}", a) for i, a in enumerate(outputs.aux)]


def negative_verbs_for_cost(distill: bool, distill_verb_mask: Tensor) -> Tensor:
    """Verbs whose 0 label is a negative in the matching cost: all without distillation,
    else those the teacher does not fill (EoID's `seen_mask == 0`)."""
    return torch.ones_like(distill_verb_mask) if not distill else ~distill_verb_mask


def match_layers(outputs: StudentOutput, targets: list[PairTargets], distill_verb_mask: Tensor,
                 distill: bool = True, params: MatchParams = MatchParams()) -> list[list[ImageMatch]]:
    """Each decoder layer's own two-stage matching, in `decoder_layers` order."""
    negative = negative_verbs_for_cost(distill, distill_verb_mask.bool())
    return [match_batch(o.human_boxes_cxcywh, o.object_boxes_cxcywh, o.object_logits,
                        o.verb_logits, o.interactive_logits, targets, negative, params)
            for _, o in decoder_layers(outputs)]


def compute_losses(outputs: StudentOutput, targets: list[PairTargets], distill_verb_mask: Tensor,
                   match: MatchParams = MatchParams(), loss: LossParams = LossParams(),
                   average_counts: Callable[[dict[str, float]], dict[str, float]] | None = None,
                   matches: list[list[ImageMatch]] | None = None
                   ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All unweighted loss terms of a batch (final layer + aux layers) and the final layer's counts.

    distill_verb_mask (V,) bool: verbs the teacher fills. average_counts: maps this process's
    counts (one flat dict) to their mean over ranks (the runner's all-reduce); None = local.
    matches: from `match_layers`, if the caller already has them; None = match here.
    """
    if loss.distill_norm not in DISTILL_NORMS:
        raise ConfigError(f"loss.distill_norm = {loss.distill_norm!r}; choose one of {DISTILL_NORMS}")
    if loss.is_positives not in IS_POSITIVES:
        raise ConfigError(f"loss.is_positives = {loss.is_positives!r}; choose one of {IS_POSITIVES}")
    mask = distill_verb_mask.bool()
    if matches is None:
        matches = match_layers(outputs, targets, mask, loss.distill, match)
    sums: dict[str, Tensor] = {}
    counts: dict[str, float] = {}
    stats: dict[str, Any] = {}
    for (suffix, out), layer_matches in zip(decoder_layers(outputs), matches):
        layer_sums, layer_counts, layer_stats = layer_losses(out, targets, layer_matches, loss, mask,
                                                             match.is_iou)
        sums.update({k + suffix: v for k, v in layer_sums.items()})
        counts.update({k + suffix: v for k, v in layer_counts.items()})
        if suffix == "":
            stats = dict(layer_stats)
    if average_counts is not None:
        counts = average_counts(counts)
    pairs = max(counts["pairs"], 1.0)
    terms = {}
    for suffix, _ in decoder_layers(outputs):
        for name in TERM_COUNT:
            if name + suffix in sums:
                count = pairs if TERM_COUNT[name] == "pairs" else max(counts[TERM_COUNT[name] + suffix], 1.0)
                terms[name + suffix] = sums[name + suffix] / count
        if loss.distill:
            terms["loss_verb_distill" + suffix] = sums["loss_verb_distill" + suffix] / (
                counts["verb_entries" + suffix] if loss.distill_norm == "tensor" else pairs)
    terms = {k: terms[k] for k in sums}   # the order of the sums
    stats["num_pairs_normaliser"] = pairs
    return terms, stats


# ---------------------------------------------------------------- weights and config mapping

_WEIGHT_FIELD = {"loss_obj_ce": "object_ce", "loss_human_l1": "box_l1", "loss_object_l1": "box_l1",
                 "loss_human_giou": "giou", "loss_object_giou": "giou",
                 "loss_verb_focal": "verb_focal", "loss_verb_distill": "distill",
                 "loss_is": "interactive"}


def loss_weights(cfg: LossConfig) -> dict[str, float]:
    """Weight of each term name (without layer suffix), from the config."""
    return {name: float(getattr(cfg, field)) for name, field in _WEIGHT_FIELD.items()}


def weighted_sum(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """sum_k weights[base(k)] * terms[k]; base strips the aux suffix `_{i}`. Zero weights skip."""
    total = None
    for key, value in terms.items():
        w = weights[re.sub(r"_\d+$", "", key)]
        if w:
            total = value * w if total is None else total + value * w
    return total if total is not None else next(iter(terms.values())) * 0


@dataclass(frozen=True)
class Criterion:
    """The matcher and loss values of one run; `match` then `__call__`, or `__call__` alone."""
    distill_verb_mask: Tensor   # (V,) bool: verbs the teacher fills
    match_params: MatchParams = MatchParams()
    loss_params: LossParams = LossParams()

    def match(self, outputs: StudentOutput, targets: list[PairTargets]) -> list[list[ImageMatch]]:
        return match_layers(outputs, targets, self.distill_verb_mask, self.loss_params.distill,
                            self.match_params)

    def __call__(self, outputs: StudentOutput, targets: list[PairTargets],
                 matches: list[list[ImageMatch]] | None = None,
                 average_counts: Callable[[dict[str, float]], dict[str, float]] | None = None
                 ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return compute_losses(outputs, targets, self.distill_verb_mask, self.match_params,
                              self.loss_params, average_counts, matches)


def build_criterion(matcher: MatcherConfig, loss: LossConfig, num_verbs: int,
                    unseen_verb_mask: Tensor | None = None, no_interaction_verb: int | None = None
                    ) -> Criterion:
    """Map the configs to a Criterion. unseen_verb_mask (V,) bool: the setting's unseen verbs,
    needed when loss.a_u_only is set (the teacher then fills those verbs only);
    no_interaction_verb: its verb index (the "overlap" IS rule needs it), None if there is none."""
    if loss.a_u_only:
        if unseen_verb_mask is None or not bool(unseen_verb_mask.any()):
            raise ConfigError("loss.a_u_only = true needs a zero-shot setting with unseen verbs "
                              "(UA); set data.setting = \"ua\" or loss.a_u_only = false")
        mask = unseen_verb_mask.bool()
    else:
        mask = torch.ones(num_verbs, dtype=torch.bool)
    # the params carry the config fields of the same names; distill and the IS term are on
    # when their weights are above 0 (at 0 they are not computed at all)
    loss_values = {f.name: getattr(loss, f.name) for f in dataclasses.fields(LossParams)
                   if f.name != "no_interaction_verb"}
    return Criterion(mask, MatchParams(**dataclasses.asdict(matcher)),
                     LossParams(**{**loss_values, "distill": loss.distill > 0,
                                   "interactive": loss.interactive > 0,
                                   "no_interaction_verb": -1 if no_interaction_verb is None
                                   else no_interaction_verb}))
