"""The one inference loop with a student that has no interactive-score head (imported
CDN weights).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from eoid.config import AugmentConfig, PostprocessConfig
from eoid.errors import ConfigError
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.evaluation.inference import open_student, predict_images
from eoid.pipeline.evaluation.predictions_io import format_table
from eoid.pipeline.evaluation.scoring import evaluate_model_on_records
from eoid.student.model import build_student

AUGMENT = AugmentConfig(test_size=64, max_size=96)


@pytest.fixture()
def picture(tmp_path):
    Image.new("RGB", (80, 60), (120, 30, 200)).save(tmp_path / "a.png")
    return tmp_path / "a.png"


def test_without_is_head_triplets_come_out_and_no_pairs_are_ranked(picture):
    torch.manual_seed(0)
    model = build_student("tiny", 80, 117, 8, is_head="none")
    triplets, ranked = predict_images(
        model,
        [picture],
        ["a"],
        load_vocabulary("hico-det"),
        AUGMENT,
        PostprocessConfig(top_k=5),
        "cpu",
        progress=False,
    )
    assert ranked is None and len(triplets["a"].scores) > 0


def test_without_is_head_the_interactive_score_cannot_be_switched_on(picture):
    model = build_student("tiny", 80, 117, 8, is_head="none")
    with pytest.raises(ConfigError, match="use_interactive_score = false"):
        predict_images(
            model,
            [picture],
            ["a"],
            load_vocabulary("hico-det"),
            AUGMENT,
            PostprocessConfig(use_interactive_score=True),
            "cpu",
            progress=False,
        )


def test_without_is_head_unseen_pair_recall_is_skipped_with_a_note(picture):
    # a UA record whose one pair carries only unseen verb 0 (adjust) would count for
    # U-R@K
    vocab = load_vocabulary("hico-det")
    unseen = vocab.unseen_verbs("ua")[0]
    record = ImageRecord(
        "a",
        picture,
        80,
        60,
        np.array([[0, 0, 30, 50], [40, 10, 70, 40]], np.float32),
        np.array([0, 1]),
        np.array([[0, 1, unseen]]),
    )
    model = build_student("tiny", 80, 117, 8, is_head="none")
    results = evaluate_model_on_records(
        model, [record], vocab, AUGMENT, PostprocessConfig(), "cpu", "ua"
    )
    assert "unseen_recall" not in results and results["meta"][
        "unseen_recall"
    ].startswith("skipped")
    assert "unseen-pair recall: skipped" in format_table(results)
    # the same run with an IS head
    model = build_student("tiny", 80, 117, 8, is_head="interaction")
    assert "unseen_recall" in evaluate_model_on_records(
        model, [record], vocab, AUGMENT, PostprocessConfig(), "cpu", "ua"
    )


def test_open_student_wants_exactly_one_of_checkpoint_and_onnx():
    with pytest.raises(ConfigError, match="pass one of --checkpoint"):
        open_student("", "", "CPUExecutionProvider", "cpu")
    with pytest.raises(ConfigError, match="pass one of --checkpoint"):
        open_student("a.pt", "a.onnx", "CPUExecutionProvider", "cpu")
