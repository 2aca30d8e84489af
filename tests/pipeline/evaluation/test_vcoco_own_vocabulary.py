"""A student of V-COCO's own 29 verb-roles is scored with V-COCO's role AP, like a
merged one.
"""

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from eoid.checkpoint import save_checkpoint
from eoid.cli import main
from eoid.config import AugmentConfig, StudentConfig, to_dict
from eoid.pipeline.data.mixed_vocab import load_mixed_vocabulary, verb_table_to_source
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.student_models import build_model
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.evaluation.vcoco_map import evaluate_vcoco
from eoid.pipeline.evaluation.vcoco_scoring import (
    role_map_summary,
    source_scores,
    vcoco_detections,
    vcoco_gt_from_records,
    vcoco_structure,
)

MIXED = load_mixed_vocabulary("vcoco-to-hico-det")
VCOCO = MIXED.source
S = vcoco_structure(VCOCO, "v-coco")
V = VCOCO.verbs.index
CUP, SKIS = VCOCO.objects.index("cup"), VCOCO.objects.index("skis")


def test_each_vocabulary_of_the_mapping_reaches_vcoco_verb_roles_and_another_is_refused():
    assert np.array_equal(
        verb_table_to_source(MIXED, VCOCO), np.eye(VCOCO.num_verbs, dtype=bool)
    )
    # HICO-DET: hold -> hold_obj, no ski
    base = verb_table_to_source(MIXED, MIXED.base)
    assert (
        base.shape == (117, 29) and base[MIXED.base.verbs.index("hold"), V("hold_obj")]
    )
    assert not base[:, V("ski_instr")].any()
    assert np.array_equal(
        verb_table_to_source(MIXED, MIXED.vocab), MIXED.merged_to_source()
    )
    from eoid.pipeline.data.vocab import vocabulary_from_json
    from eoid.pipeline.synth.scenes import synth_vocabulary_json

    assert (
        verb_table_to_source(
            MIXED, vocabulary_from_json(synth_vocabulary_json(), "synth")
        )
        is None
    )


def _three_people() -> ImageRecord:
    # persons 0, 1, 2; person 0 holds cup 3, person 1 holds cup 4, person 2 skis on skis
    # 5
    boxes = np.array(
        [
            [0, 0, 99, 199],
            [200, 0, 299, 199],
            [400, 0, 499, 199],
            [100, 100, 149, 149],
            [300, 100, 349, 149],
            [400, 180, 499, 199],
        ],
        np.float32,
    )
    classes = np.array([0, 0, 0, CUP, CUP, SKIS])
    hois = np.array(
        [[0, 3, V("hold_obj")], [1, 4, V("hold_obj")], [2, 5, V("ski_instr")]]
    )
    return ImageRecord("img.jpg", Path("img.jpg"), 600, 300, boxes, classes, hois)


def _oracle_queries(
    rec: ImageRecord,
) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Four hand-built queries: (human boxes, object boxes, {verb-role: score per
    query}).
    """
    b = rec.boxes_xyxy_px.astype(np.float64)
    human = b[[0, 1, 1, 2]]
    # query 1 puts person 1's object on the skis: wrong box for hold
    obj = b[[3, 5, 4, 5]]
    return (
        human,
        obj,
        {"hold_obj": [0.9, 0.8, 0.7, 0.0], "ski_instr": [0.0, 0.6, 0.0, 0.5]},
    )


def _summary(scores_student: np.ndarray, table: np.ndarray, rec: ImageRecord) -> dict:
    human, obj, _ = _oracle_queries(rec)
    gt = vcoco_gt_from_records([rec], VCOCO, S)
    det = vcoco_detections(human, obj, source_scores(scores_student, table), S)
    result = evaluate_vcoco(gt, {"img.jpg": det}, S.num_roles)
    return role_map_summary(
        result, S, MIXED.seen_source_verbs, MIXED.unseen_source_verbs, VCOCO.verbs
    )


def test_hand_built_predictions_of_a_vcoco_student_score_their_known_role_ap():
    # hold_obj (2 positives), ranked .9 TP (person 0, cup 3), .8 FP (person 1 but the
    # skis as its object), .7 TP (person 1, cup 4), 0 FP (person 2 holds nothing):
    # precision 1 at recall 1/2, 2/3 at recall 1 -> AP = 0.5 x 1 + 0.5 x 2/3 = 83.33.
    # ski_instr (1 positive): .6 FP (person 1 does not ski), .5 TP (person 2, skis) ->
    # AP = 50. Every other verb-role has no positive (NaN, left out). hold_obj is Seen
    # (mapped onto hold), ski_instr Unseen (added as ski): Full 66.67, Seen 83.33,
    # Unseen 50, in both scenarios (every ground-truth role has an object box).
    rec = _three_people()
    _, _, named = _oracle_queries(rec)
    scores = np.zeros((4, VCOCO.num_verbs))
    for verb, column in named.items():
        scores[:, V(verb)] = column
    summary = _summary(scores, verb_table_to_source(MIXED, VCOCO), rec)
    for s in (1, 2):
        row = summary[f"scenario_{s}"]
        assert (row["full"], row["seen"], row["unseen"]) == (66.67, 83.33, 50.0)
        assert (
            row["per_verb"]["hold_obj"] == 83.33
            and row["per_verb"]["ski_instr"] == 50.0
        )
    # the same predictions written in the merged vocabulary (hold, ski) score the same
    merged = np.zeros((4, MIXED.vocab.num_verbs))
    merged[:, MIXED.vocab.verbs.index("hold")] = named["hold_obj"]
    merged[:, MIXED.vocab.verbs.index("ski")] = named["ski_instr"]
    assert _summary(merged, verb_table_to_source(MIXED, MIXED.vocab), rec) == summary


# ---------------------------------------------------------------------------- through
# the command

# (width, height) of the one test image
SIZE = (200, 160)
PERSON, HELD_CUP = [10, 10, 60, 150], [70, 60, 110, 100]
SKIER, SKI_BOARDS = [120, 10, 170, 150], [110, 140, 190, 158]


def _vcoco_test_set(folder: Path) -> tuple[Path, Path]:
    """One image in CDN's HOIA JSON: a person holding a cup, a person skiing."""
    images = folder / "images"
    images.mkdir(parents=True)
    Image.new("RGB", SIZE, (120, 110, 100)).save(images / "a.png")
    # COCO ids: cup 47, skis 35
    boxes = [(PERSON, 1), (HELD_CUP, 47), (SKIER, 1), (SKI_BOARDS, 35)]
    record = {
        "file_name": "a.png",
        "annotations": [{"bbox": b, "category_id": c} for b, c in boxes],
        "hoi_annotation": [
            {"subject_id": 0, "object_id": 1, "category_id": V("hold_obj")},
            {"subject_id": 2, "object_id": 3, "category_id": V("ski_instr")},
        ],
    }
    (folder / "test_vcoco.json").write_text(json.dumps([record]))
    return folder / "test_vcoco.json", images


def _logit_cxcywh(box_xyxy: list[int]) -> torch.Tensor:
    (x1, y1, x2, y2), (w, h) = box_xyxy, SIZE
    return torch.logit(
        torch.tensor(
            [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
        )
    )


def _constant_student(path: Path, vocabulary_name: str = "v-coco") -> Path:
    """A tiny student whose every query says: the person holds the cup (hold_obj 0.88),
    skis 0.05.

    The tiny preset adds its box heads' output to a per-query anchor; with the heads'
    last layers at zero and every anchor on the person and the cup, and the class and
    verb heads reduced to their biases, no query depends on the image.
    """
    vocab = load_vocabulary(vocabulary_name)
    student = StudentConfig(preset="tiny", num_queries=4)
    torch.manual_seed(0)
    model = build_model(student, vocab, "cpu")
    with torch.no_grad():
        model.human_anchor.weight[:] = _logit_cxcywh(PERSON)
        model.object_anchor.weight[:] = _logit_cxcywh(HELD_CUP)
        for layer in (
            model.sub_bbox_embed.layers[-1],
            model.obj_bbox_embed.layers[-1],
            model.obj_class_embed,
            model.verb_class_embed,
        ):
            layer.weight.zero_()
        model.sub_bbox_embed.layers[-1].bias.zero_()
        model.obj_bbox_embed.layers[-1].bias.zero_()
        model.obj_class_embed.bias.fill_(-10.0)
        model.verb_class_embed.bias.fill_(-10.0)
        if vocabulary_name == "v-coco":
            model.obj_class_embed.bias[vocab.objects.index("cup")] = 10.0
            model.verb_class_embed.bias[vocab.verbs.index("hold_obj")] = 2.0
            model.verb_class_embed.bias[vocab.verbs.index("ski_instr")] = -3.0
    augment = AugmentConfig(
        scales=(96,),
        max_size=128,
        crop_scales=(96,),
        crop_min=64,
        crop_max=96,
        test_size=96,
    )
    save_checkpoint(
        path,
        model=model.state_dict(),
        config={"student": to_dict(student), "augment": to_dict(augment)},
        vocabulary=vocab.to_json(),
        epoch=0,
        iteration=0,
    )
    return path


def _evaluate_vcoco(checkpoint: Path, ann: Path, images: Path, out: Path):
    return CliRunner().invoke(
        main,
        [
            "evaluate-vcoco",
            "--checkpoint",
            str(checkpoint),
            "--annotations",
            str(ann),
            "--images",
            str(images),
            "--out",
            str(out),
        ],
    )


def test_a_vcoco_vocabulary_student_is_scored_by_the_command_with_its_known_role_ap(
    tmp_path,
):
    # Every query predicts (person 0, cup, hold_obj): the first is a TP of hold_obj, the
    # other three repeat a covered person (FP after the TP): AP 100. ski_instr: every
    # query is on the person who does not ski: AP 0. Seen (hold_obj) 100, Unseen
    # (ski_instr) 0, Full 50.
    ann, images = _vcoco_test_set(tmp_path)
    result = _evaluate_vcoco(
        _constant_student(tmp_path / "vcoco.pt"), ann, images, tmp_path / "eval"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "vcoco_results.json").read_text())
    assert summary["student_vocabulary"] == "v-coco"
    assert (summary["num_seen"], summary["num_unseen"]) == (18, 6)
    for s in (1, 2):
        row = summary[f"scenario_{s}"]
        assert (row["full"], row["seen"], row["unseen"]) == (50.0, 100.0, 0.0)
        assert (
            row["per_verb"]["hold_obj"] == 100.0 and row["per_verb"]["ski_instr"] == 0.0
        )


def test_a_student_the_mapping_does_not_relate_to_vcoco_is_refused_in_one_line(
    tmp_path,
):
    from eoid.pipeline.synth.scenes import synth_vocabulary_json

    (tmp_path / "synth.json").write_text(json.dumps(synth_vocabulary_json()))
    ann, images = _vcoco_test_set(tmp_path)
    checkpoint = _constant_student(tmp_path / "synth.pt", str(tmp_path / "synth.json"))
    result = _evaluate_vcoco(checkpoint, ann, images, tmp_path / "eval")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ")
    assert (
        "synth.pt" in lines[0]
        and "does not relate" in lines[0]
        and "--mapping" in lines[0]
    )


def test_a_student_trained_on_vcoco_labels_is_scored_by_the_command(tmp_path):
    # eoid train on the V-COCO file itself (data.dataset = "v-coco", no teacher), two steps
    ann, images = _vcoco_test_set(tmp_path)
    root = Path(__file__).resolve().parents[3]
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--config",
            str(root / "configs" / "synth_ua.toml"),
            "--annotations",
            str(ann),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "run"),
            "--setting",
            "",
            "--set",
            "data.dataset=v-coco",
            "--set",
            "loss.distill=0",
            "--set",
            "cache=''",
            "--set",
            "loss.a_u_only=false",
            "--set",
            "data.val_fraction=0",
            "--set",
            "data.test_annotations=''",
            "--set",
            "optim.epochs=1",
            "--set",
            "optim.max_iters=2",
            "--set",
            "optim.batch_size=1",
            "--set",
            "student.num_queries=4",
            "--set",
            "augment.test_size=96",
            "--set",
            "augment.scales=[96]",
            "--set",
            "augment.crop_scales=[96]",
            "--set",
            "augment.crop_min=64",
            "--set",
            "augment.crop_max=96",
        ],
    )
    assert result.exit_code == 0, result.output
    result = _evaluate_vcoco(
        tmp_path / "run" / "checkpoint.pt", ann, images, tmp_path / "eval"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "vcoco_results.json").read_text())
    assert summary["student_vocabulary"] == "v-coco"
    for s in (1, 2):
        assert 0.0 <= summary[f"scenario_{s}"]["full"] <= 100.0
