"""Box formats, union boxes and pair IoU: laws checked on random boxes, conventions on
hand-built cases.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.boxes import (
    box_iou,
    box_iou_np,
    box_iou_plus1_np,
    cxcywh_to_xyxy,
    pair_iou,
    pair_iou_np,
    union_boxes,
    xyxy_to_cxcywh,
)


@st.composite
def box_sets(draw, min_size=1, max_size=5, n=None):
    """(N, 4) float64 xyxy boxes with integer corners and positive area, in a 200 x 200
    px frame.
    """
    n = draw(st.integers(min_size, max_size)) if n is None else n
    rows = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, 150)), draw(st.integers(0, 150))
        w, h = draw(st.integers(1, 50)), draw(st.integers(1, 50))
        rows.append([x1, y1, x1 + w, y1 + h])
    return np.array(rows, dtype=np.float64)


@st.composite
def two_pair_sets(draw):
    """(h1, o1, h2, o2): N pairs against M pairs."""
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return (
        draw(box_sets(n=n)),
        draw(box_sets(n=n)),
        draw(box_sets(n=m)),
        draw(box_sets(n=m)),
    )


def reference_iou(a, b):
    """Plain IoU of two xyxy boxes written out one scalar at a time (the oracle)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def t(x):
    return torch.as_tensor(x, dtype=torch.float64)


# ---- pair IoU: symmetric, 1 on identical pairs, in [0, 1], min of the two box IoUs
# ----


@settings(max_examples=60, deadline=None)
@given(two_pair_sets())
def test_pair_iou_is_symmetric_in_torch_and_numpy(sets):
    h1, o1, h2, o2 = sets
    forward = pair_iou(t(h1), t(o1), t(h2), t(o2))
    assert forward.shape == (len(h1), len(h2))
    assert torch.allclose(
        forward, pair_iou(t(h2), t(o2), t(h1), t(o1)).T, rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        pair_iou_np(h1, o1, h2, o2), pair_iou_np(h2, o2, h1, o1).T, rtol=0, atol=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(box_sets(), box_sets(n=5))
def test_pair_iou_is_one_on_identical_pairs_of_positive_area_boxes(humans, objects):
    objects = objects[: len(humans)]
    diagonal = pair_iou(t(humans), t(objects), t(humans), t(objects)).diagonal()
    assert torch.allclose(
        diagonal, torch.ones(len(humans), dtype=torch.float64), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        np.diagonal(pair_iou_np(humans, objects, humans, objects)), 1.0, atol=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(two_pair_sets())
def test_pair_iou_lies_in_unit_interval_and_is_the_min_of_the_two_box_ious(sets):
    h1, o1, h2, o2 = sets
    got_torch = pair_iou(t(h1), t(o1), t(h2), t(o2)).numpy()
    got_np = pair_iou_np(h1, o1, h2, o2)
    assert ((got_np >= 0) & (got_np <= 1)).all() and (
        (got_torch >= 0) & (got_torch <= 1)
    ).all()
    expected = np.array(
        [
            [
                min(reference_iou(h1[i], h2[j]), reference_iou(o1[i], o2[j]))
                for j in range(len(h2))
            ]
            for i in range(len(h1))
        ]
    )
    np.testing.assert_allclose(got_np, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_torch, expected, rtol=0, atol=1e-12)


def test_pair_iou_of_pairs_sharing_the_human_is_the_object_iou():
    # Same human (IoU 1); objects [0,0,10,10] and [5,0,15,10] overlap 5x10 = 50 of 150
    # -> 1/3.
    h = [[0.0, 0.0, 4.0, 4.0]]
    got = pair_iou(t(h), t([[0.0, 0.0, 10.0, 10.0]]), t(h), t([[5.0, 0.0, 15.0, 10.0]]))
    assert got.item() == pytest.approx(1 / 3)


@settings(max_examples=60, deadline=None)
@given(box_sets(), box_sets())
def test_box_iou_np_equals_torchvision_box_iou(a, b):
    np.testing.assert_allclose(
        box_iou_np(a, b), box_iou(t(a), t(b)).numpy(), rtol=0, atol=1e-12
    )


def test_box_iou_np_of_zero_area_boxes_is_zero_not_nan():
    point = np.array([[3.0, 3.0, 3.0, 3.0]])
    assert box_iou_np(point, point).tolist() == [[0.0]]


# ---- the inclusive "+1" pixel convention of the official HICO-DET MATLAB code ----


def test_plus1_iou_counts_both_end_pixels():
    # [0,0,9,9] and [5,0,14,9] are 10x10 px each (columns 0..9 and 5..14); they share
    # columns 5..9 = 5 px by 10 rows = 50 px, union 100 + 100 - 50 = 150, so IoU = 1/3.
    a, b = np.array([[0, 0, 9, 9]]), np.array([[5, 0, 14, 9]])
    assert box_iou_plus1_np(a, b)[0, 0] == pytest.approx(1 / 3)
    # plain IoU reads them as 9x9 boxes sharing 4x9: 36 / (81 + 81 - 36) = 2/7, not 1/3
    assert box_iou_np(a, b)[0, 0] == pytest.approx(2 / 7)
    assert box_iou_plus1_np(a, a)[0, 0] == 1.0


def test_a_one_pixel_box_matches_itself_under_plus1_but_has_no_area_in_plain_iou():
    # [3,3,3,3] is the single pixel (3, 3) under +1 (area 1), a point of area 0 for
    # plain IoU.
    pixel = np.array([[3, 3, 3, 3]])
    assert box_iou_plus1_np(pixel, pixel)[0, 0] == 1.0
    assert box_iou_np(pixel, pixel)[0, 0] == 0.0


def test_plus1_iou_of_boxes_one_pixel_apart_is_zero():
    # columns 0..9 and 10..19 share no pixel: min(x2) - max(x1) + 1 = 9 - 10 + 1 = 0
    assert (
        box_iou_plus1_np(np.array([[0, 0, 9, 9]]), np.array([[10, 0, 19, 9]]))[0, 0]
        == 0.0
    )


@settings(max_examples=60, deadline=None)
@given(box_sets(min_size=1), box_sets(min_size=1))
def test_plus1_iou_equals_plain_iou_of_boxes_grown_by_one_pixel_right_and_down(a, b):
    # inclusive pixel box [x1, y1, x2, y2] covers the continuous region [x1, x2 + 1) x
    # [y1, y2 + 1)
    grow = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(
        box_iou_plus1_np(a, b), box_iou_np(a + grow, b + grow), rtol=0, atol=1e-12
    )


# ---- box formats and union boxes ----

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
positive = st.floats(1e-2, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite, positive, positive), min_size=1, max_size=6))
def test_cxcywh_to_xyxy_and_back_is_the_identity(rows):
    cxcywh = torch.tensor(rows, dtype=torch.float64)
    xyxy = cxcywh_to_xyxy(cxcywh)
    assert (xyxy[:, 2] >= xyxy[:, 0]).all() and (xyxy[:, 3] >= xyxy[:, 1]).all()
    assert torch.allclose(xyxy_to_cxcywh(xyxy), cxcywh, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(box_sets(n=4))
def test_xyxy_to_cxcywh_and_back_is_the_identity(boxes):
    xyxy = t(boxes).reshape(2, 2, 4)  # any leading shape (..., 4)
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy, rtol=0, atol=1e-9)


def test_xyxy_to_cxcywh_on_a_hand_case():
    # [10, 20, 30, 60]: centre (20, 40), 20 wide, 40 tall
    assert xyxy_to_cxcywh(torch.tensor([[10.0, 20.0, 30.0, 60.0]])).tolist() == [
        [20.0, 40.0, 20.0, 40.0]
    ]


@settings(max_examples=60, deadline=None)
@given(box_sets(n=3), box_sets(n=3))
def test_union_box_holds_both_boxes_and_is_the_smallest_such_box(humans, objects):
    u = union_boxes(t(humans), t(objects)).numpy()
    for box in (humans, objects):
        assert (u[:, :2] <= box[:, :2]).all() and (u[:, 2:] >= box[:, 2:]).all()
    # smallest: every side lies on a side of one of the two boxes, so moving it inwards
    # cuts that box
    assert ((u == humans) | (u == objects)).all()


def test_union_box_on_a_hand_case():
    # human left, object lower right: the union runs from the human top-left to the
    # object bottom-right
    u = union_boxes(
        torch.tensor([[0.0, 5.0, 10.0, 20.0]]), torch.tensor([[8.0, 15.0, 30.0, 40.0]])
    )
    assert u.tolist() == [[0.0, 5.0, 30.0, 40.0]]
