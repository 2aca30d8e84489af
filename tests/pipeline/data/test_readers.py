"""Annotation readers on small files written by the tests: formats, decisions and every
bad input.
"""

import json
import math

import numpy as np
import pytest
from PIL import Image

from eoid.errors import DataError
from eoid.pipeline.data.readers import check_dataset, format_report, read_annotations
from eoid.pipeline.data.vocab import load_vocabulary

HICO = load_vocabulary("hico-det")
VCOCO = load_vocabulary("v-coco")
RIDE = HICO.verbs.index("ride") + 1  # JSON verb ids are 1-based
HOLD = HICO.verbs.index("hold") + 1


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    return folder


def good_record(file_name="a.png"):
    return {
        "file_name": file_name,
        "annotations": [
            {"bbox": [1, 2, 30, 40], "category_id": 1},  # person
            # bicycle (COCO id 2)
            {"bbox": [10, 10, 60, 45], "category_id": 2},
        ],
        "hoi_annotation": [
            {
                "subject_id": 0,
                "object_id": 1,
                "category_id": RIDE,
                "hoi_category_id": 19,
            },
            {"subject_id": 0, "object_id": 1, "category_id": HOLD},
        ],
    }


def write(tmp_path, records, name="anno.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_hico_json_becomes_records_in_original_pixels(tmp_path, images):
    path = write(tmp_path, [good_record("a.png"), good_record("b.png")])
    result = read_annotations(path, images, HICO)
    assert [r.key for r in result.records] == ["a.png", "b.png"] and result.bad == []
    r = result.records[0]
    assert r.path == images / "a.png" and (r.width, r.height) == (64, 48)
    assert (
        r.boxes_xyxy_px.tolist() == [[1, 2, 30, 40], [10, 10, 60, 45]]
        and r.boxes_xyxy_px.dtype == np.float32
    )
    assert r.box_classes.tolist() == [0, 1]
    assert r.hois.tolist() == [[0, 1, RIDE - 1], [0, 1, HOLD - 1]]


def test_a_label_written_twice_counts_once(tmp_path, images):
    rec = good_record()
    rec["hoi_annotation"].append(dict(rec["hoi_annotation"][0]))
    (r,) = read_annotations(write(tmp_path, [rec]), images, HICO).records
    assert len(r.hois) == 2


def test_box_may_touch_the_image_border_within_one_pixel(tmp_path, images):
    rec = good_record()
    rec["annotations"][1]["bbox"] = [-1, 0, 65, 49]  # 64x48 image, 1 px tolerance
    assert len(read_annotations(write(tmp_path, [rec]), images, HICO).records) == 1


def test_check_images_false_touches_no_image(tmp_path):
    path = write(tmp_path, [good_record("not_there.png")])
    (r,) = read_annotations(
        path, tmp_path / "no_folder", HICO, check_images=False
    ).records
    assert (r.width, r.height) == (0, 0)  # unknown size: documented, not for training


def test_coco_instances_give_boxes_only_in_xyxy(tmp_path, images):
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "bbox": [2, 3, 10, 20],
                "category_id": 1,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 7,
                "bbox": [5, 5, 30, 30],
                "category_id": 3,
                "iscrowd": 0,
            },
            {
                "id": 3,
                "image_id": 7,
                "bbox": [0, 0, 5, 5],
                "category_id": 3,
                "iscrowd": 1,
            },
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    (r,) = read_annotations(write(tmp_path, coco), images, HICO).records
    # crowd region skipped
    assert r.boxes_xyxy_px.tolist() == [[2, 3, 12, 23], [5, 5, 35, 35]]
    assert r.box_classes.tolist() == [0, 2] and r.hois.shape == (0, 3)


def test_vcoco_drops_labels_without_object_box_and_keeps_the_rest(tmp_path, images):
    hold_obj, stand = VCOCO.verbs.index("hold_obj"), VCOCO.verbs.index("stand")
    # verb ids are 0-based
    rec = {
        "file_name": "a.png",
        "annotations": [
            {"bbox": [1, 2, 30, 40], "category_id": 1},
            {"bbox": [10, 10, 60, 45], "category_id": 47},
        ],
        # role-less: dropped
        "hoi_annotation": [
            {"subject_id": 0, "object_id": -1, "category_id": stand},
            {"subject_id": 0, "object_id": 1, "category_id": hold_obj},
        ],
    }
    (r,) = read_annotations(write(tmp_path, [rec]), images, VCOCO).records
    assert r.hois.tolist() == [[0, 1, hold_obj]] and r.num_boxes == 2
    # the same -1 in a HICO-DET file is an index error, never a silent "last box"
    rec["hoi_annotation"] = [{"subject_id": 0, "object_id": -1, "category_id": RIDE}]
    with pytest.raises(DataError, match="object_id -1"):
        read_annotations(write(tmp_path, [rec], "hico.json"), images, HICO)


def _mat_struct(n, **fields):
    arr = np.empty((n,), dtype=[(k, object) for k in fields])
    for k, values in fields.items():
        for i in range(n):
            arr[i][k] = values[i]
    return arr


def _box(x1, y1, x2, y2):
    return _mat_struct(1, x1=[x1], x2=[x2], y1=[y1], y2=[y2])


def test_anno_bbox_mat_maps_hoi_ids_and_shifts_to_zero_based_pixels(tmp_path, images):
    import scipy.io

    # 1-based HOI ids: ride/hold/sit_on bicycle
    ride_bike, hold_bike, sit_bike = 19, 12, 20
    person, bike = _box(2, 3, 31, 41), _box(11, 11, 61, 46)
    hois = _mat_struct(
        4,
        id=[ride_bike, hold_bike, sit_bike, 1],
        bboxhuman=[person, person, person, np.zeros((0,))],
        bboxobject=[bike, bike, bike, np.zeros((0,))],
        connection=[
            np.array([[1, 1]]),
            np.array([[1, 1]]),
            np.array([[1, 1]]),
            np.zeros((0, 2)),
        ],
        invis=[0, 0, 1, 1],
    )  # sit_on is invisible: no label
    size = _mat_struct(1, width=[64], height=[48], depth=[3])
    bbx = _mat_struct(1, filename=["a.png"], size=[size], hoi=[hois])
    path = tmp_path / "anno_bbox.mat"
    scipy.io.savemat(str(path), {"bbx_train": bbx, "bbx_test": bbx})
    (r,) = read_annotations(path, images, HICO).records
    # identical boxes of the two visible entries are merged: 1 person + 1 bicycle
    assert r.boxes_xyxy_px.tolist() == [[1, 2, 30, 40], [10, 10, 60, 45]]
    assert r.box_classes.tolist() == [0, 1] and (r.width, r.height) == (64, 48)
    assert r.hois.tolist() == [[0, 1, RIDE - 1], [0, 1, HOLD - 1]]
    assert len(read_annotations(path, images, HICO, split="test").records) == 1
    with pytest.raises(DataError, match="unknown split"):
        read_annotations(path, images, HICO, split="val")


# ---- bad input: each case names the file, the record, the file_name, the problem and a
# fix ----


def _set(rec, path, value):
    target = rec
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return rec


BAD_CASES = {
    "empty_box": (("annotations", 1, "bbox"), [30, 10, 20, 45], "bad_box", "empty"),
    "flat_box": (("annotations", 1, "bbox"), [10, 10, 60, 10], "bad_box", "empty"),
    "nan_box": (("annotations", 1, "bbox"), [math.nan, 10, 60, 45], "bad_box", "NaN"),
    "outside_box": (("annotations", 1, "bbox"), [10, 10, 90, 45], "bad_box", "outside"),
    "unknown_category": (
        ("annotations", 1, "category_id"),
        12,
        "unknown_object",
        "category_id 12",
    ),
    "unknown_verb": (
        ("hoi_annotation", 0, "category_id"),
        118,
        "unknown_verb",
        "category_id 118",
    ),
    "subject_not_human": (
        ("hoi_annotation", 0, "subject_id"),
        1,
        "subject_not_human",
        "not a 'person'",
    ),
    "subject_out_of_range": (
        ("hoi_annotation", 0, "subject_id"),
        5,
        "index_out_of_range",
        "subject_id 5",
    ),
    "object_out_of_range": (
        ("hoi_annotation", 0, "object_id"),
        2,
        "index_out_of_range",
        "object_id 2",
    ),
    "parent_escape": (("file_name",), "../outside.png", "bad_file_name", "escape"),
    "absolute_path": (("file_name",), "/etc/passwd", "bad_file_name", "absolute"),
    "missing_image": (("file_name",), "nope.png", "missing_image", "does not exist"),
    "invalid_combination": (
        ("annotations", 1, "category_id"),
        90,
        "invalid_hoi",
        "toothbrush",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_raises_a_message_naming_file_record_problem_and_fix(
    tmp_path, images, case
):
    # escape target exists
    (tmp_path / "outside.png").write_bytes((images / "a.png").read_bytes())
    where, value, kind, words = BAD_CASES[case]
    records = [good_record("a.png"), _set(good_record("b.png"), where, value)]
    path = write(tmp_path, records)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DataError) as err:
        read_annotations(path, images, HICO)
    msg = str(err.value)
    assert str(path) in msg and "record 1" in msg and "Fix:" in msg and words in msg
    assert repr(records[1]["file_name"]) in msg
    # skip_bad keeps the good record and lists the problem; check_dataset counts it by
    # kind
    result = read_annotations(path, images, HICO, skip_bad=True)
    assert [r.key for r in result.records] == ["a.png"] and result.num_skipped == 1
    assert {b.kind for b in result.bad} == {kind} and all(
        b.index == 1 for b in result.bad
    )
    report = check_dataset(path, images, HICO)
    assert report.counts == {kind: 1} and report.num_ok == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_duplicate_file_name_is_refused(tmp_path, images):
    path = write(
        tmp_path, [good_record("a.png"), good_record("b.png"), good_record("a.png")]
    )
    with pytest.raises(
        DataError,
        match=r"record 2 \(file_name 'a.png'\): file_name already used by record 0",
    ):
        read_annotations(path, images, HICO)


def test_missing_annotation_file_and_invalid_json_name_the_file(tmp_path, images):
    with pytest.raises(DataError, match=r"missing\.json: annotation file not found"):
        read_annotations(tmp_path / "missing.json", images, HICO)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"file_name": "a.png",')
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON"):
        read_annotations(broken, images, HICO)
    report = check_dataset(broken, images, HICO)
    assert report.counts == {"bad_file": 1} and "not valid JSON" in format_report(
        report
    )


def test_malformed_record_is_a_format_problem_not_a_crash(tmp_path, images):
    path = write(
        tmp_path,
        [
            good_record(),
            {
                "file_name": "b.png",
                "annotations": [{"bbox": [1, 2, 3, 4]}],
                "hoi_annotation": [],
            },
            42,
        ],
    )
    report = check_dataset(path, images, HICO)
    assert report.counts == {"bad_format": 2} and report.num_ok == 1


def test_check_dataset_reports_every_problem_at_once_with_counts(tmp_path, images):
    records = [
        good_record("a.png"),
        _set(good_record("b.png"), ("annotations", 1, "bbox"), [30, 10, 20, 45]),
        _set(
            _set(good_record("../c.png"), ("annotations", 1, "category_id"), 12),
            ("hoi_annotation", 1, "category_id"),
            999,
        ),
        # duplicate of a bad record still counts
        good_record("b.png"),
    ]
    path = write(tmp_path, records)
    report = check_dataset(path, images, HICO)
    assert report.num_records == 4 and report.num_ok == 1 and report.num_labels == 2
    assert report.counts == {
        "bad_box": 1,
        "bad_file_name": 1,
        "duplicate_file_name": 1,
        "unknown_object": 1,
        "unknown_verb": 1,
    }
    text = format_report(report)
    assert (
        "5 problem(s)" in text
        and "bad_box: 1" in text
        and "record 2 (file_name '../c.png')" in text
    )


def test_a_clean_dataset_reports_no_problems(tmp_path, images):
    report = check_dataset(write(tmp_path, [good_record()]), images, HICO)
    assert report.ok and "no problems found" in format_report(report)
