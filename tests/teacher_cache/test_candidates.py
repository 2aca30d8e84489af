import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.teacher_cache.candidates import candidate_pairs, labelled_mask

PERSON, BALL = 0, 1


def test_every_human_is_paired_with_every_other_box_and_humans_can_be_objects():
    # boxes: 0 person, 1 person, 2 ball -> (0,1) (0,2) (1,0) (1,2); never (i, i); the
    # ball is no subject
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 40]], np.float32)
    pairs = candidate_pairs(boxes, np.array([PERSON, PERSON, BALL]), PERSON)
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 0], [1, 2]]


def test_pairs_repeating_the_same_boxes_are_kept_once():
    # box 3 repeats box 2 exactly (HICO lists a box once per HOI), box 1 repeats the
    # person box 0: (0,2), (0,3), (1,2), (1,3) are one pair; (0,1) pairs a box with its
    # own copy and is dropped.
    boxes = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40], [30, 30, 40, 40]], np.float32
    )
    pairs = candidate_pairs(boxes, np.array([PERSON, PERSON, BALL, BALL]), PERSON)
    assert pairs.tolist() == [[0, 2]]


def test_same_boxes_with_another_object_class_are_distinct_pairs():
    boxes = np.array([[0, 0, 10, 10], [30, 30, 40, 40], [30, 30, 40, 40]], np.float32)
    pairs = candidate_pairs(boxes, np.array([PERSON, BALL, 2]), PERSON)
    assert pairs.tolist() == [[0, 1], [0, 2]]


def test_an_image_without_humans_has_no_pairs():
    boxes = np.array([[0, 0, 10, 10], [30, 30, 40, 40]], np.float32)
    assert candidate_pairs(boxes, np.array([BALL, BALL]), PERSON).shape == (0, 2)


def test_a_labelled_pair_with_a_non_human_subject_is_still_a_candidate():
    boxes = np.array([[0, 0, 10, 10], [30, 30, 40, 40]], np.float32)
    pairs = candidate_pairs(
        boxes, np.array([BALL, BALL]), PERSON, labelled_pairs=np.array([[0, 1]])
    )
    assert pairs.tolist() == [[0, 1]]


def test_labelled_mask_marks_pairs_with_a_label_even_on_a_duplicate_box():
    boxes = np.array(
        [[0, 0, 10, 10], [30, 30, 40, 40], [30, 30, 40, 40], [50, 50, 60, 60]],
        np.float32,
    )
    classes = np.array([PERSON, BALL, BALL, BALL])
    # (0,1) (0,3); box 2 duplicates box 1
    pairs = candidate_pairs(boxes, classes, PERSON)
    # labelled on the duplicate box 2
    hois = np.array([[0, 2, 5]])
    assert pairs.tolist() == [[0, 1], [0, 3]]
    assert labelled_mask(pairs, boxes, classes, hois).tolist() == [True, False]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=0, max_size=7)
)
def test_candidates_equal_the_brute_force_set_of_distinct_pairs(spec):
    # boxes drawn from 4 positions, so duplicates are common; oracle: the set of
    # distinct (human box coords, object box coords, object class) over all human x
    # other pairs.
    pos = np.array(
        [[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 9], [1, 2, 3, 4]], np.float32
    )
    boxes = pos[[p for p, _ in spec]].reshape(-1, 4)
    classes = np.array([c for _, c in spec], np.int64)
    pairs = candidate_pairs(boxes, classes, 0)

    def key(h: int, o: int) -> tuple:
        return (tuple(boxes[h]), tuple(boxes[o]), int(classes[o]))

    expected = {
        key(h, o)
        for h in range(len(spec))
        for o in range(len(spec))
        if h != o and classes[h] == 0 and not np.array_equal(boxes[h], boxes[o])
    }
    got = [key(h, o) for h, o in pairs]
    assert len(got) == len(set(got)) and set(got) == expected
