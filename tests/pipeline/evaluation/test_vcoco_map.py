"""V-COCO agent and role AP on a hand-made image: scenario 1 versus scenario 2."""

import numpy as np
import pytest

from eoid.pipeline.evaluation.vcoco_map import (
    VcocoImageDetections,
    VcocoImageGT,
    evaluate_vcoco,
)

P0 = [0, 0, 99, 99]
P1 = [300, 0, 399, 99]
P2 = [600, 0, 699, 99]  # a person without V-COCO annotation (actions -1)
CUP = [120, 0, 169, 49]
NAN4 = [np.nan] * 4


def make_gt():
    # Action 0 ("drink", role obj): P0 drinks from CUP. Action 1 ("kick", role obj): P1
    # kicks, but the object is not annotated (no role box).
    actions = np.array([[1, 0], [0, 1], [-1, -1]])
    roles = np.full((3, 2, 1, 4), np.nan)
    roles[0, 0, 0] = CUP
    return VcocoImageGT(np.array([P0, P1, P2], float), actions, roles)


def make_dets(rows):
    """rows: (agent_box, action, role_box, score); one detection per row, other actions
    NaN.
    """
    n = len(rows)
    agent_scores = np.full((n, 2), np.nan)
    role_boxes = np.full((n, 2, 1, 4), np.nan)
    role_scores = np.full((n, 2, 1), np.nan)
    for i, (_, a, box, s) in enumerate(rows):
        agent_scores[i, a] = s
        role_boxes[i, a, 0] = box
        role_scores[i, a, 0] = s
    return VcocoImageDetections(
        np.array([r[0] for r in rows], float), agent_scores, role_boxes, role_scores
    )


def test_scenario_one_wants_an_empty_role_box_where_the_ground_truth_has_no_object():
    # d0: P0 drinks with the cup -> TP in both scenarios (action 0 AP 1).
    # d1 (.9): P1 kicks and predicts an object box; the GT has none.
    #   scenario 1: wrong (a box was predicted) -> FP; scenario 2: right -> TP.
    # d2 (.8): P1 kicks with an empty (all-zero) role box.
    #   scenario 1: right -> TP after one FP: recall 0 then 1, precision 0 then .5 ->
    #   VOC AP .5. scenario 2: P1 is already covered by d1 -> FP after a TP -> AP 1.
    # d3 (.95): matches the unannotated P2 -> skipped entirely, in every AP.
    dets = make_dets(
        [
            (P0, 0, CUP, 0.7),
            (P1, 1, [320, 0, 360, 40], 0.9),
            (P1, 1, [0, 0, 0, 0], 0.8),
            (P2, 1, [0, 0, 0, 0], 0.95),
        ]
    )
    r = evaluate_vcoco({"img": make_gt()}, {"img": dets}, num_roles_per_action=[1, 1])
    assert r["role_ap_scenario_1"][:, 0].tolist() == pytest.approx([1.0, 0.5])
    assert r["role_ap_scenario_2"][:, 0].tolist() == pytest.approx([1.0, 1.0])
    assert r["mean_role_ap_scenario_1"] == pytest.approx(0.75)
    assert r["mean_role_ap_scenario_2"] == pytest.approx(1.0)
    # Agent AP ignores roles: action 1 is TP (d1) then duplicate FP (d2) -> 1.
    assert r["agent_ap"].tolist() == pytest.approx([1.0, 1.0]) and r[
        "num_positives"
    ].tolist() == [1, 1]


def test_a_role_box_under_half_iou_is_a_false_positive():
    # Predicted cup rows 0..23 inside the 50 x 50 GT cup: 50*24 / 2500 = .48 < .5 -> FP,
    # AP 0.
    dets = make_dets([(P0, 0, [120, 0, 169, 23], 0.7)])
    r = evaluate_vcoco({"img": make_gt()}, {"img": dets}, num_roles_per_action=[1, 1])
    assert r["role_ap_scenario_1"][0, 0] == 0.0 and r["agent_ap"][0] == pytest.approx(
        1.0
    )


def test_actions_without_roles_have_no_role_ap_and_agent_mean_divides_by_all_actions():
    # Action 1 has no role: its role AP is NaN and left out of the role mean. Nothing
    # detected: agent APs 0 and the agent mean 0.
    r = evaluate_vcoco({"img": make_gt()}, {}, num_roles_per_action=[1, 0])
    assert (
        np.isnan(r["role_ap_scenario_1"][1, 0]) and r["role_ap_scenario_1"][0, 0] == 0.0
    )
    assert r["mean_agent_ap"] == 0.0


def _literal_role_ap(gts, dets, a, r, scenario):
    """A line-by-line reading of vsrl_eval.py's _do_role_eval for one (action, role):
    the oracle.
    """

    def overlap(boxes, ref):
        iw = np.maximum(
            np.minimum(boxes[:, 2], ref[2]) - np.maximum(boxes[:, 0], ref[0]) + 1.0, 0.0
        )
        ih = np.maximum(
            np.minimum(boxes[:, 3], ref[3]) - np.maximum(boxes[:, 1], ref[1]) + 1.0, 0.0
        )
        inter = iw * ih
        return inter / (
            (ref[2] - ref[0] + 1.0) * (ref[3] - ref[1] + 1.0)
            + (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
            - inter
        )

    tp, fp, sc, npos = [], [], [], 0
    for g, d in zip(gts, dets):
        ignore = np.any(g.actions == -1, axis=1)
        npos += np.sum(g.actions[:, a] == 1)
        covered = np.zeros(len(g.person_boxes_xyxy), bool)
        scores = d.role_scores[:, a, r]
        for j in np.argsort(-scores, kind="stable"):
            ovs = overlap(g.person_boxes_xyxy, d.agent_boxes_xyxy[j])
            jmax, ovmax = ovs.argmax(), ovs.max()
            if ignore[jmax]:
                continue
            gt_role, pred_role = (
                g.role_boxes_xyxy[jmax, a, r],
                d.role_boxes_xyxy[j, a, r],
            )
            if np.isnan(gt_role).all():
                ov_role = 1.0 if scenario == 2 or np.all(pred_role == 0) else 0.0
            else:
                ov_role = overlap(gt_role[None], pred_role)[0]
            sc.append(scores[j])
            hit = (
                g.actions[jmax, a] == 1
                and ovmax >= 0.5
                and ov_role >= 0.5
                and not covered[jmax]
            )
            covered[jmax] |= hit
            tp.append(int(hit))
            fp.append(int(not hit))
    idx = np.argsort(-np.array(sc), kind="stable")
    tp, fp = np.cumsum(np.array(tp)[idx]), np.cumsum(np.array(fp)[idx])
    rec, prec = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    mrec, mpre = (
        np.concatenate(([0.0], rec, [1.0])),
        np.concatenate(([0.0], prec, [0.0])),
    )
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("seed", range(20))
def test_role_ap_equals_a_literal_reading_of_vsrl_eval(seed):
    rng = np.random.default_rng(seed)
    grid = lambda n: np.concatenate(  # noqa: E731
        [(xy := rng.integers(0, 4, (n, 2)) * 20.0), xy + 30], axis=1
    )  # noqa: E731
    gts, dets = [], []
    for _ in range(3):
        p, d = rng.integers(1, 4), rng.integers(1, 8)
        actions = rng.choice([-1, 0, 1], size=(p, 2), p=[0.1, 0.4, 0.5])
        actions[actions[:, 0] == -1] = -1
        roles = grid(p * 2).reshape(p, 2, 1, 4)
        # some roles without an object
        roles[rng.random((p, 2)) < 0.3] = np.nan
        gts.append(VcocoImageGT(grid(p), actions, roles))
        pred_roles = grid(d * 2).reshape(d, 2, 1, 4)
        # some empty role predictions
        pred_roles[rng.random((d, 2)) < 0.3] = 0.0
        dets.append(
            VcocoImageDetections(
                grid(d), rng.random((d, 2)), pred_roles, rng.random((d, 2, 1))
            )
        )
    if sum((g.actions == 1).sum(axis=0) for g in gts).min() == 0:
        pytest.skip("an action without positives")
    r = evaluate_vcoco(
        {i: g for i, g in enumerate(gts)}, {i: d for i, d in enumerate(dets)}, [1, 1]
    )
    for scenario in (1, 2):
        for a in range(2):
            assert r[f"role_ap_scenario_{scenario}"][a, 0] == pytest.approx(
                _literal_role_ap(gts, dets, a, 0, scenario), abs=1e-12
            )
