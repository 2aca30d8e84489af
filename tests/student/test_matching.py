"""Two-stage matching: cost terms, assignment and selection against hand cases and brute
force.
"""

import itertools

import numpy as np
import torch

from eoid.student.matching import (
    MatchParams,
    assign,
    box_l1_cost,
    match_image,
    match_unknown,
    pair_min_iou,
    verb_cost,
)
from eoid.student.targets import PairTargets

WEIGHTS = dict(cost_box_l1=2.5, cost_giou=1.0, cost_object=1.0, cost_verb=1.0)


def test_unknown_pairs_go_only_to_queries_left_free_by_stage_one():
    # 3 queries, query 1 taken by stage 1; two unknown pairs. Query 1 is the cheapest
    # for both, but it is taken, so they go to 0 and 2; both pass the IoU gate and sort
    # by IS prob.
    cost = torch.tensor([[0.2, 0.9], [0.0, 0.0], [0.8, 0.1]])
    q, k, *_ = match_unknown(
        cost,
        free_queries=torch.tensor([0, 2]),
        iou_ok=torch.ones(3, 2, dtype=torch.bool),
        interactive_prob=torch.tensor([0.6, 0.9, 0.9]),
        topk=2,
        thres_is=0.5,
    )
    assert q.tolist() == [2, 0] and k.tolist() == [1, 0]


def test_unknown_match_below_the_iou_gate_is_not_selected_even_with_a_high_interactive_score():
    # Query 0 takes unknown pair 0 but overlaps it poorly; query 2 takes pair 1 and
    # overlaps well.
    cost = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]])
    iou_ok = torch.tensor([[False, False], [True, True], [False, True]])
    q, k, all_q, all_k, gated = match_unknown(
        cost,
        torch.tensor([0, 1, 2]),
        iou_ok,
        torch.tensor([0.99, 0.99, 0.6]),
        topk=3,
        thres_is=0.5,
    )
    assert q.tolist() == [2] and k.tolist() == [1]
    assert sorted(zip(all_q.tolist(), all_k.tolist())) == [(0, 0), (2, 1)]
    assert gated.tolist() == [False, True]


def test_only_topk_above_threshold_are_kept_highest_first():
    # four gated matches with IS probs .4 (below thres), .7, .95, .8 -> top-2 = queries
    # 2, 3.
    cost = torch.eye(4) * -1
    q, _, *_ = match_unknown(
        cost,
        torch.arange(4),
        torch.ones(4, 4, dtype=torch.bool),
        torch.tensor([0.4, 0.7, 0.95, 0.8]),
        topk=2,
        thres_is=0.5,
    )
    assert q.tolist() == [2, 3]


def test_verb_cost_averages_positive_and_negative_recall():
    # prob [.9, .2, .1]; labels [1, 0, 0]; negatives over all verbs:
    # pos = .9 / 1, neg = (.8 + .9) / 2 = .85 -> cost = -(.9 + .85) / 2 = -.875.
    prob = torch.tensor([[0.9, 0.2, 0.1]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    c = verb_cost(prob, labels, torch.ones(3, dtype=torch.bool))
    assert torch.allclose(c, torch.tensor([[-0.875]]), atol=1e-3)
    # with no negative verbs (UC with distillation) only the positive term is left:
    # -.45.
    c = verb_cost(prob, labels, torch.zeros(3, dtype=torch.bool))
    assert torch.allclose(c, torch.tensor([[-0.45]]), atol=1e-3)


def test_box_cost_is_the_max_of_human_and_object_terms():
    pred_h, pred_o = (
        torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
        torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
    )
    tgt_h, tgt_o = (
        torch.tensor([[0.6, 0.5, 0.2, 0.2]]),
        torch.tensor([[0.5, 0.2, 0.2, 0.2]]),
    )
    assert torch.allclose(
        box_l1_cost(pred_h, pred_o, tgt_h, tgt_o), torch.tensor([[0.3]])
    )


def test_assign_equals_brute_force_on_random_rectangular_costs():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q, t = rng.integers(1, 6), rng.integers(1, 6)
        cost = torch.as_tensor(rng.random((q, t)))
        rows, cols = assign(cost)
        best = _brute_force(cost.numpy())
        assert np.isclose(cost[rows, cols].sum().item(), best[0])


def _brute_force(cost: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """Cheapest one-to-one assignment of min(Q, T) pairs, by enumerating every
    injection.
    """
    q, t = cost.shape
    best = (np.inf, [])
    if t <= q:
        for rows in itertools.permutations(range(q), t):
            c = sum(cost[r, j] for j, r in enumerate(rows))
            if c < best[0]:
                best = (c, [(r, j) for j, r in enumerate(rows)])
    else:
        for cols in itertools.permutations(range(t), q):
            c = sum(cost[i, c_] for i, c_ in enumerate(cols))
            if c < best[0]:
                best = (c, list(enumerate(cols)))
    return best


def _random_case(rng, num_queries, num_pairs, num_objects=3, num_verbs=4):
    def boxes(n):
        c = rng.uniform(0.3, 0.7, (n, 2))
        wh = rng.uniform(0.1, 0.4, (n, 2))
        return torch.as_tensor(np.concatenate([c, wh], 1), dtype=torch.float32)

    labelled = torch.as_tensor(rng.random(num_pairs) < 0.5)
    verbs = torch.as_tensor(
        (rng.random((num_pairs, num_verbs)) < 0.4), dtype=torch.float32
    )
    verbs[~labelled] = 0
    verbs[labelled, 0] = 1
    tgt = PairTargets(
        boxes(num_pairs),
        boxes(num_pairs),
        torch.as_tensor(rng.integers(0, num_objects, num_pairs)),
        verbs,
        labelled,
        labelled.clone(),
        torch.zeros(num_pairs, num_verbs),
        torch.zeros(num_pairs, dtype=torch.bool),
    )
    # predictions: copies of target boxes with noise so that the IoU gate passes
    # sometimes
    src = rng.integers(0, num_pairs, num_queries)

    def noise() -> torch.Tensor:
        return torch.as_tensor(
            rng.normal(0, 0.03, (num_queries, 4)), dtype=torch.float32
        )

    pred_h = (tgt.human_boxes_cxcywh[src] + noise()).clamp(0.05, 0.95)
    pred_o = (tgt.object_boxes_cxcywh[src] + noise()).clamp(0.05, 0.95)
    obj_prob = torch.as_tensor(
        rng.random((num_queries, num_objects + 1)), dtype=torch.float32
    ).softmax(1)
    verb_prob = torch.as_tensor(
        rng.random((num_queries, num_verbs)), dtype=torch.float32
    )
    is_prob = torch.as_tensor(rng.random(num_queries), dtype=torch.float32)
    return pred_h, pred_o, obj_prob, verb_prob, is_prob, tgt


def test_two_stage_matching_equals_brute_force_on_small_random_cases():
    from eoid.student.matching import giou_cost, object_class_cost

    rng = np.random.default_rng(1)
    checked_stage2 = 0
    for _ in range(60):
        num_queries, num_pairs = int(rng.integers(2, 6)), int(rng.integers(1, 5))
        ph, po, op, vp, isp, tgt = _random_case(rng, num_queries, num_pairs)
        negative = torch.as_tensor(rng.random(4) < 0.5)
        topk, thres, is_iou = int(rng.integers(1, 3)), 0.3, 0.5
        m = match_image(
            ph,
            po,
            op,
            vp,
            isp,
            tgt,
            negative,
            MatchParams(topk=topk, thres_is=thres, is_iou=is_iou, **WEIGHTS),
        )
        # oracle: the same cost formula, brute-force assignment, selection written out
        # again
        box = (
            2.5 * box_l1_cost(ph, po, tgt.human_boxes_cxcywh, tgt.object_boxes_cxcywh)
            + giou_cost(ph, po, tgt.human_boxes_cxcywh, tgt.object_boxes_cxcywh)
            + object_class_cost(op, tgt.object_classes)
        ).numpy()
        lab = np.nonzero(tgt.labelled.numpy())[0]
        unk = np.nonzero(~tgt.labelled.numpy())[0]
        c1 = box[:, lab] + verb_cost(vp, tgt.verb_labels[lab], negative).numpy()
        _, pairs1 = _brute_force(c1) if len(lab) else (0, [])
        stage1 = sorted((q, int(lab[j])) for q, j in pairs1)
        got1 = sorted(
            zip(
                m.query_idx[: m.num_stage1].tolist(),
                m.target_idx[: m.num_stage1].tolist(),
            )
        )
        assert got1 == stage1
        free = [q for q in range(num_queries) if q not in {p[0] for p in stage1}]
        expected2 = []
        if len(unk) and free:
            _, pairs2 = _brute_force(box[np.ix_(free, unk)])
            iou = pair_min_iou(
                ph, po, tgt.human_boxes_cxcywh, tgt.object_boxes_cxcywh
            ).numpy()
            cand = [
                (free[i], int(unk[j]))
                for i, j in pairs2
                if iou[free[i], unk[j]] >= is_iou and isp[free[i]] > thres
            ]
            cand.sort(key=lambda p: -isp[p[0]].item())
            expected2 = cand[:topk]
            checked_stage2 += bool(expected2)
        got2 = list(
            zip(
                m.query_idx[m.num_stage1 :].tolist(),
                m.target_idx[m.num_stage1 :].tolist(),
            )
        )
        assert got2 == expected2
    assert checked_stage2 >= 5  # the random cases did exercise the selection
