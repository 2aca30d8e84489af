"""The HICO-DET evaluator on hand-made cases whose AP is worked out in the comments.

11-point AP (official): AP = sum over t in {0, 0.1, ..., 1} of max(precision where
recall >= t) / 11. Three HOI categories: 0 and 1 on object 0, 2 on object 1.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.errors import DataError
from eoid.pipeline.evaluation.ap_arithmetic import average_precision
from eoid.pipeline.evaluation.hico_map import (
    ImageDetections,
    ImageGT,
    detections_from_triplets,
    evaluate_hoi_map,
    gt_from_records,
    hoi_map_from_matches,
    match_detections,
)

HOI_TO_OBJECT = np.array([0, 0, 1])
H = [0, 0, 99, 99]  # 100 x 100 px in the inclusive-pixel convention
OBJ = [200, 0, 299, 99]


def gt(*pairs):
    """ImageGT from (human_box, object_box, hoi) tuples."""
    if not pairs:
        return ImageGT(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.int64))
    h, o, hoi = zip(*pairs)
    return ImageGT(np.array(h, float), np.array(o, float), np.array(hoi, np.int64))


def dets(*rows):
    """ImageDetections from (human_box, object_box, hoi, score) tuples."""
    if not rows:
        return ImageDetections(
            np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
        )
    h, o, hoi, s = zip(*rows)
    return ImageDetections(
        np.array(h, float),
        np.array(o, float),
        np.array(hoi, np.int64),
        np.array(s, float),
    )


def evaluate(gt_map, det_map, **kw):
    return evaluate_hoi_map(gt_map, det_map, HOI_TO_OBJECT, **kw)


def test_perfect_detections_score_100():
    g = {"a": gt((H, OBJ, 0), (H, OBJ, 2)), "b": gt((H, OBJ, 1))}
    d = {"a": dets((H, OBJ, 0, 0.3), (H, OBJ, 2, 0.9)), "b": dets((H, OBJ, 1, 0.1))}
    r = evaluate(g, d)
    # 11 terms of 1/11 summed one by one give 1.0000000000000002, as in MATLAB: compare
    # approximately.
    assert r.ap_per_hoi.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert r.mean_ap["full"] == pytest.approx(1.0) and r.mean_max_recall["full"] == 1.0


def test_no_detections_score_zero_ap_and_zero_recall():
    r = evaluate({"a": gt((H, OBJ, 0))}, {})
    assert r.ap_per_hoi[0] == 0.0 and r.max_recall_per_hoi[0] == 0.0


def test_categories_without_ground_truth_are_nan_and_left_out_of_the_means():
    # Only HOI 0 has GT (AP 1); HOIs 1 and 2 get NaN, so Full = 1, not 1/3.
    r = evaluate(
        {"a": gt((H, OBJ, 0))}, {"a": dets((H, OBJ, 0, 0.5), (H, OBJ, 1, 0.9))}
    )
    assert r.ap_per_hoi[0] == pytest.approx(1.0) and np.isnan(r.ap_per_hoi[1:]).all()
    assert r.mean_ap["full"] == pytest.approx(1.0) and r.num_gt_per_hoi.tolist() == [
        1,
        0,
        0,
    ]


def test_a_duplicate_detection_is_a_false_positive():
    # Two GT pairs (images a, b). Ranked: a exact (TP), a duplicate (FP: its pair is
    # taken), b exact (TP). recall .5 .5 1, precision 1 .5 2/3. t = 0..0.5 (6 points):
    # max precision 1; t = 0.6..1 (5 points): 2/3. AP = (6 + 10/3) / 11 = 28/33.
    g = {"a": gt((H, OBJ, 0)), "b": gt((H, OBJ, 0))}
    d = {"a": dets((H, OBJ, 0, 0.9), (H, OBJ, 0, 0.8)), "b": dets((H, OBJ, 0, 0.7))}
    m = match_detections(g, d, 3, HOI_TO_OBJECT)
    assert m.is_tp.tolist() == [True, False, True]
    assert evaluate(g, d).ap_per_hoi[0] == pytest.approx(28 / 33, abs=1e-12)
    # VOC area for comparison: 0.5 * 1 + 0.5 * 2/3.
    assert evaluate(g, d, ap_method="area").ap_per_hoi[0] == pytest.approx(
        5 / 6, abs=1e-12
    )


def test_the_right_boxes_with_the_wrong_verb_are_a_false_positive():
    # The only detection says HOI 1 (another verb, same object); HOI 0's GT stays
    # unmatched.
    r = evaluate({"a": gt((H, OBJ, 0))}, {"a": dets((H, OBJ, 1, 0.9))})
    assert r.ap_per_hoi[0] == 0.0 and np.isnan(r.ap_per_hoi[1])


def test_iou_just_under_half_is_a_false_positive_and_half_is_a_true_positive():
    # GT object 100 x 100 = 10000 px (+1 convention). A detection rows 0..48 covers 100
    # x 49 = 4900 px inside it: IoU 0.49 -> FP. Rows 0..49: 5000 / 10000 = 0.5 -> TP (>=
    # 0.5). The human box is exact, so min(IoU_h, IoU_o) is the object's IoU.
    g = {"a": gt((H, OBJ, 0))}
    under = evaluate(g, {"a": dets((H, [200, 0, 299, 48], 0, 0.9))})
    at = evaluate(g, {"a": dets((H, [200, 0, 299, 49], 0, 0.9))})
    assert under.ap_per_hoi[0] == 0.0 and at.ap_per_hoi[0] == pytest.approx(1.0)


def test_the_plus_one_convention_decides_a_box_that_plain_iou_would_reject():
    # GT object [0,0,9,9], detection [0,0,9,4]. Inclusive pixels: 10 x 5 = 50 of 100 ->
    # IoU 0.5, TP. Continuous IoU would be 9*4 / (9*9) = 0.444 -> FP. The official code
    # uses the +1 widths.
    g = {"a": gt((H, [0, 0, 9, 9], 0))}
    r = evaluate(g, {"a": dets((H, [0, 0, 9, 4], 0, 0.9))})
    assert r.ap_per_hoi[0] == pytest.approx(1.0)


def test_unranked_ties_keep_image_order_then_row_order():
    # One GT pair, in image b. A false detection in image a and the true one in b, same
    # score. MATLAB's sort is stable over detections listed image by image: with a
    # before b the ranking is FP, TP -> precision .5 at recall 1 -> AP 0.5; with b first
    # it is TP, FP -> 1.
    wrong = [500, 500, 599, 599]
    d = {"a": dets((wrong, OBJ, 0, 0.5)), "b": dets((H, OBJ, 0, 0.5))}
    a_first = {"a": gt(), "b": gt((H, OBJ, 0))}
    b_first = {"b": gt((H, OBJ, 0)), "a": gt()}
    assert evaluate(a_first, d).ap_per_hoi[0] == pytest.approx(0.5)
    assert evaluate(b_first, d).ap_per_hoi[0] == pytest.approx(1.0)
    # Inside one image, the earlier row wins the tie.
    g = {"a": gt((H, OBJ, 0))}
    wrong_first = {"a": dets((wrong, OBJ, 0, 0.5), (H, OBJ, 0, 0.5))}
    right_first = {"a": dets((H, OBJ, 0, 0.5), (wrong, OBJ, 0, 0.5))}
    assert evaluate(g, wrong_first).ap_per_hoi[0] == pytest.approx(0.5)
    assert evaluate(g, right_first).ap_per_hoi[0] == pytest.approx(1.0)


def test_one_detection_between_two_ground_truth_pairs_takes_the_closer_one_only():
    # GT humans H1 = rows 0..99 and H2 = rows 10..109, same object. Detection 1 (rows
    # 8..107) overlaps H2 by 9800/10200 = .96 and H1 by 9200/10800 = .85 -> takes H2
    # (TP). Detection 2 (rows 9..108) is again closest to H2 (.98 vs .83); H2 is taken,
    # so it is a FP even though its IoU with the free H1 is .83: no fall-back to the
    # second best pair. recall .5 .5, precision 1 .5 -> 11-point AP = 6/11 (t = 0..0.5).
    h1, h2 = [0, 0, 99, 99], [0, 10, 99, 109]
    g = {"a": gt((h1, OBJ, 0), (h2, OBJ, 0))}
    d = {"a": dets(([0, 8, 99, 107], OBJ, 0, 0.9), ([0, 9, 99, 108], OBJ, 0, 0.8))}
    m = match_detections(g, d, 3, HOI_TO_OBJECT)
    assert m.is_tp.tolist() == [True, False]
    r = evaluate(g, d)
    assert r.ap_per_hoi[0] == pytest.approx(6 / 11) and r.max_recall_per_hoi[0] == 0.5


def test_group_means_over_rare_non_rare_seen_unseen():
    # HOI 0: perfect (AP 1). HOI 1: not detected (AP 0). HOI 2: FP then TP -> precision
    # .5 at recall 1 for every t -> AP .5. rare = {1}, unseen = {0}: full (1+0+.5)/3 =
    # .5; rare 0; non-rare (1+.5)/2 = .75; seen (0+.5)/2 = .25; unseen 1.
    g = {"a": gt((H, OBJ, 0), (H, OBJ, 1), (H, OBJ, 2))}
    d = {
        "a": dets(
            (H, OBJ, 0, 0.9), ([500, 500, 599, 599], OBJ, 2, 0.8), (H, OBJ, 2, 0.7)
        )
    }
    r = evaluate(g, d, rare_hois=[1], unseen_hois=[0])
    assert r.ap_per_hoi.tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert r.mean_ap == pytest.approx(
        {"full": 0.5, "rare": 0.0, "non_rare": 0.75, "seen": 0.25, "unseen": 1.0}
    )


def test_without_an_unseen_list_seen_equals_full_and_unseen_is_nan():
    r = evaluate({"a": gt((H, OBJ, 0))}, {"a": dets((H, OBJ, 0, 0.9))})
    assert r.mean_ap["seen"] == r.mean_ap["full"] and math.isnan(r.mean_ap["unseen"])


def test_known_object_mode_drops_detections_in_images_without_the_object():
    # HOI 0 (object 0). Image a: a HOI-0 pair. Image b: only a HOI-2 pair (object 1).
    # Image c: a HOI-1 pair (object 0 again). Ranked HOI-0 detections: b (.9, FP), c
    # (.8, FP), a (.7, TP). Default: precision 1/3 at recall 1 -> AP 1/3. Known object:
    # b is dropped (no object-0 label there), c stays -> FP, TP -> AP .5.
    g = {"a": gt((H, OBJ, 0)), "b": gt((H, OBJ, 2)), "c": gt((H, OBJ, 1))}
    d = {
        "a": dets((H, OBJ, 0, 0.7)),
        "b": dets((H, OBJ, 0, 0.9)),
        "c": dets((H, OBJ, 0, 0.8)),
    }
    m = match_detections(g, d, 3, HOI_TO_OBJECT)
    default = hoi_map_from_matches(m, HOI_TO_OBJECT)
    known = hoi_map_from_matches(m, HOI_TO_OBJECT, known_object=True)
    assert default.ap_per_hoi[0] == pytest.approx(1 / 3)
    assert known.ap_per_hoi[0] == pytest.approx(0.5) and known.known_object


def test_official_thresholds_count_a_recall_of_exactly_point_six():
    # 10 GT pairs, 6 found with precision 1, nothing else: recall ends at 6/10 = 0.6.
    # MATLAB's 0:0.1:1 holds the double 0.6 (built as 1 - 4*0.1), so t = 0.6 counts: AP
    # 7/11. CDN's np.arange gives 0.6000000000000001 > 0.6, so it counts only t =
    # 0..0.5: AP 6/11.
    is_tp = np.ones(6, dtype=bool)
    assert average_precision(is_tp, 10, "official")[0] == pytest.approx(7 / 11)
    assert average_precision(is_tp, 10, "voc11")[0] == pytest.approx(6 / 11)


def test_average_precision_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="ap_method"):
        average_precision(np.ones(1, bool), 1, "coco")


def test_detections_for_an_image_outside_the_ground_truth_are_refused():
    with pytest.raises(DataError, match="not in the ground truth"):
        evaluate({"a": gt((H, OBJ, 0))}, {"zzz": dets((H, OBJ, 0, 0.9))})


def test_triplets_that_are_no_hoi_are_dropped_when_converting():
    table = np.array([[0, -1], [1, 2]])  # verb 0 only with object 0
    d = detections_from_triplets(
        np.array([H, H]),
        np.array([OBJ, OBJ]),
        np.array([0, 1]),
        np.array([1, 1]),
        np.array([0.9, 0.8]),
        table,
    )
    assert d.hoi_idx.tolist() == [2] and d.scores.tolist() == [0.8]


def _vocab():
    return SimpleNamespace(
        name="toy",
        verbs=["ride", "hold"],
        objects=["person", "bike"],
        num_verbs=2,
        num_objects=2,
        hoi_index=lambda: np.array([[-1, 0], [1, 2]]),
    )


def _record(key, hois, classes=(0, 1)):
    return SimpleNamespace(
        key=key,
        boxes_xyxy_px=np.array([H, OBJ], np.float32),
        box_classes=np.array(classes),
        hois=np.array(hois).reshape(-1, 3),
    )


def test_gt_from_records_maps_each_label_to_its_hoi_and_boxes():
    g = gt_from_records(
        [_record("x.jpg", [[0, 1, 0], [0, 1, 1]]), _record("y.jpg", [])], _vocab()
    )
    assert list(g) == ["x.jpg", "y.jpg"]
    # (ride, bike) = 0, (hold, bike) = 2
    assert g["x.jpg"].hoi_idx.tolist() == [0, 2]
    assert (
        g["x.jpg"].object_boxes_xyxy.tolist() == [OBJ, OBJ]
        and len(g["y.jpg"].hoi_idx) == 0
    )


def test_gt_from_records_refuses_a_label_that_is_no_hoi():
    # (ride, person) is -1 in the table.
    with pytest.raises(DataError, match=r"x.jpg.*\(ride, person\)"):
        gt_from_records([_record("x.jpg", [[0, 0, 0]])], _vocab())


# ------------------------------------------------------------------ laws on random
# cases

box = st.tuples(
    st.integers(0, 30), st.integers(0, 30), st.integers(1, 30), st.integers(1, 30)
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
gt_row = st.tuples(box, box, st.integers(0, 2))
det_row = st.tuples(box, box, st.integers(0, 2), st.floats(0, 1))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(gt_row, max_size=4), min_size=1, max_size=4),
    st.lists(st.lists(det_row, max_size=6), min_size=1, max_size=4),
    st.sampled_from(["official", "voc11", "area"]),
)
def test_random_ap_is_a_fraction_and_a_new_perfect_top_detection_never_lowers_it(
    gts, detss, method
):
    g = {f"i{k}": gt(*rows) for k, rows in enumerate(gts)}
    d = {f"i{k}": dets(*rows) for k, rows in enumerate(detss[: len(gts)])}
    before = evaluate(g, d, ap_method=method)
    finite = before.ap_per_hoi[~np.isnan(before.ap_per_hoi)]
    # 11 sums of 1/11 may give 1 + 2e-16
    assert ((finite >= 0) & (finite <= 1 + 1e-12)).all()
    # A new image with one GT pair of HOI 0 and its exact detection above every score:
    # every earlier point (recall, precision) moves up and right, so the envelope cannot
    # drop.
    g["new"] = gt((H, OBJ, 0))
    d["new"] = dets((H, OBJ, 0, 2.0))
    after = evaluate(g, d, ap_method=method)
    assert (
        after.ap_per_hoi[0]
        >= (0.0 if np.isnan(before.ap_per_hoi[0]) else before.ap_per_hoi[0]) - 1e-12
    )


def test_a_perfect_detection_that_takes_an_already_matched_pair_can_lower_ap():
    # The limit of the law above. Two GT pairs, both found: AP 1. A perfect detection of
    # pair 1 at the top takes pair 1 from its old detection, which becomes a FP: recall
    # .5 .5 1, precision 1 .5 2/3 -> AP 28/33 < 1.
    h2 = [300, 300, 399, 399]
    g = {"a": gt((H, OBJ, 0), (h2, OBJ, 0))}
    old = [([0, 0, 99, 90], OBJ, 0, 0.9), (h2, OBJ, 0, 0.8)]
    assert evaluate(g, {"a": dets(*old)}).ap_per_hoi[0] == pytest.approx(1.0)
    assert evaluate(g, {"a": dets((H, OBJ, 0, 1.0), *old)}).ap_per_hoi[
        0
    ] == pytest.approx(28 / 33)


def _literal_official_ap(g, d, hoi):
    """A line-by-line reading of VOCevaldet_bboxpair.m for one category: the oracle."""

    def iou(a, b):
        iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
        ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
        if iw <= 0 or ih <= 0:
            return 0.0
        ua = (
            (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
            + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            - iw * ih
        )
        return iw * ih / ua

    gts = {k: [(h, o) for h, o, c in zip(*v) if c == hoi] for k, v in g.items()}
    taken = {k: [False] * len(v) for k, v in gts.items()}
    npos = sum(len(v) for v in gts.values())
    rows = [(k, h, o, s) for k, v in d.items() for h, o, c, s in zip(*v) if c == hoi]
    # stable
    rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: -rows[i][3])]
    tp, fp = [], []
    for k, h, o, _ in rows:
        ov_max, j_max = -math.inf, None
        for j, (gh, go) in enumerate(gts[k]):
            ov = min(iou(h, gh), iou(o, go))
            if ov > ov_max:
                ov_max, j_max = ov, j
        hit = ov_max >= 0.5 and not taken[k][j_max]
        if hit:
            taken[k][j_max] = True
        tp.append(int(hit))
        fp.append(int(not hit))
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, 1)
    ap = 0.0
    for t in [k * 0.1 for k in range(6)] + [1 - (10 - k) * 0.1 for k in range(6, 11)]:
        p = prec[rec >= t]
        ap += (p.max() if len(p) else 0) / 11
    return ap


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(gt_row, max_size=4), min_size=1, max_size=4),
    st.lists(
        st.lists(
            st.tuples(box, box, st.integers(0, 2), st.sampled_from([0.1, 0.5, 0.9])),
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_ap_equals_a_literal_reading_of_the_official_matlab_code(gts, detss):
    # Scores from three values only, so ties are frequent and their order is checked
    # too.
    g = {f"i{k}": gt(*rows) for k, rows in enumerate(gts)}
    d = {f"i{k}": dets(*rows) for k, rows in enumerate(detss[: len(gts)])}
    r = evaluate(g, d)
    for hoi in range(3):
        if r.num_gt_per_hoi[hoi]:
            assert r.ap_per_hoi[hoi] == _literal_official_ap(g, d, hoi)
