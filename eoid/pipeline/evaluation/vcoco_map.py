"""V-COCO agent AP and role AP (scenario 1 and 2): pure arrays in, dict out.

The rules of the official s-gupta/v-coco `vsrl_eval.py` (`_do_agent_eval`,
`_do_role_eval`):

- A detection is matched on its **person box only**: the ground-truth person with the
  largest IoU ("+1" inclusive-pixel IoU, `get_overlap`), first one on a tie. If that
  person has no V-COCO annotation (its action row is -1), the detection is skipped:
  neither TP nor FP.
- Agent AP of action a: TP when that person does a, IoU >= 0.5, and the person is not
  yet covered for (image, a); else FP. Detections are ranked by their agent score.
- Role AP of (action a, role r): ranked by the role score; TP when the person does a,
  the person IoU >= 0.5, the role overlap >= 0.5, and the person is not yet covered for
  (image, a, r). The role overlap is the IoU of the predicted and ground-truth role
  boxes; when the ground truth has **no** object for that role (object not visible, or
  none): scenario 1 counts it 1 only if the predicted role box is empty (all zeros or
  all NaN), else 0; scenario 2 counts it 1 whatever was predicted.
- Positives per action = persons labelled with it (the same count for both roles).
- AP is VOC2010+ area under the precision envelope (`voc_ap`), not 11-point.
- Means: role AP = mean over the (action, role) slots that exist (`np.nanmean`); agent
  AP = sum over actions / number of actions (`np.nansum(agent_ap) / num_actions`).

Differences, by choice: score ties keep the input order (image order, then row order)
where the original's `argsort()[::-1]` has no defined order; scores are not cast to
float32; an image without persons makes its detections FPs (the original crashes); an
(action, role) with no detections has AP 0 and one with no positives AP NaN (the
original fails an assert on both).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from eoid.boxes import box_iou_plus1_np
from eoid.errors import DataError
from eoid.pipeline.evaluation.ap_arithmetic import average_precision


class VcocoImageGT(NamedTuple):
    """The annotated persons of one image (A actions, R = the most roles an action has)."""

    person_boxes_xyxy: np.ndarray  # (P, 4) float64, px
    # (P, A) int: 1 does it, 0 does not, -1 person not annotated
    actions: np.ndarray
    # (P, A, R, 4) float64, NaN where there is no object for that role
    role_boxes_xyxy: np.ndarray


class VcocoImageDetections(NamedTuple):
    """Detections of one image, one row per detected person (agent)."""

    agent_boxes_xyxy: np.ndarray  # (D, 4) float64, px
    # (D, A) float64, NaN = no agent score for that action
    agent_scores: np.ndarray
    # (D, A, R, 4) float64, all 0 or all NaN = no object predicted
    role_boxes_xyxy: np.ndarray
    role_scores: np.ndarray  # (D, A, R) float64, NaN = not predicted


def _iou_rows_plus1(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Row-wise "+1" IoU of (N, 4) and (N, 4) boxes -> (N,), NaN where a box has NaN."""
    iw = np.maximum(
        np.minimum(a_xyxy[:, 2], b_xyxy[:, 2])
        - np.maximum(a_xyxy[:, 0], b_xyxy[:, 0])
        + 1,
        0,
    )
    ih = np.maximum(
        np.minimum(a_xyxy[:, 3], b_xyxy[:, 3])
        - np.maximum(a_xyxy[:, 1], b_xyxy[:, 1])
        + 1,
        0,
    )
    inter = iw * ih
    area_a = (a_xyxy[:, 2] - a_xyxy[:, 0] + 1) * (a_xyxy[:, 3] - a_xyxy[:, 1] + 1)
    area_b = (b_xyxy[:, 2] - b_xyxy[:, 0] + 1) * (b_xyxy[:, 3] - b_xyxy[:, 1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def _first_cover(
    scores: np.ndarray, correct: np.ndarray, person: np.ndarray
) -> np.ndarray:
    """(D,) bool TPs: in descending score order, the first correct detection of each
    person.
    """
    order = np.argsort(-scores, kind="stable")
    hits = order[correct[order]]
    _, first = np.unique(person[hits], return_index=True)
    is_tp = np.zeros(len(scores), dtype=bool)
    is_tp[hits[first]] = True
    return is_tp


def evaluate_vcoco(
    gt: Mapping[str, VcocoImageGT],
    detections: Mapping[str, VcocoImageDetections],
    num_roles_per_action: Sequence[int],
    iou_threshold: float = 0.5,
) -> dict:
    """Agent AP and role AP in both scenarios (fractions in [0, 1]).

    gt: per image key, in image order. detections: per image key (a missing image has
    none). num_roles_per_action: (A,) object roles of each action, 0 (e.g. stand), 1 or
    2 (eat: obj, instr). Returns {"agent_ap": (A,), "role_ap_scenario_1": (A, R),
    "role_ap_scenario_2": (A, R) with NaN where the role does not exist,
    "num_positives": (A,), "mean_agent_ap", "mean_role_ap_scenario_1",
    "mean_role_ap_scenario_2"}.
    """
    unknown = [k for k in detections if k not in gt]
    if unknown:
        raise DataError(
            f"V-COCO detections for {len(unknown)} image(s) not in the ground truth, "
            f"e.g. {unknown[0]!r}. "
            "Evaluate against the annotation file the predictions were made for."
        )
    num_actions = len(num_roles_per_action)
    max_roles = max(list(num_roles_per_action) + [1])
    npos = np.zeros(num_actions, dtype=np.int64)
    # (scores, is_tp) parts
    agent = [([], []) for _ in range(num_actions)]
    roles = {
        s: [[([], []) for _ in range(max_roles)] for _ in range(num_actions)]
        for s in (1, 2)
    }
    for key, g in gt.items():
        npos += (np.asarray(g.actions).reshape(-1, num_actions) == 1).sum(axis=0)
        det = detections.get(key)
        if det is None or len(det.agent_boxes_xyxy) == 0:
            continue
        num_det = len(det.agent_boxes_xyxy)
        if len(g.person_boxes_xyxy):
            # (D, P)
            person_iou = box_iou_plus1_np(det.agent_boxes_xyxy, g.person_boxes_xyxy)
            person = person_iou.argmax(axis=1)
            person_ok = person_iou[np.arange(num_det), person] >= iou_threshold
            skipped = (np.asarray(g.actions) == -1).any(axis=1)[person]
            # (D, A)
            does = np.asarray(g.actions)[person] == 1
            # (D, A, R, 4)
            gt_roles = np.asarray(g.role_boxes_xyxy, dtype=np.float64)[person]
        else:  # no person to match: every detection is a false positive
            person = np.zeros(num_det, dtype=np.int64)
            person_ok = np.zeros(num_det, dtype=bool)
            skipped = np.zeros(num_det, dtype=bool)
            does = np.zeros((num_det, num_actions), dtype=bool)
            gt_roles = np.full((num_det, num_actions, max_roles, 4), np.nan)
        for a in range(num_actions):
            scores = det.agent_scores[:, a]
            keep = ~np.isnan(scores) & ~skipped
            correct = does[:, a] & person_ok
            is_tp = _first_cover(scores[keep], correct[keep], person[keep])
            agent[a][0].append(scores[keep])
            agent[a][1].append(is_tp)
            for r in range(num_roles_per_action[a]):
                scores = det.role_scores[:, a, r]
                keep = ~np.isnan(scores) & ~skipped
                pred_box, gt_box = det.role_boxes_xyxy[:, a, r], gt_roles[:, a, r]
                no_gt_object = np.isnan(gt_box).all(axis=1)
                pred_empty = (pred_box == 0).all(axis=1) | np.isnan(pred_box).all(
                    axis=1
                )
                overlap = _iou_rows_plus1(gt_box, pred_box)
                for scenario in (1, 2):
                    no_object_ok = (
                        pred_empty if scenario == 1 else np.ones(num_det, dtype=bool)
                    )
                    role_ok = np.where(
                        no_gt_object, no_object_ok, overlap >= iou_threshold
                    )
                    ok = (correct & role_ok)[keep]
                    roles[scenario][a][r][0].append(scores[keep])
                    roles[scenario][a][r][1].append(
                        _first_cover(scores[keep], ok, person[keep])
                    )

    def ap_of(parts: tuple[list, list], num_pos: int) -> float:
        scores = np.concatenate(parts[0]) if parts[0] else np.zeros(0)
        is_tp = np.concatenate(parts[1]) if parts[1] else np.zeros(0, dtype=bool)
        return average_precision(
            is_tp[np.argsort(-scores, kind="stable")], num_pos, "area"
        )[0]

    agent_ap = np.array([ap_of(agent[a], int(npos[a])) for a in range(num_actions)])
    out = {
        "agent_ap": agent_ap,
        "num_positives": npos,
        "mean_agent_ap": (
            float(np.nansum(agent_ap) / num_actions) if num_actions else float("nan")
        ),
    }
    for scenario in (1, 2):
        role_ap = np.full((num_actions, max_roles), np.nan)
        for a in range(num_actions):
            for r in range(num_roles_per_action[a]):
                role_ap[a, r] = ap_of(roles[scenario][a][r], int(npos[a]))
        out[f"role_ap_scenario_{scenario}"] = role_ap
        out[f"mean_role_ap_scenario_{scenario}"] = (
            float(np.nanmean(role_ap)) if np.isfinite(role_ap).any() else float("nan")
        )
    return out
