"""Pseudo labels on boxes-only images: matching rules (pure) and the runner's file,
provenance and resume.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from eoid.checkpoint import save_checkpoint
from eoid.config import StudentConfig, TrainConfig, to_dict
from eoid.devices import World
from eoid.pipeline.data.student_models import build_model
from eoid.pipeline.run_pseudo_label import pseudo_labels, run_pseudo_label
from eoid.pipeline.synth.scenes import synth_vocabulary

VOCAB = synth_vocabulary()
PERSON, BALL, KITE = (VOCAB.objects.index(n) for n in ("person", "sports_ball", "kite"))
KICK, THROW, FLY, NOI = (
    VOCAB.verbs.index(n) for n in ("kick", "throw", "fly", "no_interaction")
)
# person, ball, kite
GT = np.array([[0, 0, 100, 200], [110, 150, 150, 190], [300, 0, 360, 60]], float)
GT_CLASSES = np.array([PERSON, BALL, KITE])


def run(pred_h, pred_o, pred_cls, scores, threshold=0.3):
    return pseudo_labels(
        GT,
        GT_CLASSES,
        PERSON,
        np.array(pred_h, float),
        np.array(pred_o, float),
        np.array(pred_cls),
        np.array(scores, float),
        VOCAB.valid,
        threshold,
        excluded_verbs=(NOI,),
    )


def verb_scores(**named):
    s = np.zeros(VOCAB.num_verbs)
    for name, value in named.items():
        s[VOCAB.verbs.index(name)] = value
    return s


def test_a_verb_above_threshold_on_a_matched_pair_becomes_a_label_with_the_best_score():
    # Queries 0 and 1 both match (person, ball) (IoU 1 and ~.8); kick takes the best of
    # .5 and .7.
    rows, scores = run(
        [GT[0], [0, 0, 100, 180]],
        [GT[1], [112, 152, 150, 190]],
        [BALL, BALL],
        [verb_scores(kick=0.5), verb_scores(kick=0.7, throw=0.2)],
    )
    assert rows.tolist() == [[0, 1, KICK]] and scores.tolist() == pytest.approx([0.7])


def test_a_prediction_of_another_object_class_or_under_half_iou_gives_no_label():
    # Query 0: right boxes but predicted a kite on the ball. Query 1: human box IoU
    # 0.25.
    rows, _ = run(
        [GT[0], [0, 0, 50, 100]],
        [GT[1], GT[1]],
        [KITE, BALL],
        [verb_scores(kick=0.9), verb_scores(kick=0.9)],
    )
    assert len(rows) == 0


def test_verbs_invalid_for_the_object_and_no_interaction_are_never_labels():
    # fly is no HOI with a sports ball; no_interaction is excluded; throw (.35) passes.
    rows, _ = run(
        [GT[0]], [GT[1]], [BALL], [verb_scores(fly=0.9, no_interaction=0.9, throw=0.35)]
    )
    assert rows.tolist() == [[0, 1, THROW]]


def test_an_image_without_a_person_gives_no_label():
    rows, scores = pseudo_labels(
        GT[1:],
        GT_CLASSES[1:],
        PERSON,
        GT[:1],
        GT[1:2],
        np.array([BALL]),
        verb_scores(kick=1.0)[None],
        VOCAB.valid,
        0.1,
    )
    assert rows.shape == (0, 3) and scores.shape == (0,)


@pytest.fixture()
def coco_world(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}, {"id": 37, "name": "sports ball"}],
    }
    for i in range(3):
        Image.new("RGB", (96, 96), (i * 40, 90, 30)).save(images / f"c{i}.png")
        coco["images"].append(
            {"id": i, "file_name": f"c{i}.png", "width": 96, "height": 96}
        )
        coco["annotations"] += [
            {
                "id": 2 * i,
                "image_id": i,
                "bbox": [5, 5, 40, 80],
                "category_id": 1,
                "iscrowd": 0,
            },
            {
                "id": 2 * i + 1,
                "image_id": i,
                "bbox": [50, 50, 20.5, 20],
                "category_id": 37,
                "iscrowd": 0,
            },
        ]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    torch.manual_seed(0)
    cfg = TrainConfig(student=StudentConfig(preset="tiny", num_queries=4))
    model = build_model(cfg.student, VOCAB, "cpu")
    ckpt = tmp_path / "ckpt.pt"
    config = {**to_dict(cfg), "augment": {"test_size": 96, "max_size": 96}}
    save_checkpoint(
        ckpt,
        model=model.state_dict(),
        config=config,
        vocabulary=VOCAB.to_json(),
        epoch=1,
        iteration=1,
    )
    return tmp_path, ckpt


def test_the_runner_writes_every_coco_image_with_its_boxes_in_hico_format(coco_world):
    root, ckpt = coco_world
    out = run_pseudo_label(
        ckpt,
        root / "coco.json",
        root / "images",
        root / "pseudo.json",
        World(),
        threshold=0.0,
        batch_size=2,
        num_workers=0,
        progress=False,
    )
    entries = json.loads(out.read_text())
    assert [e["file_name"] for e in entries] == ["c0.png", "c1.png", "c2.png"]
    assert entries[0]["annotations"] == [
        {"bbox": [5.0, 5.0, 45.0, 85.0], "category_id": 1},
        {"bbox": [50.0, 50.0, 70.5, 70.0], "category_id": 37},
    ]
    assert not (root / "pseudo.json.partial.jsonl").exists()


def test_a_rerun_skips_images_an_interrupted_run_finished(coco_world):
    # A partial file from an interrupted run with the same checkpoint and threshold
    # holds c1 with a label the model would not give; the rerun keeps that entry as is
    # and computes the others.
    root, ckpt = coco_world
    from eoid.files import file_sha256

    header = {
        "checkpoint_sha256": file_sha256(ckpt),
        "threshold": 0.5,
        "min_iou": 0.5,
        "coco": str(root / "coco.json"),
    }
    marker = {
        "file_name": "c1.png",
        "annotations": [
            {"bbox": [5, 5, 45, 85], "category_id": 1},
            {"bbox": [50, 50, 70.5, 70], "category_id": 37},
        ],
        "hoi_annotation": [
            {
                "subject_id": 0,
                "object_id": 1,
                "category_id": VOCAB.verb_ids[KICK],
                "provenance": {
                    "source": "pseudo-label",
                    "checkpoint_sha256": "x",
                    "score": 0.9,
                },
            }
        ],
    }
    (root / "pseudo.json.partial.jsonl").write_text(
        json.dumps(header) + "\n" + json.dumps(marker) + "\n"
    )
    out = run_pseudo_label(
        ckpt,
        root / "coco.json",
        root / "images",
        root / "pseudo.json",
        World(),
        threshold=0.5,
        batch_size=2,
        num_workers=0,
        progress=False,
    )
    entries = json.loads(out.read_text())
    assert entries[1] == marker and [e["file_name"] for e in entries] == [
        "c0.png",
        "c1.png",
        "c2.png",
    ]
    from eoid.pipeline.data.readers import read_annotations

    # readable training data
    assert len(read_annotations(out, root / "images", VOCAB).records) == 3
