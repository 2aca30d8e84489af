"""Which pairs of an image the student trains on: labelled pairs first, then unknown
pairs by rule.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.pipeline.training.pairs import training_pairs

PERSON, CUP, DOG = 0, 2, 3
HOLD, DRINK_WITH, FEED, NO_INTERACTION = 0, 1, 2, 3
NUM_VERBS = 4


def pairs_of(result):
    return [tuple(p) for p in result.pairs.tolist()]


def all_rule(box_classes, hois, no_interaction=NO_INTERACTION):
    return training_pairs(
        np.array(box_classes),
        np.array(hois, dtype=np.int64).reshape(-1, 3),
        NUM_VERBS,
        PERSON,
        no_interaction,
        "all",
    )


# ---- rule "all": every human box x every other box without a seen label (the paper)
# ----


def test_all_rule_pairs_every_human_with_every_other_box_labelled_pairs_first():
    # boxes: 0 person, 1 person, 2 cup, 3 dog. Seen labels: person 0 holds and drinks
    # with the cup, person 1 is labelled no_interaction with the dog. Humans 0 and 1 x
    # every other box = (0,1) (0,2) (0,3) (1,0) (1,2) (1,3); the labelled (0,2) and
    # (1,3) come first in label order, the four others are unknown.
    r = all_rule(
        [PERSON, PERSON, CUP, DOG],
        [(0, 2, HOLD), (0, 2, DRINK_WITH), (1, 3, NO_INTERACTION)],
    )
    assert pairs_of(r) == [(0, 2), (1, 3), (0, 1), (0, 3), (1, 0), (1, 2)]
    assert r.labelled.tolist() == [True, True, False, False, False, False]
    # one row per pair, multi-hot over its seen verbs; unknown pairs carry no label
    assert r.verb_labels.tolist() == [[1, 1, 0, 0], [0, 0, 0, 1]] + [[0, 0, 0, 0]] * 4
    # (1,3) is labelled only no_interaction: labelled but not interactive
    assert r.interactive.tolist() == [True, False, False, False, False, False]
    assert r.pairs.dtype == np.int64 and r.verb_labels.dtype == np.float32


def test_a_pair_labelled_no_interaction_and_another_verb_is_interactive():
    # (0,1) has no_interaction and feed: any verb other than no_interaction makes it
    # interactive
    r = all_rule([PERSON, DOG], [(0, 1, NO_INTERACTION), (0, 1, FEED)])
    assert pairs_of(r) == [(0, 1)] and r.verb_labels.tolist() == [[0, 0, 1, 1]]
    assert r.interactive.tolist() == [True]


def test_without_a_no_interaction_verb_every_labelled_pair_is_interactive():
    # no_interaction=None: verb 3 is an ordinary verb, so the pair labelled with it
    # interacts
    r = all_rule([PERSON, DOG], [(0, 1, 3)], no_interaction=None)
    assert r.interactive.tolist() == [True]


def test_humans_may_be_objects_but_a_box_is_never_paired_with_itself():
    # two persons and nothing else: each person is the object of the other, never of
    # itself
    r = all_rule([PERSON, PERSON], [])
    assert pairs_of(r) == [(0, 1), (1, 0)]
    assert not r.labelled.any() and not r.interactive.any()


def test_an_image_without_humans_has_no_unknown_pairs_under_all():
    r = all_rule([CUP, DOG, DOG], [])
    assert r.pairs.shape == (0, 2) and r.verb_labels.shape == (0, NUM_VERBS)
    assert r.labelled.shape == (0,) and r.interactive.shape == (0,)


def test_unknown_pairs_exclude_labelled_pairs():
    # the one human is labelled with both boxes: nothing is left unknown
    r = all_rule([PERSON, CUP, DOG], [(0, 1, HOLD), (0, 2, FEED)])
    assert pairs_of(r) == [(0, 1), (0, 2)] and r.labelled.all()


@st.composite
def images(draw):
    """(box_classes, hois) with seen labels between a human subject and another box."""
    classes = draw(
        st.lists(st.sampled_from([PERSON, CUP, DOG]), min_size=1, max_size=6)
    )
    humans = [i for i, c in enumerate(classes) if c == PERSON]
    hois = []
    if humans and len(classes) > 1:
        for _ in range(draw(st.integers(0, 6))):
            h = draw(st.sampled_from(humans))
            o = draw(st.sampled_from([i for i in range(len(classes)) if i != h]))
            hois.append((h, o, draw(st.integers(0, NUM_VERBS - 1))))
    return classes, hois


@settings(max_examples=80, deadline=None)
@given(images())
def test_all_rule_gives_the_labelled_pairs_then_exactly_the_other_human_box_pairs(
    image,
):
    classes, hois = image
    r = all_rule(classes, hois)
    got = pairs_of(r)
    labelled = list(dict.fromkeys((h, o) for h, o, _ in hois))
    humans = [i for i, c in enumerate(classes) if c == PERSON]
    every = {(h, o) for h in humans for o in range(len(classes)) if o != h}
    assert len(got) == len(set(got))  # no pair twice
    assert got[: len(labelled)] == labelled and r.labelled.sum() == len(labelled)
    # unknown = the rest, no more
    assert set(got[len(labelled) :]) == every - set(labelled)
    for i, (h, o) in enumerate(got[: len(labelled)]):
        verbs = {v for hh, oo, v in hois if (hh, oo) == (h, o)}
        assert set(np.flatnonzero(r.verb_labels[i])) == verbs
        assert r.interactive[i] == bool(verbs - {NO_INTERACTION})
    assert (
        not r.verb_labels[len(labelled) :].any()
        and not r.interactive[len(labelled) :].any()
    )


# ---- rule "annotated": subjects x objects of the annotated pairs, before the zero-shot
# filter ----


def test_annotated_rule_pairs_only_subjects_and_objects_of_annotated_pairs():
    # boxes: 0 person, 1 person, 2 cup, 3 dog, 4 person. Annotated before the zero-shot
    # filter: (0,2) (1,3) (0,3); after it only (0,2, hold) is seen. Subjects {0,1} x
    # objects {2,3} gives (0,2) (0,3) (1,2) (1,3); (0,2) is labelled, the three others
    # are unknown. Person 4 is in no annotated pair, so it gets no pair at all (rule
    # "all" would pair it with every box).
    annotated = np.array([[0, 2], [1, 3], [0, 3]])
    r = training_pairs(
        np.array([PERSON, PERSON, CUP, DOG, PERSON]),
        np.array([[0, 2, HOLD]]),
        NUM_VERBS,
        PERSON,
        NO_INTERACTION,
        "annotated",
        annotated_pairs=annotated,
    )
    assert pairs_of(r) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert r.labelled.tolist() == [True, False, False, False]
    assert r.verb_labels.tolist() == [[1, 0, 0, 0]] + [[0, 0, 0, 0]] * 3


def test_annotated_rule_never_pairs_a_box_with_itself():
    # annotated (0,1) and (1,2): box 1 is both a subject and an object; subjects {0,1} x
    # objects {1,2} = (0,1) (0,2) (1,1) (1,2), and (1,1) is dropped.
    r = training_pairs(
        np.array([PERSON, PERSON, CUP]),
        np.zeros((0, 3)),
        NUM_VERBS,
        PERSON,
        NO_INTERACTION,
        "annotated",
        annotated_pairs=np.array([[0, 1], [1, 2]]),
    )
    assert pairs_of(r) == [(0, 1), (0, 2), (1, 2)] and not r.labelled.any()


def test_annotated_rule_without_annotated_pairs_keeps_only_the_labelled_pairs():
    r = training_pairs(
        np.array([PERSON, CUP]),
        np.array([[0, 1, HOLD]]),
        NUM_VERBS,
        PERSON,
        NO_INTERACTION,
        "annotated",
    )
    assert pairs_of(r) == [(0, 1)] and r.labelled.tolist() == [True]


def test_an_unknown_rule_raises():
    with pytest.raises(ValueError, match="unknown-pair rule 'everything'"):
        training_pairs(
            np.array([PERSON, CUP]),
            np.zeros((0, 3)),
            NUM_VERBS,
            PERSON,
            NO_INTERACTION,
            "everything",
        )
