"""Predictions JSON round trip, its validation messages, and results.json / the printed
table.
"""

import json
import math

import numpy as np
import pytest

from eoid.errors import DataError
from eoid.pipeline.evaluation.hico_map import HoiMapResult
from eoid.pipeline.evaluation.predictions_io import (
    ImageTriplets,
    format_table,
    read_predictions,
    results_to_json,
    to_detections,
    write_predictions,
    write_results,
)

TRIPLET = {
    "human_box": [0.0, 0.0, 10.5, 10.0],
    "object_box": [5.0, 5.0, 20.0, 30.0],
    "object": 1,
    "verb": 0,
    "score": 0.75,
}


def write_raw(tmp_path, content):
    path = tmp_path / "preds.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_predictions_survive_a_write_read_round_trip(tmp_path):
    preds = {
        "a.jpg": ImageTriplets(
            np.array([[0, 0, 10.5, 10]]),
            np.array([[5, 5, 20, 30.25]]),
            np.array([1]),
            np.array([2]),
            np.array([0.123456789012345]),
        ),
        "b.jpg": ImageTriplets(
            np.zeros((0, 4)),
            np.zeros((0, 4)),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0),
        ),
    }
    path = tmp_path / "p.json"
    write_predictions(path, preds)
    back = read_predictions(
        path, num_verbs=3, num_objects=2, known_file_names={"a.jpg", "b.jpg"}
    )
    assert list(back) == ["a.jpg", "b.jpg"]
    for name in preds:
        for field, value in zip(ImageTriplets._fields, preds[name]):
            np.testing.assert_array_equal(getattr(back[name], field), value)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"human_box": [0, 0, 10]},
            r"triplet 0 has human_box \[0, 0, 10\], not a list of 4",
        ),
        ({"object_box": [10, 0, 5, 5]}, "x2 < x1"),
        ({"verb": 7}, r"verb 7, not a 0-based index in 0\.\.2"),
        ({"object": -1}, r"object -1"),
        ({"score": "high"}, "not a finite number"),
    ],
)
def test_a_bad_triplet_is_refused_naming_file_record_and_triplet(
    tmp_path, change, message
):
    path = write_raw(
        tmp_path, [{"file_name": "a.jpg", "triplets": [{**TRIPLET, **change}]}]
    )
    with pytest.raises(DataError, match=message) as err:
        read_predictions(path, num_verbs=3, num_objects=2)
    assert str(path) in str(err.value) and "record 0 (a.jpg)" in str(err.value)


def test_a_non_finite_score_is_refused(tmp_path):
    # Python's json reads the NaN literal, so the check is needed.
    text = json.dumps([{"file_name": "a.jpg", "triplets": [TRIPLET]}]).replace(
        "0.75", "NaN"
    )
    with pytest.raises(DataError, match="score nan, not a finite number"):
        read_predictions(write_raw(tmp_path, text), 3, 2)


def test_a_file_name_not_in_the_annotations_is_refused(tmp_path):
    path = write_raw(
        tmp_path,
        [
            {"file_name": "a.jpg", "triplets": []},
            {"file_name": "zz.jpg", "triplets": []},
        ],
    )
    with pytest.raises(
        DataError,
        match=r"record 1 \(zz.jpg\): this file_name is not in the annotations",
    ):
        read_predictions(path, 3, 2, known_file_names={"a.jpg"})


def test_a_second_record_for_one_image_and_a_non_list_are_refused(tmp_path):
    twice = write_raw(tmp_path, [{"file_name": "a.jpg", "triplets": []}] * 2)
    with pytest.raises(DataError, match="second record"):
        read_predictions(twice, 3, 2)
    with pytest.raises(DataError, match="expected a JSON list"):
        read_predictions(write_raw(tmp_path, {"a.jpg": []}), 3, 2)
    with pytest.raises(DataError, match="not valid JSON"):
        read_predictions(write_raw(tmp_path, "[{"), 3, 2)


def test_to_detections_maps_verb_object_to_hoi():
    preds = {
        "a.jpg": ImageTriplets(
            np.zeros((2, 4)),
            np.zeros((2, 4)),
            np.array([1, 0]),
            np.array([0, 0]),
            np.array([0.5, 0.4]),
        )
    }
    # verb 0 is a HOI only with object 1
    table = np.array([[-1, 7]])
    assert to_detections(preds, table)["a.jpg"].hoi_idx.tolist() == [7]


def _result(ap):
    nan = float("nan")
    return HoiMapResult(
        np.array(ap),
        np.array([1.0, nan]),
        np.array([1, 0]),
        {"full": ap[0], "rare": nan, "non_rare": ap[0], "seen": ap[0], "unseen": nan},
        {"full": 1.0, "rare": nan, "non_rare": 1.0, "seen": 1.0, "unseen": nan},
        "official",
        False,
    )


def test_results_json_holds_percentages_and_null_for_nan(tmp_path):
    res = results_to_json(
        _result([0.25, float("nan")]),
        known_object=_result([0.5, float("nan")]),
        unseen_recall={3: 0.1, 5: 0.2, 10: float("nan")},
        meta={"setting": "ua"},
    )
    path = write_results(tmp_path / "out", res)
    back = json.loads(path.read_text())
    # Unseen has no ground truth, so neither has the harmonic mean of Seen and Unseen
    assert back["mAP"] == {
        "full": 25.0,
        "rare": None,
        "non_rare": 25.0,
        "seen": 25.0,
        "unseen": None,
        "hm": None,
    }
    assert (
        back["ap_per_hoi"] == [25.0, None]
        and back["known_object"]["mAP"]["full"] == 50.0
    )
    assert back["unseen_recall"] == {"3": 10.0, "5": 20.0, "10": None} and back[
        "meta"
    ] == {"setting": "ua"}
    table = format_table(back)
    assert (
        "25.00" in table
        and "50.00" in table
        and "U-R@5 20.00" in table
        and "known object" in table
    )
    assert not math.isnan(back["mAP"]["full"])


def test_results_json_and_table_carry_the_harmonic_mean_of_seen_and_unseen():
    nan = float("nan")
    # Seen 0.6 and Unseen 0.2 -> HM = 2 * 60 * 20 / 80 = 30 (percent)
    result = HoiMapResult(
        np.array([0.6, 0.2]),
        np.array([1.0, 1.0]),
        np.array([1, 1]),
        {"full": 0.4, "rare": nan, "non_rare": 0.4, "seen": 0.6, "unseen": 0.2},
        {"full": 1.0, "rare": nan, "non_rare": 1.0, "seen": 1.0, "unseen": 1.0},
        "official",
        False,
    )
    res = results_to_json(result)
    assert res["mAP"]["hm"] == pytest.approx(30.0)
    header, row = format_table(res).splitlines()[:2]
    assert header.split()[-1] == "HM" and row.split()[-1] == "30.00"


def test_table_of_an_older_results_json_computes_its_hm_from_seen_and_unseen():
    old = {
        "mAP": {
            "full": 40.0,
            "rare": None,
            "non_rare": 40.0,
            "seen": 60.0,
            "unseen": 20.0,
        }
    }
    assert format_table(old).splitlines()[1].split()[-1] == "30.00"
