"""Zero-shot settings applied to training records: exactly the unseen labels go,
everything else stays.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.errors import DataError
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.splits import (
    apply_setting,
    hoi_counts,
    rare_hois_from_records,
    unseen_label_mask,
)
from eoid.pipeline.data.vocab import load_vocabulary

HICO = load_vocabulary("hico-det")
SETTINGS = sorted(HICO.settings)


def record(classes, hois, key="img.jpg"):
    n = len(classes)
    offsets = np.arange(n, dtype=np.float32)[:, None]
    boxes = np.tile(np.array([[0, 0, 10, 10]], dtype=np.float32), (n, 1)) + offsets
    return ImageRecord(
        key,
        Path(key),
        100,
        100,
        boxes,
        np.asarray(classes, dtype=np.int64),
        np.asarray(hois, dtype=np.int64).reshape(-1, 3),
    )


def hoi(verb, obj):
    return HICO.hoi_index()[HICO.verbs.index(verb), HICO.objects.index(obj)]


@st.composite
def random_records(draw):
    """Images with 1-3 people and 1-4 objects, labelled with random valid HOIs."""
    out = []
    for k in range(draw(st.integers(1, 4))):
        people = draw(st.integers(1, 3))
        hoi_ids = draw(st.lists(st.integers(0, 599), min_size=0, max_size=6))
        classes = [0] * people + [HICO.hois[h][1] for h in hoi_ids]
        labels = [
            (draw(st.integers(0, people - 1)), people + i, HICO.hois[h][0])
            for i, h in enumerate(hoi_ids)
        ]
        out.append(record(classes, labels, key=f"img{k}.jpg"))
    return out


@settings(max_examples=60, deadline=None)
@given(records=random_records(), name=st.sampled_from(SETTINGS))
def test_apply_setting_keeps_every_seen_label_and_removes_every_unseen_one(
    records, name
):
    s = HICO.setting(name)
    unseen_hois = set(s.unseen_hois)
    unseen_verbs = {HICO.hois[i][0] for i in unseen_hois}
    table = HICO.hoi_index()
    out = apply_setting(records, HICO, name)
    assert [r.key for r in out] == [r.key for r in records]
    for before, after in zip(records, out):
        assert np.array_equal(before.boxes_xyxy_px, after.boxes_xyxy_px)
        assert np.array_equal(before.box_classes, after.box_classes)
        expected = [
            tuple(label)
            for label in before.hois.tolist()
            if not (
                label[2] in unseen_verbs
                if s.kind == "verb"
                else table[label[2], before.box_classes[label[1]]] in unseen_hois
            )
        ]
        # same labels, same order
        assert [tuple(label) for label in after.hois.tolist()] == expected


def test_weak_spot_8_case_keeps_all_three_seen_labels():
    # EOID_CODE_FACTS weak spot 8: (h0,o1,ride), (h0,o2,hold), (h3,o2,hold) -> the
    # original UC loader kept only (h0,o1). None of these HOIs is in uc1, so all three
    # labels must survive.
    classes = [0, 1, 17, 0]  # person, bicycle, horse, person
    labels = [
        (0, 1, HICO.verbs.index("ride")),
        (0, 2, HICO.verbs.index("hold")),
        (3, 2, HICO.verbs.index("hold")),
    ]
    assert not {hoi("ride", "bicycle"), hoi("hold", "horse")} & set(
        HICO.unseen_hois("uc1")
    )
    (out,) = apply_setting([record(classes, labels)], HICO, "uc1")
    assert out.hois.tolist() == [list(label) for label in labels]


def test_ua_drops_unseen_verbs_but_keeps_seen_verbs_of_the_same_pair():
    # pair (0, 1) person-bicycle labelled ride (seen) and straddle (UA verb): only
    # straddle goes.
    ride, straddle = HICO.verbs.index("ride"), HICO.verbs.index("straddle")
    (out,) = apply_setting(
        [record([0, 1], [(0, 1, ride), (0, 1, straddle)])], HICO, "ua"
    )
    assert out.hois.tolist() == [[0, 1, ride]]


def test_uc_drops_an_unseen_combination_but_keeps_the_verb_with_other_objects():
    # uc0 hides board-airplane (HOI 0) but not board-bus (HOI 54)
    assert 0 in HICO.unseen_hois("uc0") and 54 not in HICO.unseen_hois("uc0")
    board = HICO.verbs.index("board")
    rec = record([0, 4, 5], [(0, 1, board), (0, 2, board)])  # person, airplane, bus
    (out,) = apply_setting([rec], HICO, "uc0")
    assert out.hois.tolist() == [[0, 2, board]] and out.num_boxes == 3


def test_an_image_whose_labels_are_all_unseen_stays_with_its_boxes():
    (out,) = apply_setting(
        [record([0, 1], [(0, 1, HICO.verbs.index("carry"))])], HICO, "ua"
    )
    assert out.hois.shape == (0, 3) and out.num_boxes == 2


def test_empty_setting_changes_nothing_and_unknown_setting_is_refused():
    rec = record([0, 1], [(0, 1, HICO.verbs.index("carry"))])
    assert apply_setting([rec], HICO, "")[0] is rec
    assert not unseen_label_mask(rec.hois, rec.box_classes, HICO, "").any()
    with pytest.raises(DataError, match="known settings"):
        apply_setting([], HICO, "uc9")


def test_hoi_counts_count_each_label_once_per_hoi():
    ride, hold = HICO.verbs.index("ride"), HICO.verbs.index("hold")
    recs = [
        record([0, 1, 0], [(0, 1, ride), (2, 1, ride), (0, 1, hold)]),
        record([0, 1], [(0, 1, ride)]),
    ]
    counts = hoi_counts(recs, HICO)
    assert (
        counts[hoi("ride", "bicycle")] == 3
        and counts[hoi("hold", "bicycle")] == 1
        and counts.sum() == 4
    )


def test_rare_hois_are_those_below_the_threshold():
    ride = HICO.verbs.index("ride")
    recs = [record([0, 1], [(0, 1, ride)])] * 10 + [record([0, 17], [(0, 1, ride)])] * 9
    rare = rare_hois_from_records(recs, HICO, threshold=10)
    assert (
        hoi("ride", "bicycle") not in rare
        and hoi("ride", "horse") in rare
        and len(rare) == 599
    )
