"""HICO-DET's original anno_bbox.mat, written by scipy.io.savemat in the layout the
reader documents.

Layout (eoid/pipeline/data/hico.py, parse_anno_bbox_mat's docstring and _mat_image):
bbx_train / bbx_test: struct array, one per image, with `filename`, `size` (width,
height, depth) and `hoi`: struct array with `id` (1-based index into the 600 HOIs),
`bboxhuman` / `bboxobject` (struct arrays with x1, x2, y1, y2, MATLAB 1-based pixels),
`connection` (rows of 1-based (human, object) indices into those two arrays) and `invis`
(1 = not visible: the entry is skipped).

Convention tested (hico.py, `box_index`: `float(_field(b, "x1")) - 1`, ...): every
coordinate is shifted by -1 px into the 0-based frame of the PPDM/CDN JSON files; boxes
stay [x1, y1, x2, y2].
"""

import numpy as np
import pytest
import scipy.io
from PIL import Image

from eoid.errors import DataError
from eoid.pipeline.data.hico import parse_anno_bbox_mat
from eoid.pipeline.data.readers import check_dataset, read_annotations
from eoid.pipeline.data.vocab import load_vocabulary

HICO = load_vocabulary("hico-det")
# HOI ids from HICO-DET's list_action (1-based, objects in alphabetical blocks): 1 =
# board airplane, 11 = carry bicycle, 12 = hold bicycle, 19 = ride bicycle, 20 = sit_on
# bicycle, 600 = no_interaction zebra.
BOARD_AIRPLANE, CARRY_BIKE, HOLD_BIKE, RIDE_BIKE, SIT_ON_BIKE, NO_INTERACTION_ZEBRA = (
    1,
    11,
    12,
    19,
    20,
    600,
)
VERB = {
    name: HICO.verbs.index(name)
    for name in ("board", "carry", "hold", "ride", "no_interaction")
}
OBJECT = {
    name: HICO.objects.index(name)
    for name in ("person", "bicycle", "airplane", "zebra")
}


def struct(n, **fields):
    """An n-element MATLAB struct array: a numpy structured array of object fields."""
    arr = np.empty((n,), dtype=[(k, object) for k in fields])
    for k, values in fields.items():
        for i in range(n):
            arr[i][k] = values[i]
    return arr


def boxes(*xyxy):
    """MATLAB box structs from 1-based inclusive (x1, y1, x2, y2); the file stores x1,
    x2, y1, y2.
    """
    if not xyxy:
        return np.zeros((0,))
    return struct(
        len(xyxy),
        x1=[b[0] for b in xyxy],
        x2=[b[2] for b in xyxy],
        y1=[b[1] for b in xyxy],
        y2=[b[3] for b in xyxy],
    )


def hoi_entries(*entries):
    """HOI struct array from dicts with id, humans, objects, connection and invis."""
    return struct(
        len(entries),
        id=[e["id"] for e in entries],
        bboxhuman=[boxes(*e.get("humans", ())) for e in entries],
        bboxobject=[boxes(*e.get("objects", ())) for e in entries],
        connection=[
            np.array(e.get("connection", np.zeros((0, 2))), dtype=float)
            for e in entries
        ],
        invis=[e.get("invis", 0) for e in entries],
    )


def image_entries(*images):
    """bbx_* struct array from (filename, width, height, hoi struct array)."""
    sizes = [struct(1, width=[w], height=[h], depth=[3]) for _, w, h, _ in images]
    return struct(
        len(images),
        filename=[f for f, _, _, _ in images],
        size=sizes,
        hoi=[hois for _, _, _, hois in images],
    )


def save(path, train, test=None):
    scipy.io.savemat(
        str(path), {"bbx_train": train, "bbx_test": train if test is None else test}
    )
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    return folder


PERSON_A, PERSON_B = (2, 3, 31, 41), (33, 2, 50, 40)  # 1-based inclusive pixels
BIKE = (11, 11, 61, 46)


def two_people_one_bike():
    # ride bicycle: two humans, one bicycle, both humans connected to it (rows (1,1) and
    # (2,1)); hold bicycle: person A and the same bicycle again (merged with the first
    # copies); sit_on bicycle: invisible, so it gives no label even though it lists
    # boxes.
    return hoi_entries(
        dict(
            id=RIDE_BIKE,
            humans=[PERSON_A, PERSON_B],
            objects=[BIKE],
            connection=[[1, 1], [2, 1]],
        ),
        dict(id=HOLD_BIKE, humans=[PERSON_A], objects=[BIKE], connection=[[1, 1]]),
        dict(
            id=SIT_ON_BIKE,
            humans=[PERSON_B],
            objects=[BIKE],
            connection=[[1, 1]],
            invis=1,
        ),
    )


def test_boxes_are_shifted_from_matlab_1_based_pixels_to_the_0_based_json_frame(
    tmp_path, images
):
    path = save(
        tmp_path / "anno_bbox.mat",
        image_entries(("a.png", 64, 48, two_people_one_bike())),
    )
    (r,) = read_annotations(path, images, HICO).records
    # each coordinate minus 1, in the order of first appearance: person A, person B,
    # bicycle
    assert r.boxes_xyxy_px.tolist() == [
        [1, 2, 30, 40],
        [32, 1, 49, 39],
        [10, 10, 60, 45],
    ]
    assert r.box_classes.tolist() == [
        OBJECT["person"],
        OBJECT["person"],
        OBJECT["bicycle"],
    ]
    assert (
        (r.width, r.height) == (64, 48)
        and r.key == "a.png"
        and r.path == images / "a.png"
    )


def test_hoi_ids_become_verb_labels_and_connections_become_box_pairs(tmp_path, images):
    path = save(
        tmp_path / "anno_bbox.mat",
        image_entries(("a.png", 64, 48, two_people_one_bike())),
    )
    (r,) = read_annotations(path, images, HICO).records
    # HOI 19 (ride bicycle) connects both people to the bicycle (box 2); HOI 12 (hold
    # bicycle) connects person A; the invisible HOI 20 (sit_on) adds nothing.
    assert r.hois.tolist() == [
        [0, 2, VERB["ride"]],
        [1, 2, VERB["ride"]],
        [0, 2, VERB["hold"]],
    ]


def test_hoi_id_one_is_the_first_hoi_and_600_the_last(tmp_path, images):
    # the id is 1-based: 1 = board airplane, 600 = no_interaction zebra (not HOIs 2 and
    # 1)
    hois = hoi_entries(
        dict(id=BOARD_AIRPLANE, humans=[PERSON_A], objects=[BIKE], connection=[[1, 1]]),
        dict(
            id=NO_INTERACTION_ZEBRA,
            humans=[PERSON_A],
            objects=[BIKE],
            connection=[[1, 1]],
        ),
    )
    path = save(tmp_path / "anno_bbox.mat", image_entries(("a.png", 64, 48, hois)))
    (r,) = read_annotations(path, images, HICO).records
    # the same coordinates with two classes stay two boxes: an airplane and a zebra
    assert r.box_classes.tolist() == [
        OBJECT["person"],
        OBJECT["airplane"],
        OBJECT["zebra"],
    ]
    assert r.hois.tolist() == [[0, 1, VERB["board"]], [0, 2, VERB["no_interaction"]]]


def test_an_image_with_a_single_hoi_and_single_boxes_is_read(tmp_path, images):
    # savemat + squeeze_me turn 1-element struct arrays into scalars; the reader must
    # still list them
    hois = hoi_entries(
        dict(id=CARRY_BIKE, humans=[PERSON_A], objects=[BIKE], connection=[[1, 1]])
    )
    path = save(tmp_path / "anno_bbox.mat", image_entries(("a.png", 64, 48, hois)))
    (r,) = read_annotations(path, images, HICO).records
    assert r.hois.tolist() == [[0, 1, VERB["carry"]]] and r.num_boxes == 2


def test_an_image_with_only_invisible_hois_has_no_boxes_and_no_labels(tmp_path, images):
    # invisible entries carry no boxes in the official file
    hois = hoi_entries(dict(id=RIDE_BIKE, invis=1), dict(id=HOLD_BIKE, invis=1))
    path = save(tmp_path / "anno_bbox.mat", image_entries(("a.png", 64, 48, hois)))
    (r,) = read_annotations(path, images, HICO).records
    assert r.num_boxes == 0 and r.hois.shape == (0, 3)


def test_split_picks_bbx_train_or_bbx_test(tmp_path, images):
    train = image_entries(("a.png", 64, 48, two_people_one_bike()))
    test = image_entries(
        ("b.png", 64, 48, two_people_one_bike()),
        ("a.png", 64, 48, two_people_one_bike()),
    )
    path = save(tmp_path / "anno_bbox.mat", train, test)
    assert [r.key for r in read_annotations(path, images, HICO).records] == ["a.png"]
    assert [
        r.key for r in read_annotations(path, images, HICO, split="test").records
    ] == ["b.png", "a.png"]
    with pytest.raises(DataError, match="unknown split 'val'"):
        parse_anno_bbox_mat(path, HICO, split="val")


def test_the_size_comes_from_the_mat_without_reading_images(tmp_path):
    path = save(
        tmp_path / "anno_bbox.mat",
        image_entries(("a.png", 640, 480, two_people_one_bike())),
    )
    (r,) = read_annotations(
        path, tmp_path / "no_images", HICO, check_images=False
    ).records
    assert (r.width, r.height) == (640, 480)


def test_a_size_that_disagrees_with_the_image_is_reported(tmp_path, images):
    path = save(
        tmp_path / "anno_bbox.mat",
        image_entries(("a.png", 640, 480, two_people_one_bike())),
    )
    with pytest.raises(
        DataError, match=r"record 0 \(file_name 'a.png'\): annotation says 640x480 px"
    ):
        read_annotations(path, images, HICO)


def test_a_connection_past_the_boxes_and_an_unknown_hoi_id_are_reported_at_their_image(
    tmp_path, images
):
    # image 1: the connection (1, 2) names a second object but the entry has one;
    # HOI id 601 is past the 600 HOIs. Image 0 is clean.
    bad = hoi_entries(
        dict(id=RIDE_BIKE, humans=[PERSON_A], objects=[BIKE], connection=[[1, 2]]),
        dict(id=601, humans=[PERSON_A], objects=[BIKE], connection=[[1, 1]]),
    )
    path = save(
        tmp_path / "anno_bbox.mat",
        image_entries(("a.png", 64, 48, two_people_one_bike()), ("b.png", 64, 48, bad)),
    )
    report = check_dataset(path, images, HICO)
    assert report.num_records == 2 and report.num_ok == 1
    assert report.counts == {"index_out_of_range": 1, "unknown_verb": 1}
    assert {p.index for p in report.problems} == {1}
    messages = " ".join(p.message() for p in report.problems)
    assert "record 1 (file_name 'b.png')" in messages
    assert "connection (1, 2)" in messages and "HOI id 601 is not in 1..600" in messages


def test_an_entry_without_the_layout_is_a_format_problem_at_its_index(tmp_path, images):
    # image 1 lacks `size` and `hoi`
    broken = struct(1, filename=["b.png"])
    good = image_entries(("a.png", 64, 48, two_people_one_bike()))
    entries = np.empty((2,), dtype=object)
    entries[0], entries[1] = good[0], broken[0]
    path = tmp_path / "anno_bbox.mat"
    scipy.io.savemat(str(path), {"bbx_train": entries})
    raws = parse_anno_bbox_mat(path, HICO)
    assert raws[0].problems == [] and raws[0].file_name == "a.png"
    ((kind, problem, _),) = raws[1].problems
    assert kind == "bad_format" and "does not have the anno_bbox.mat layout" in problem


# ---- whole-file problems: a DataError naming the file ----


def test_a_file_that_is_not_matlab_is_a_data_error_naming_it(tmp_path, images):
    path = tmp_path / "broken.mat"
    path.write_bytes(b"this is not a MATLAB file" * 10)
    with pytest.raises(DataError, match=r"broken\.mat: not a readable MATLAB file"):
        read_annotations(path, images, HICO)
    assert check_dataset(path, images, HICO).counts == {"bad_file": 1}


def test_a_mat_without_bbx_train_is_a_data_error_listing_what_it_has(tmp_path, images):
    path = tmp_path / "other.mat"
    scipy.io.savemat(str(path), {"something_else": np.zeros(3)})
    with pytest.raises(
        DataError,
        match=r"other\.mat: no 'bbx_train' in this \.mat file "
        r"\(found \['something_else'\]\)",
    ):
        read_annotations(path, images, HICO)


def test_the_mat_reader_is_chosen_by_the_suffix_in_any_case(tmp_path, images):
    path = save(
        tmp_path / "ANNO_BBOX.MAT",
        image_entries(("a.png", 64, 48, two_people_one_bike())),
    )
    (r,) = read_annotations(path, images, HICO).records
    assert r.num_boxes == 3
