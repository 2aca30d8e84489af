"""The training set: boxes past data.max_boxes are cut with every label that points to
them.
"""

import json

import numpy as np
import pytest
from PIL import Image

from eoid.config import DataConfig
from eoid.errors import ConfigError
from eoid.pipeline.data.transforms import AugmentParams
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.training.dataset import TrainDataset
from eoid.pipeline.training.training_set import prepare_training_set

VOCAB = {
    "name": "tiny",
    "verbs": [
        {"name": "hold", "phrase": "holding"},
        {"name": "no_interaction", "phrase": "no interaction"},
    ],
    "objects": [{"name": "person", "id": 1}, {"name": "cup", "id": 2}],
    "hois": [[0, 0], [1, 0], [0, 1], [1, 1]],
    "human": "person",
    "no_interaction": "no_interaction",
}
AUGMENT = AugmentParams(
    enabled=False,
    scales=(64,),
    max_size=128,
    crop_scales=(64,),
    crop_min=32,
    crop_max=64,
    test_size=64,
    color_jitter=0.0,
)


@pytest.fixture
def seventy_boxes(tmp_path) -> DataConfig:
    # box 0 and box 65 are persons, every other box a cup; the labels: person 0 holds
    # cup 1 (kept), person 0 holds cup 69 and person 65 holds cup 2 (both point past the
    # first 64 boxes)
    Image.new("RGB", (200, 200), (90, 90, 90)).save(tmp_path / "img.png")
    boxes = [
        [float(i * 2), float(i * 2), float(i * 2 + 30), float(i * 2 + 40)]
        for i in range(70)
    ]
    cats = [1 if i in (0, 65) else 2 for i in range(70)]
    record = {
        "file_name": "img.png",
        "width": 200,
        "height": 200,
        "annotations": [{"bbox": b, "category_id": c} for b, c in zip(boxes, cats)],
        "hoi_annotation": [
            {"subject_id": 0, "object_id": 1, "category_id": 1},
            {"subject_id": 0, "object_id": 69, "category_id": 1},
            {"subject_id": 65, "object_id": 2, "category_id": 1},
        ],
    }
    (tmp_path / "train.json").write_text(json.dumps([record]))
    (tmp_path / "vocab.json").write_text(json.dumps(VOCAB))
    return DataConfig(
        dataset=str(tmp_path / "vocab.json"),
        train_annotations=str(tmp_path / "train.json"),
        train_images=str(tmp_path),
    )


def sample_pairs(
    data: DataConfig, rule: str
) -> tuple[list[tuple[int, int]], list[bool]]:
    vocab = load_vocabulary(data.dataset)
    training = prepare_training_set(data, vocab)
    dataset = TrainDataset(
        training.records,
        vocab.num_verbs,
        vocab.human,
        vocab.no_interaction,
        AUGMENT,
        rule,
        None,
        seed=0,
        annotated_pairs=training.annotated_pairs,
    )
    _, targets, meta = dataset[0]
    return [tuple(p) for p in meta.pair_box_idx.tolist()], targets.labelled.tolist()


def test_annotated_unknown_pairs_skip_labels_past_the_kept_boxes(seventy_boxes):
    # the only label left is (0, 1): its boxes are the only annotated subject and
    # object, so there is no unknown pair (before the fix the labels of boxes 65 and 69
    # made pairs that indexed past the 64 kept boxes: IndexError)
    pairs, labelled = sample_pairs(seventy_boxes, "annotated")
    assert pairs == [(0, 1)] and labelled == [True]


def test_all_unknown_pairs_use_only_the_kept_boxes(seventy_boxes):
    # person 65 is cut, so person 0 pairs with boxes 1..63: (0, 1) labelled, 62 unknown
    pairs, labelled = sample_pairs(seventy_boxes, "all")
    assert pairs == [(0, o) for o in range(1, 64)] and labelled == [True] + [False] * 62
    assert max(max(p) for p in pairs) < 64


def test_no_unknown_pairs_leaves_only_the_labelled_ones(seventy_boxes):
    pairs, labelled = sample_pairs(seventy_boxes, "none")
    assert pairs == [(0, 1)] and labelled == [True]


def test_the_kept_labels_are_the_ones_inside_the_first_max_boxes(seventy_boxes):
    records = prepare_training_set(
        seventy_boxes, load_vocabulary(seventy_boxes.dataset)
    ).records
    assert records[0].num_boxes == 64 and records[0].hois.tolist() == [[0, 1, 0]]
    assert np.array_equal(
        records[0].boxes_xyxy_px[63], np.array([126, 126, 156, 166], np.float32)
    )


def test_an_unknown_unknown_pair_rule_is_refused_with_the_field_name(seventy_boxes):
    data = DataConfig(**{**seventy_boxes.__dict__, "unknown_pairs": "everything"})
    with pytest.raises(ConfigError, match="data.unknown_pairs"):
        prepare_training_set(data, load_vocabulary(data.dataset))


def test_annotated_pairs_are_the_distinct_box_pairs_sorted_as_np_unique_gives_them():
    from eoid.pipeline.training.training_set import annotated_pairs

    # (human, object, verb): pair (2, 5) twice with two verbs, (0, 3) once, (2, 1) once
    hois = np.array([[2, 5, 7], [0, 3, 1], [2, 5, 9], [2, 1, 4]], dtype=np.int64)
    got = annotated_pairs(hois)
    assert got.dtype == np.int64 and got.tolist() == [[0, 3], [2, 1], [2, 5]]
    assert np.array_equal(got, np.unique(hois[:, :2], axis=0))
    assert annotated_pairs(np.zeros((0, 3), np.int64)).shape == (0, 2)
