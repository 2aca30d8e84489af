"""U-R@K on a hand-made case: ranking by interactive score, IoU >= 0.5 on both boxes."""

import math
from types import SimpleNamespace

import numpy as np

from eoid.pipeline.evaluation.unseen_recall import (
    PairBoxes,
    RankedPairs,
    unseen_pair_recall,
    unseen_pairs_from_records,
)

H = [0, 0, 99, 99]
OBJ = [200, 0, 299, 99]
FAR = [500, 500, 599, 599]


def ranked(rows):
    h, o, s = zip(*rows)
    return RankedPairs(np.array(h, float), np.array(o, float), np.array(s, float))


def test_unseen_pair_recall_counts_a_pair_found_within_the_top_k():
    # Image a: its one unseen pair is matched by the prediction ranked 5th (scores .9 ..
    # .5; the right boxes carry .5) -> missed at K=3, recalled at K=5 and 10. Image b:
    # its pair is matched by the top prediction -> recalled at every K. Image c: the
    # right human with a far object (object IoU 0) -> never recalled. U-R@3 = 1/3, U-R@5
    # = U-R@10 = 2/3.
    gt = {k: PairBoxes(np.array([H], float), np.array([OBJ], float)) for k in "abc"}
    preds = {
        "a": ranked(
            [
                (FAR, OBJ, 0.9),
                (FAR, OBJ, 0.8),
                (H, FAR, 0.7),
                (FAR, FAR, 0.6),
                (H, OBJ, 0.5),
            ]
        ),
        "b": ranked([(H, OBJ, 0.2), (FAR, FAR, 0.1)]),
        "c": ranked([(H, FAR, 0.9)]),
    }
    r = unseen_pair_recall(gt, preds)
    assert r[3] == 1 / 3 and r[5] == 2 / 3 and r[10] == 2 / 3


def test_score_ties_keep_prediction_order_at_the_top_k_cut():
    # Three predictions with equal scores, the right one listed last: outside the top 2,
    # inside the top 3.
    gt = {"a": PairBoxes(np.array([H], float), np.array([OBJ], float))}
    preds = {"a": ranked([(FAR, OBJ, 0.5), (FAR, OBJ, 0.5), (H, OBJ, 0.5)])}
    assert unseen_pair_recall(gt, preds, ks=(2, 3)) == {2: 0.0, 3: 1.0}


def test_no_unseen_pair_gives_nan_and_an_image_without_predictions_recalls_nothing():
    empty = {"a": PairBoxes(np.zeros((0, 4)), np.zeros((0, 4)))}
    assert all(math.isnan(v) for v in unseen_pair_recall(empty, {}).values())
    one = {"a": PairBoxes(np.array([H], float), np.array([OBJ], float))}
    assert unseen_pair_recall(one, {}) == {3: 0.0, 5: 0.0, 10: 0.0}


def test_only_pairs_whose_verbs_are_all_unseen_are_counted():
    # Box 0 human, boxes 1 and 2 objects. Pair (0,1) has verbs {3, 4} (both unseen) ->
    # counted; pair (0,2) has {3, 5} (5 is seen) -> not counted.
    rec = SimpleNamespace(
        key="x.jpg",
        boxes_xyxy_px=np.array([H, OBJ, FAR], np.float32),
        hois=np.array([[0, 1, 3], [0, 1, 4], [0, 2, 3], [0, 2, 5]]),
    )
    pairs = unseen_pairs_from_records([rec], unseen_verbs=[3, 4])
    assert pairs["x.jpg"].object_boxes_xyxy.tolist() == [OBJ]
