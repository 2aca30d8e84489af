"""Loss targets on hand cases, normalisation laws, and finite gradients on the tiny
model.
"""

import math

import pytest
import torch

from eoid.config import LossConfig, MatcherConfig
from eoid.errors import ConfigError
from eoid.student.loss_targets import IGNORE, interactive_targets, verb_targets
from eoid.student.loss_terms import (
    LossParams,
    distill_verb_loss,
    focal_verb_loss,
    loss_weights,
)
from eoid.student.losses import build_criterion, compute_losses, weighted_sum
from eoid.student.matching import ImageMatch, MatchParams
from eoid.student.model import build_student
from eoid.student.targets import PairTargets

E = torch.zeros(0, dtype=torch.long)


def _targets(labelled, interactive, verbs=None, teacher=None, hit=None):
    # pair 0: human at the left, object in the middle; pair 1: both on the right
    h = torch.tensor([[0.2, 0.5, 0.2, 0.4], [0.7, 0.5, 0.2, 0.4], [0.2, 0.2, 0.1, 0.1]])
    o = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]])
    p = len(labelled)
    verbs = verbs if verbs is not None else torch.zeros(p, 3)
    return PairTargets(
        h[:p],
        o[:p],
        torch.zeros(p, dtype=torch.long),
        verbs,
        torch.tensor(labelled),
        torch.tensor(interactive),
        teacher if teacher is not None else torch.zeros(p, 3),
        torch.tensor(hit) if hit is not None else torch.ones(p, dtype=torch.bool),
    )


def _match(q, t, num_stage1):
    return ImageMatch(
        torch.tensor(q, dtype=torch.long),
        torch.tensor(t, dtype=torch.long),
        num_stage1,
        E,
        E,
        torch.zeros(0, dtype=torch.bool),
    )


def test_interactive_targets_follow_the_paper_rule():
    # pair 0 labelled interactive, pair 1 unknown
    tgt = _targets([True, False], [True, False])
    h, o = tgt.human_boxes_cxcywh, tgt.object_boxes_cxcywh

    def shifted(b: torch.Tensor) -> torch.Tensor:
        # IoU with the original well below 0.5
        return b + torch.tensor([0.15, 0, 0, 0])

    # q0: exact copy of pair 0, matched to it -> 1. q1: copy of pair 0 but not trained
    # -> 0 (the paper rewards only the matched prediction). q2: exact copy of unknown
    # pair 1, selected stage-2 match -> 1. q3: copy of unknown pair 1, not trained ->
    # ignored (may be interactive or not). q4: matched to pair 0 in stage 1 but poorly
    # overlapping -> 0.
    pred_h = torch.stack([h[0], h[0], h[1], h[1], shifted(h[0])])
    pred_o = torch.stack([o[0], o[0], o[1], o[1], o[0]])
    y = interactive_targets(
        pred_h, pred_o, tgt, _match([0, 4, 2], [0, 0, 1], 2), is_iou=0.5
    )
    assert y.tolist() == [1, 0, 1, IGNORE, 0]


def test_interactive_targets_follow_the_original_overlap_rule_on_the_same_case():
    tgt = _targets([True, False], [True, False])
    h, o = tgt.human_boxes_cxcywh, tgt.object_boxes_cxcywh
    shifted_h0 = h[0] + torch.tensor([0.15, 0, 0, 0])
    pred_h = torch.stack([h[0], h[0], h[1], h[1], shifted_h0])
    pred_o = torch.stack([o[0], o[0], o[1], o[1], o[0]])
    y = interactive_targets(
        pred_h, pred_o, tgt, _match([0, 4, 2], [0, 0, 1], 2), 0.5, "overlap"
    )
    # q1 (untrained copy of the interactive pair 0) is now a positive too; the rest as
    # above
    assert y.tolist() == [1, 1, 1, IGNORE, 0]


def test_every_query_on_a_labelled_pair_is_positive_under_overlap_only_the_matched_one_under_matched():  # noqa: E501 (a test name is one word)
    # the example: three queries on one labelled interactive pair, the first
    # matched in stage 1. q1 is the pair shifted by 0.02 in x (min IoU about 0.82): it
    # reaches the pair too; q2 is shifted by 0.3 (IoU 0).
    tgt = _targets([True], [True])
    h, o = tgt.human_boxes_cxcywh[0], tgt.object_boxes_cxcywh[0]
    pred_h = torch.stack(
        [h, h + torch.tensor([0.02, 0, 0, 0]), h + torch.tensor([0.3, 0, 0, 0])]
    )
    pred_o = o.expand(3, 4)
    match = _match([0], [0], 1)
    assert interactive_targets(pred_h, pred_o, tgt, match, 0.5, "overlap").tolist() == [
        1,
        1,
        0,
    ]
    assert interactive_targets(pred_h, pred_o, tgt, match, 0.5, "matched").tolist() == [
        1,
        0,
        0,
    ]


def test_a_matched_query_off_its_pair_but_on_an_unknown_pair_is_ignored_only_under_overlap():
    # pair 0 labelled interactive, pair 1 unknown; q0 is matched to pair 0 in stage 1
    # but sits on the unknown pair 1: "overlap" leaves it out of the loss (target 0 near
    # an unknown pair), "matched" trains it as a 0 (a trained query is never ignored)
    tgt = _targets([True, False], [True, False])
    pred_h, pred_o = tgt.human_boxes_cxcywh[1:2], tgt.object_boxes_cxcywh[1:2]
    match = _match([0], [0], 1)
    assert interactive_targets(pred_h, pred_o, tgt, match, 0.5, "overlap").tolist() == [
        IGNORE
    ]
    assert interactive_targets(pred_h, pred_o, tgt, match, 0.5, "matched").tolist() == [
        0
    ]


def test_an_untrained_query_on_both_an_interactive_and_an_unknown_pair_is_positive_under_overlap():
    # pairs 0 (labelled interactive) and 1 (unknown) share their boxes; q0 is untrained
    # and on both: "overlap" makes it a positive (1 wins over the ignore), "matched"
    # ignores it
    tgt = _targets([True, False], [True, False])
    tgt = tgt._replace(
        human_boxes_cxcywh=tgt.human_boxes_cxcywh[[0, 0]],
        object_boxes_cxcywh=tgt.object_boxes_cxcywh[[0, 0]],
    )
    pred_h, pred_o = tgt.human_boxes_cxcywh[:1], tgt.object_boxes_cxcywh[:1]
    none = _match([], [], 0)
    assert interactive_targets(pred_h, pred_o, tgt, none, 0.5, "overlap").tolist() == [
        1
    ]
    assert interactive_targets(pred_h, pred_o, tgt, none, 0.5, "matched").tolist() == [
        IGNORE
    ]


def test_a_pair_with_no_interaction_among_its_labels_is_no_overlap_source():
    # verb 2 = no_interaction; the pair is labelled hold (verb 0) and no_interaction:
    # eoid calls it interactive ("matched" rewards its matched query), the original's
    # is_mask is 0 for any pair with no_interaction among its labels, so "overlap" gives
    # 0
    tgt = _targets([True], [True], verbs=torch.tensor([[1.0, 0.0, 1.0]]))
    h, o = tgt.human_boxes_cxcywh, tgt.object_boxes_cxcywh
    match = _match([0], [0], 1)
    assert interactive_targets(h, o, tgt, match, 0.5, "matched").tolist() == [1]
    assert interactive_targets(
        h, o, tgt, match, 0.5, "overlap", no_interaction_verb=2
    ).tolist() == [0]
    # without a no_interaction verb in the vocabulary every labelled pair is a source
    assert interactive_targets(h, o, tgt, match, 0.5, "overlap").tolist() == [1]


def test_an_unknown_is_positives_rule_is_refused(tiny):
    out = tiny(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    with pytest.raises(ConfigError, match="is_positives"):
        compute_losses(
            out,
            [PairTargets.empty(3)],
            torch.ones(3, dtype=torch.bool),
            loss=LossParams(is_positives="any"),
        )


def test_labelled_no_interaction_pair_is_an_is_negative_even_when_matched_well():
    tgt = _targets([True], [False])  # only no_interaction labelled
    y = interactive_targets(
        tgt.human_boxes_cxcywh,
        tgt.object_boxes_cxcywh,
        tgt,
        _match([0], [0], 1),
        is_iou=0.5,
    )
    assert y.tolist() == [0]


def test_verb_targets_fill_unlabelled_entries_with_the_teacher():
    verbs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.4, 0.0]])
    tgt = _targets([True, False], [True, False], verbs, teacher, [True, False])
    all_verbs = torch.ones(3, dtype=torch.bool)
    y, mask, no_teacher = verb_targets(tgt, torch.tensor([0, 1]), True, all_verbs)
    # labelled 1 stays 1; others take the teacher; pair 1 has no teacher row: no loss
    # there
    assert torch.allclose(y[0], torch.tensor([1.0, 0.3, 0.2]))
    assert mask[0].all() and not mask[1].any() and no_teacher.tolist() == [False, True]
    # A_U only with verb 2 unseen: the seen verb 1 goes back to its hard 0
    y, _, _ = verb_targets(
        tgt, torch.tensor([0]), True, torch.tensor([False, False, True])
    )
    assert torch.allclose(y[0], torch.tensor([1.0, 0.0, 0.2]))
    # without distillation: hard labels only, every entry in the loss
    y, mask, _ = verb_targets(tgt, torch.tensor([0, 1]), False, all_verbs)
    assert torch.equal(y, verbs) and mask.all()


def test_teacher_can_leave_no_interaction_pairs_alone():
    # verb 0 = no_interaction; pair 0 is labelled no_interaction only, pair 1 is
    # unknown, pair 2 is interactive with verb 1
    verbs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.4, 0.6], [0.0, 0.3, 0.7], [0.0, 0.9, 0.1]])
    tgt = _targets([True, False, True], [False, False, True], verbs, teacher)
    unseen = torch.tensor([False, False, True])
    pairs = torch.tensor([0, 1, 2])
    y, mask, _ = verb_targets(tgt, pairs, True, unseen)  # the original
    assert y[:, 2].tolist() == pytest.approx([0.6, 0.7, 0.1])
    y, mask, _ = verb_targets(tgt, pairs, True, unseen, teacher_on_no_interaction=False)
    # only pair 0 changes
    assert y[:, 2].tolist() == pytest.approx([0.0, 0.7, 0.1])
    # its 0 is a hard negative
    assert mask.all()


def test_focal_loss_matches_the_formula_on_one_entry_each():
    # logit 0 -> p = .5; positive: .5 * log(.5) * .25; negative: same; / 1 positive.
    logits = torch.zeros(1, 1, 2)
    y = torch.tensor([[[1.0, 0.0]]])
    loss = focal_verb_loss(logits, y, torch.ones_like(y, dtype=torch.bool), 0.5, 2.0)
    assert math.isclose(loss.item(), -2 * 0.5 * math.log(0.5) * 0.25, rel_tol=1e-5)


def test_distill_normalisations_differ_only_by_their_denominator():
    logits = torch.randn(2, 4, 3)
    y = torch.tensor([0.0, 0.3, 1.0]).expand(2, 4, 3).contiguous()
    mask = torch.ones_like(y, dtype=torch.bool)
    per_tensor = distill_verb_loss(logits, y, mask, "tensor", num_pairs=5)
    per_pair = distill_verb_loss(logits, y, mask, "pairs", num_pairs=5)
    assert torch.allclose(per_tensor * 24, per_pair * 5)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_student("tiny", num_objects=4, num_verbs=3, num_queries=8)


def test_losses_are_finite_and_reach_every_trainable_head(tiny):
    tgt = _targets(
        [True, False],
        [True, False],
        torch.tensor([[1.0, 0, 0], [0, 0, 0]]),
        torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]),
    )
    out = tiny(torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool))
    terms, stats = compute_losses(
        out,
        [tgt, PairTargets.empty(3)],
        torch.ones(3, dtype=torch.bool),
        MatchParams(thres_is=0.0, is_iou=0.0),
    )
    assert all(torch.isfinite(v) for v in terms.values())
    assert {"loss_is", "loss_is_0", "loss_verb_distill_0"} <= set(terms)
    assert stats["num_pairs"] == 2 and stats["num_labelled_matched"] == 1
    tiny.zero_grad()
    weighted_sum(terms, loss_weights(LossConfig())).backward()
    for name in (
        "verb_class_embed.weight",
        "is_embed.weight",
        "obj_class_embed.weight",
        "sub_bbox_embed.layers.2.weight",
        "backbone.body.body.0.weight",
    ):
        grad = dict(tiny.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_pairs_without_a_teacher_row_are_counted(tiny):
    tgt = _targets([True], [True], torch.tensor([[1.0, 0, 0]]), hit=[False])
    out = tiny(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    terms, stats = compute_losses(
        out, [tgt], distill_verb_mask=torch.ones(3, dtype=torch.bool)
    )
    assert stats["num_no_teacher"] == 1 and terms["loss_verb_distill"] == 0


def test_weighted_sum_applies_base_weights_to_aux_terms():
    terms = {
        "loss_is": torch.tensor(2.0),
        "loss_is_0": torch.tensor(3.0),
        "loss_verb_distill": torch.tensor(5.0),
    }
    weights = {"loss_is": 0.5, "loss_verb_distill": 0.0}
    assert weighted_sum(terms, weights).item() == 2.5


def test_a_u_only_without_unseen_verbs_is_refused():
    with pytest.raises(ConfigError, match="a_u_only"):
        build_criterion(MatcherConfig(), LossConfig(a_u_only=True), num_verbs=3)
    crit = build_criterion(
        MatcherConfig(topk=1),
        LossConfig(a_u_only=True, distill=0.0),
        3,
        unseen_verb_mask=torch.tensor([False, True, False]),
    )
    assert crit.match_params.topk == 1 and not crit.loss_params.distill
    assert crit.distill_verb_mask.tolist() == [False, True, False]


def test_a_batch_without_pairs_trains_every_query_as_a_no_pair(tiny):
    out = tiny(torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool))
    terms, stats = compute_losses(
        out,
        [PairTargets.empty(3)] * 2,
        distill_verb_mask=torch.ones(3, dtype=torch.bool),
    )
    assert stats["num_pairs"] == 0 and stats["num_pairs_normaliser"] == 1.0
    assert (
        terms["loss_human_l1"] == 0
        and terms["loss_obj_ce"] > 0
        and terms["loss_verb_focal"] > 0
    )
    assert all(torch.isfinite(v) for v in terms.values())


def test_a_switched_off_distillation_or_is_term_is_absent_and_never_computed(
    tiny, monkeypatch
):
    import eoid.student.loss_terms as loss_terms
    import eoid.student.losses as losses

    def must_not_run(*args, **kwargs):
        raise AssertionError("computed a switched-off term")

    monkeypatch.setattr(losses, "interactive_targets", must_not_run)
    monkeypatch.setattr(loss_terms, "distill_verb_sum", must_not_run)
    tgt = _targets([True, False], [True, False], torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    out = tiny(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    terms, stats = compute_losses(
        out,
        [tgt],
        torch.ones(3, dtype=torch.bool),
        loss=LossParams(distill=False, interactive=False),
    )
    assert not [k for k in terms if "distill" in k or k.startswith("loss_is")]
    assert {"loss_verb_focal", "loss_verb_focal_0", "loss_obj_ce"} <= set(terms)
    assert stats["num_is_positive"] == 0 and stats["num_is_ignored"] == 0


def test_the_criterion_switches_off_the_terms_whose_weight_is_zero():
    crit = build_criterion(
        MatcherConfig(),
        LossConfig(distill=0.0, interactive=0.0, is_positives="overlap"),
        3,
        no_interaction_verb=2,
    )
    assert not crit.loss_params.distill and not crit.loss_params.interactive
    assert (
        crit.loss_params.is_positives == "overlap"
        and crit.loss_params.no_interaction_verb == 2
    )
