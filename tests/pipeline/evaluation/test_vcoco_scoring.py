"""From records and merged-vocabulary scores to V-COCO role AP with a Seen / Unseen
split.
"""

from pathlib import Path

import numpy as np
import pytest

from eoid.pipeline.data.mixed_vocab import load_mixed_vocabulary
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.evaluation.vcoco_map import evaluate_vcoco
from eoid.pipeline.evaluation.vcoco_scoring import (
    role_map_summary,
    source_scores,
    vcoco_detections,
    vcoco_gt_from_records,
    vcoco_structure,
)

MIXED = load_mixed_vocabulary("vcoco-to-hico-det")
SRC = MIXED.source
S = vcoco_structure(SRC, "v-coco")
V = SRC.verbs.index


def test_vcoco_structure_has_26_actions_and_eat_with_two_roles():
    eat = S.actions.index("eat")
    assert len(S.actions) == 26 and S.num_roles[eat] == 2 and len(S.eval_verbs) == 24
    assert S.verb_role[V("stand")] == -1 and S.verb_action[V("eat_instr")] == eat


def _record():
    # box 0 person eating cake (box 1); box 2 a person holding nothing labelled
    boxes = np.array(
        [[0, 0, 99, 199], [100, 100, 149, 149], [300, 0, 399, 199]], np.float32
    )
    classes = np.array([0, SRC.objects.index("cake"), 0])
    return ImageRecord(
        "img.jpg",
        Path("img.jpg"),
        500,
        300,
        boxes,
        classes,
        np.array([[0, 1, V("eat_obj")]]),
    )


def test_ground_truth_marks_actions_role_boxes_and_objectless_labels():
    # eat_instr of person 0 had object_id -1 in the file: eat is done, the instr role
    # has no box.
    objectless = {"img.jpg": [(0, SRC.verb_ids[V("eat_instr")])]}
    gt = vcoco_gt_from_records([_record()], SRC, S, objectless)["img.jpg"]
    eat = S.actions.index("eat")
    assert gt.actions[:, eat].tolist() == [1, 0] and gt.actions.sum() == 1
    assert gt.role_boxes_xyxy[0, eat, S.verb_role[V("eat_obj")]].tolist() == [
        100,
        100,
        149,
        149,
    ]
    assert np.isnan(gt.role_boxes_xyxy[0, eat, S.verb_role[V("eat_instr")]]).all()


def test_merged_scores_reach_vcoco_verbs_by_their_best_mapped_verb():
    # sit_on .3 and sit_at .7 both mean sit_instr: .7 wins; stand has no merged verb: 0.
    scores = np.zeros((1, MIXED.vocab.num_verbs))
    scores[0, MIXED.vocab.verbs.index("sit_on")] = 0.3
    scores[0, MIXED.vocab.verbs.index("sit_at")] = 0.7
    scores[0, MIXED.vocab.verbs.index("surf")] = 0.4
    out = source_scores(scores, MIXED.merged_to_source())
    assert out[0, V("sit_instr")] == pytest.approx(0.7) and out[
        0, V("surf_instr")
    ] == pytest.approx(0.4)
    assert out[0, V("stand")] == 0.0


def test_a_perfect_query_scores_100_in_scenario_two_and_splits_seen_and_unseen():
    # One query on person 0 and the cake: eat_obj .9 (seen, right box) -> AP 100.
    # eat_instr .8 (unseen): GT has no instr object; the query predicts a box ->
    # scenario 1 FP (AP 0), scenario 2 TP (AP 100). Other evaluated verbs have no
    # positives (NaN).
    rec = _record()
    gt = vcoco_gt_from_records(
        [rec], SRC, S, {"img.jpg": [(0, SRC.verb_ids[V("eat_instr")])]}
    )
    scores = np.zeros((1, SRC.num_verbs))
    scores[0, V("eat_obj")], scores[0, V("eat_instr")] = 0.9, 0.8
    human_xyxy = rec.boxes_xyxy_px[:1].astype(float)
    object_xyxy = rec.boxes_xyxy_px[1:2].astype(float)
    det = vcoco_detections(human_xyxy, object_xyxy, scores, S)
    result = evaluate_vcoco(gt, {"img.jpg": det}, S.num_roles)
    summary = role_map_summary(
        result, S, MIXED.seen_source_verbs, MIXED.unseen_source_verbs, SRC.verbs
    )
    assert (
        summary["scenario_1"]["seen"] == 100.0
        and summary["scenario_1"]["unseen"] == 0.0
    )
    assert (
        summary["scenario_2"]["seen"] == 100.0
        and summary["scenario_2"]["unseen"] == 100.0
    )
    assert summary["scenario_1"]["full"] == 50.0
    # HM: nothing unseen found in scenario 1 -> 0; 100 and 100 in scenario 2 -> 100
    assert summary["scenario_1"]["hm"] == 0.0 and summary["scenario_2"]["hm"] == 100.0
    assert (summary["num_seen"], summary["num_unseen"]) == (18, 6)
