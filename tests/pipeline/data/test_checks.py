"""check_raw_image: a clean record becomes an ImageRecord; each problem is reported at
its record.

The vocabulary is the built-in hico-det one: COCO category ids (1 person, 2 bicycle, 47
cup), 1-based verb ids. Images are 64 x 48 px PNGs written into tmp_path.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eoid.pipeline.data.checks import (
    BOX_TOLERANCE_PX,
    BadRecord,
    RawImage,
    check_raw_image,
)
from eoid.pipeline.data.image_files import file_name_problem
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary

HICO = load_vocabulary("hico-det")
# verb indices (0-based)
RIDE, HOLD = HICO.verbs.index("ride"), HICO.verbs.index("hold")
# COCO category ids
PERSON_ID, BICYCLE_ID, CUP_ID = 1, 2, 47
ANNOTATION = Path("anno.json")


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    return folder


def raw(**change):
    """Record 3 of the file: a person riding and holding a bicycle, valid unless
    `change` breaks it.
    """
    fields = dict(
        index=3,
        file_name="a.png",
        boxes=[[1, 2, 30, 40], [10, 10, 60, 45]],
        category_ids=[PERSON_ID, BICYCLE_ID],
        labels=[(0, 1, RIDE + 1), (0, 1, HOLD + 1)],
    )
    fields.update(change)
    return RawImage(**fields)


def check(raw_image, images, **kw):
    return check_raw_image(raw_image, ANNOTATION, images, HICO, **kw)


def test_a_clean_record_passes_with_vocabulary_indices_and_the_image_size(images):
    record, problems = check(raw(), images)
    assert problems == []
    assert record.key == "a.png" and record.path == images / "a.png"
    # read from the PNG header
    assert (record.width, record.height) == (64, 48)
    assert record.boxes_xyxy_px.tolist() == [[1, 2, 30, 40], [10, 10, 60, 45]]
    assert record.boxes_xyxy_px.dtype == np.float32
    assert record.box_classes.tolist() == [HICO.human, HICO.objects.index("bicycle")]
    # verb ids 1-based -> indices
    assert record.hois.tolist() == [[0, 1, RIDE], [0, 1, HOLD]]


def test_a_box_may_stick_out_of_the_image_by_the_tolerance_but_not_more(images):
    # 64 x 48 image, 1 px tolerance: x2 = 65 is allowed, x2 = 65.5 is not
    assert BOX_TOLERANCE_PX == 1.0
    assert check(raw(boxes=[[-1, -1, 30, 40], [10, 10, 65, 49]]), images)[1] == []
    record, (problem,) = check(raw(boxes=[[1, 2, 30, 40], [10, 10, 65.5, 45]]), images)
    assert (
        record is None
        and problem.kind == "bad_box"
        and "outside the 64x48 px image" in problem.problem
    )


# ---- every kind of problem, reported at the record that holds it ----

BAD = {
    # name: (change to the clean record, kind, words in the message)
    "x2 < x1": (
        dict(boxes=[[1, 2, 30, 40], [60, 10, 10, 45]]),
        "bad_box",
        "box 1 [60.0, 10.0, 10.0, 45.0] is empty",
    ),
    "zero height": (
        dict(boxes=[[1, 2, 30, 40], [10, 10, 60, 10]]),
        "bad_box",
        "is empty",
    ),
    "NaN coordinate": (
        dict(boxes=[[1, 2, 30, 40], [np.nan, 10, 60, 45]]),
        "bad_box",
        "NaN or infinite",
    ),
    "box outside": (
        dict(boxes=[[1, 2, 30, 40], [10, 10, 90, 45]]),
        "bad_box",
        "outside the 64x48 px image",
    ),
    "label past the boxes": (
        dict(labels=[(0, 2, RIDE + 1)]),
        "index_out_of_range",
        "object_id 2 but the image has 2 boxes",
    ),
    "negative subject": (
        dict(labels=[(-1, 1, RIDE + 1)]),
        "index_out_of_range",
        "subject_id -1",
    ),
    "unknown category id": (
        dict(category_ids=[PERSON_ID, 12]),
        "unknown_object",
        "category_id 12",
    ),
    "unknown verb id": (
        dict(labels=[(0, 1, 118)]),
        "unknown_verb",
        "verb category_id 118",
    ),
    "not a valid HOI": (
        dict(category_ids=[PERSON_ID, CUP_ID]),
        "invalid_hoi",
        "verb 'ride' with object 'cup' is not one of the vocabulary's HOI categories",
    ),
    "subject not a person": (
        dict(labels=[(1, 0, RIDE + 1)]),
        "subject_not_human",
        "is a 'bicycle'",
    ),
    "absolute path": (dict(file_name="/etc/a.png"), "bad_file_name", "absolute path"),
    "parent escape": (dict(file_name="../x.png"), "bad_file_name", "contains '..'"),
    "missing image": (dict(file_name="b.png"), "missing_image", "b.png does not exist"),
    "size mismatch": (
        dict(size=(640, 480)),
        "size_mismatch",
        "annotation says 640x480 px but the image is 64x48",
    ),
    "category count": (
        dict(category_ids=[PERSON_ID]),
        "bad_format",
        "1 category ids for 2 boxes",
    ),
    "non-integer label": (
        dict(labels=[(0, 1.0, RIDE + 1)]),
        "bad_format",
        "non-integer ids",
    ),
    "short label": (
        dict(labels=[(0, 1)]),
        "bad_format",
        "label 0 is not (subject_id, object_id, category_id)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_problem_is_reported_once_at_its_record_with_a_message_naming_it(
    images, case
):
    change, kind, words = BAD[case]
    record, problems = check(raw(**change), images)
    assert record is None
    assert [p.kind for p in problems] == [kind]
    (p,) = problems
    assert p.file == ANNOTATION and p.index == 3 and words in p.problem and p.fix
    name = change.get("file_name", "a.png")
    assert p.file_name == name
    assert (
        p.message().startswith(f"anno.json: record 3 (file_name {name!r}): ")
        and "Fix: " in p.message()
    )


def test_an_unreadable_image_is_reported(images):
    (images / "broken.png").write_bytes(b"not a png at all")
    _, (p,) = check(raw(file_name="broken.png"), images)
    assert p.kind == "unreadable_image" and "cannot be read" in p.problem


def test_every_problem_of_a_record_is_listed_not_only_the_first(images):
    # an unknown object id on box 1 and an unknown verb id in label 0: two problems, one
    # record
    _, problems = check(raw(category_ids=[PERSON_ID, 12], labels=[(0, 1, 999)]), images)
    assert sorted(p.kind for p in problems) == ["unknown_object", "unknown_verb"]


def test_an_unknown_box_category_is_not_reported_again_for_each_of_its_labels(images):
    # box 1 has an unknown id; the two labels on it add no invalid_hoi problem
    _, problems = check(raw(category_ids=[PERSON_ID, 12]), images)
    assert [p.kind for p in problems] == ["unknown_object"]


def test_problems_found_by_the_parser_come_first_and_stop_a_record_without_a_file_name(
    images,
):
    parser_problem = ("bad_format", "record is a int, not an object", "write an object")
    record, problems = check(
        RawImage(5, None, [], [], [], problems=[parser_problem]), images
    )
    assert record is None and [(p.kind, p.index) for p in problems] == [
        ("bad_format", 5)
    ]


def test_a_label_written_twice_counts_once(images):
    record, _ = check(raw(labels=[(0, 1, RIDE + 1), (0, 1, RIDE + 1)]), images)
    assert record.hois.tolist() == [[0, 1, RIDE]]


def test_objectless_labels_are_dropped_only_when_asked(images):
    # V-COCO writes object -1 for an action without an object box: dropped with
    # drop_objectless, an index error otherwise (never silently the last box)
    labels = [(0, -1, RIDE + 1), (0, 1, HOLD + 1)]
    record, _ = check(raw(labels=labels), images, drop_objectless=True)
    assert record.hois.tolist() == [[0, 1, HOLD]]
    _, (p,) = check(raw(labels=labels), images)
    assert p.kind == "index_out_of_range" and "object_id -1" in p.problem


def test_without_check_images_no_file_is_read_and_the_size_comes_from_the_annotation(
    tmp_path,
):
    # no image folder at all; the box sticks far out of a 64x48 image but the size is
    # unknown (0)
    no_folder = tmp_path / "nowhere"
    record, problems = check(
        raw(boxes=[[1, 2, 30, 40], [10, 10, 900, 45]]), no_folder, check_images=False
    )
    assert problems == [] and (record.width, record.height) == (0, 0)
    # with a size in the annotation (.mat, COCO) the outside-the-image test applies
    # again
    _, (p,) = check(
        raw(boxes=[[1, 2, 30, 40], [10, 10, 900, 45]], size=(64, 48)),
        no_folder,
        check_images=False,
    )
    assert p.kind == "bad_box" and "outside the 64x48 px image" in p.problem


def test_a_whole_file_problem_message_is_its_text_alone():
    p = BadRecord(ANNOTATION, -1, "", "bad_file", "anno.json: not valid JSON", "")
    assert p.message() == "anno.json: not valid JSON"


def test_a_box_that_is_not_four_numbers_is_a_format_problem(images):
    _, problems = check(raw(boxes=[[1, 2, 30, 40], [10, 10, 60]]), images)
    assert [p.kind for p in problems] == ["bad_format"]


def test_read_annotations_names_the_record_whose_bbox_is_not_four_numbers(
    tmp_path, images
):
    from eoid.errors import DataError

    rec = {
        "file_name": "a.png",
        "annotations": [{"bbox": [1, 2, 30], "category_id": PERSON_ID}],
        "hoi_annotation": [],
    }
    path = tmp_path / "anno.json"
    path.write_text(json.dumps([rec]))
    with pytest.raises(DataError, match=r"record 0 \(file_name 'a.png'\)"):
        read_annotations(path, images, HICO)


# ---- file_name_problem: a relative POSIX path inside the image folder ----


@pytest.mark.parametrize(
    "name, words",
    [
        ("/etc/passwd", "absolute path"),
        ("C:/images/a.png", "absolute path"),  # a Windows drive letter
        ("../x.png", "'..'"),
        ("train/../../x.png", "'..'"),
        ("train\\a.png", "backslash"),
        ("a\x00.png", "NUL"),
        ("", "not a non-empty string"),
        ("   ", "not a non-empty string"),
        (None, "not a non-empty string"),
        (7, "not a non-empty string"),
    ],
)
def test_file_names_that_could_escape_or_name_no_file_are_refused(name, words):
    problem = file_name_problem(name)
    assert problem is not None and words in problem and repr(name) in problem


@pytest.mark.parametrize(
    "name",
    [
        "a.png",
        "train2015/HICO_train2015_00000001.jpg",
        "./a.png",
        "..a.png",
        "a..b.png",
    ],
)
def test_relative_file_names_inside_the_folder_are_accepted(name):
    # '..' is refused only as a whole path part, not inside a name
    assert file_name_problem(name) is None


def test_image_sizes_read_ahead_gives_each_files_size_or_the_error_it_raised(tmp_path):
    from eoid.pipeline.data.image_files import image_sizes

    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    Image.new("RGB", (30, 70)).save(tmp_path / "b.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    sizes = image_sizes(
        [
            tmp_path / "a.jpg",
            tmp_path / "b.png",
            tmp_path / "broken.jpg",
            tmp_path / "a.jpg",
        ]
    )
    assert sizes[tmp_path / "a.jpg"] == (64, 48) and sizes[tmp_path / "b.png"] == (
        30,
        70,
    )
    assert isinstance(sizes[tmp_path / "broken.jpg"], Exception)
    assert len(sizes) == 3  # a path named twice is read once


def test_the_vocabularys_validity_table_is_a_copy_a_caller_may_change():
    vocab = load_vocabulary("hico-det")
    table = vocab.valid
    table[:] = False
    assert vocab.valid.sum() == len(vocab.hois)  # 600 (verb, object) HOIs, untouched
