"""The "overlap" IS targets equal a brute-force restatement of the original code's rule.

The original (EoID models/EoID.py, SetCriterionHOI.loss_is) per image: a query is 1 if
its predicted pair reaches min(IoU human, IoU object) >= 0.5 with any labelled pair (st
== 0) whose labels do not include no_interaction (is_mask == 1), or if it is one of the
selected stage-2 matches (topk_indices); a query left at 0 that reaches any unknown pair
(st == 1) is removed from the loss; every other query is 0.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.student.loss_targets import IGNORE, interactive_targets
from eoid.student.matching import ImageMatch
from eoid.student.targets import PairTargets

NO_INTERACTION = 2  # verbs: 0 hold, 1 ride, 2 no_interaction
# four boxes far apart and, for each, a copy moved 0.02 in x (IoU about 0.8 with it):
# every IoU between two of these is either above 0.7 or below 0.2, never near the 0.5
# threshold
BASE = [
    (0.2, 0.5, 0.2, 0.4),
    (0.7, 0.5, 0.2, 0.4),
    (0.5, 0.15, 0.3, 0.2),
    (0.5, 0.85, 0.3, 0.2),
]
PALETTE = BASE + [(x + 0.02, y, w, h) for x, y, w, h in BASE]


def iou(a, b) -> float:
    """Plain IoU of two cxcywh boxes, in Python floats."""
    ax1, ay1, ax2, ay2 = (
        a[0] - a[2] / 2,
        a[1] - a[3] / 2,
        a[0] + a[2] / 2,
        a[1] + a[3] / 2,
    )
    bx1, by1, bx2, by2 = (
        b[0] - b[2] / 2,
        b[1] - b[3] / 2,
        b[0] + b[2] / 2,
        b[1] + b[3] / 2,
    )
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(
        0.0, min(ay2, by2) - max(ay1, by1)
    )
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def original_rule(queries, pairs, selected) -> list[int]:
    """queries: [(human box, object box)]; pairs: [(human box, object box, st,
    labels)]; selected: the selected stage-2 queries. Returns each query's target
    (IGNORE = left out)."""
    out = []
    for q, (qh, qo) in enumerate(queries):
        reach = [min(iou(qh, h), iou(qo, o)) >= 0.5 for h, o, _, _ in pairs]
        is_mask = [NO_INTERACTION not in labels for _, _, _, labels in pairs]
        y = int(
            any(r and s == 0 and m for r, (_, _, s, _), m in zip(reach, pairs, is_mask))
            or q in selected
        )
        near_unknown = any(r and s == 1 for r, (_, _, s, _) in zip(reach, pairs))
        out.append(IGNORE if y == 0 and near_unknown else y)
    return out


@st.composite
def images(draw):
    num_pairs = draw(st.integers(0, 4))
    pairs = []
    for _ in range(num_pairs):
        # empty set = unknown pair (st = 1)
        labels = draw(st.sets(st.integers(0, 2), max_size=3))
        pairs.append(
            (
                draw(st.sampled_from(PALETTE)),
                draw(st.sampled_from(PALETTE)),
                0 if labels else 1,
                labels,
            )
        )
    num_queries = draw(st.integers(max(1, num_pairs), 6))
    queries = [
        (draw(st.sampled_from(PALETTE)), draw(st.sampled_from(PALETTE)))
        for _ in range(num_queries)
    ]
    labelled = [i for i, p in enumerate(pairs) if p[2] == 0]
    unknown = [i for i, p in enumerate(pairs) if p[2] == 1]
    order = draw(st.permutations(range(num_queries)))
    # one query per labelled pair
    stage1 = list(order[: len(labelled)])
    free = list(order[len(labelled) :])
    num_selected = draw(st.integers(0, min(len(unknown), len(free), 3)))
    return queries, pairs, stage1, labelled, free[:num_selected], unknown[:num_selected]


def as_tensors(queries, pairs, stage1, labelled, selected, selected_pairs):
    boxes = torch.tensor(queries, dtype=torch.float32).reshape(-1, 2, 4)
    p = len(pairs)
    verbs = torch.zeros(p, 3)
    for i, (_, _, _, labels) in enumerate(pairs):
        verbs[i, list(labels)] = 1.0
    target = PairTargets(
        torch.tensor([h for h, _, _, _ in pairs]).reshape(-1, 4),
        torch.tensor([o for _, o, _, _ in pairs]).reshape(-1, 4),
        torch.zeros(p, dtype=torch.long),
        verbs,
        verbs.sum(1) > 0,
        (verbs[:, :NO_INTERACTION].sum(1) > 0),
        torch.zeros(p, 3),
        torch.ones(p, dtype=torch.bool),
    )
    e = torch.zeros(0, dtype=torch.long)
    match = ImageMatch(
        torch.tensor(stage1 + selected, dtype=torch.long),
        torch.tensor(labelled + selected_pairs, dtype=torch.long),
        len(stage1),
        e,
        e,
        torch.zeros(0, dtype=torch.bool),
    )
    return boxes[:, 0], boxes[:, 1], target, match


@settings(max_examples=300, deadline=None)
@given(images())
def test_overlap_targets_equal_the_original_rule_restated_by_brute_force(image):
    queries, pairs, stage1, labelled, selected, selected_pairs = image
    pred_h, pred_o, target, match = as_tensors(*image)
    got = interactive_targets(
        pred_h, pred_o, target, match, 0.5, "overlap", NO_INTERACTION
    )
    assert got.tolist() == original_rule(queries, pairs, set(selected))


def test_the_palette_keeps_every_iou_away_from_the_threshold():
    # the law above compares float32 with float64 IoUs: they must not straddle 0.5
    assert all(abs(iou(a, b) - 0.5) > 0.1 for a in PALETTE for b in PALETTE)
