"""Merging V-COCO into HICO-DET (Section 5.6): the built-in table, remapping records,
the mix runner.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eoid.errors import DataError
from eoid.pipeline.data.mixed_vocab import (
    NEW_VERBS_SETTING,
    load_mixed_vocabulary,
    merge_vocabularies,
    remap_record,
    verb_mapping_from_json,
)
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vcoco import vcoco_actions
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_mix import MixSource, run_mix

# The original hvco vocabulary (mrwu-mac/EoID datasets/static_hico_vcoco.py): HOIs
# 600..608.
ORIGINAL_ADDED_HOIS = [
    ("surf", "surfboard"),
    ("ski", "skis"),
    ("snowboard", "snowboard"),
    ("skateboard", "skateboard"),
    ("eat_with", "fork"),
    ("eat_with", "knife"),
    ("eat_with", "spoon"),
    ("eat_with", "bowl"),
    ("work_on", "laptop"),
]
ORIGINAL_UNSEEN_VCOCO = [9, 19, 20, 21, 22, 28]  # hvcoco_eval.py ua_indices


@pytest.fixture(scope="module")
def mixed():
    return load_mixed_vocabulary("vcoco-to-hico-det")


def test_builtin_merge_has_the_original_123_verbs_and_609_hois(mixed):
    hico = load_vocabulary("hico-det")
    v = mixed.vocab
    assert (v.num_verbs, len(v.hois)) == (123, 609)
    # base indices unchanged
    assert v.verbs[:117] == hico.verbs and v.hois[:600] == hico.hois
    assert v.verbs[117:] == [
        "surf",
        "ski",
        "snowboard",
        "skateboard",
        "eat_with",
        "work_on",
    ]
    assert [(v.verbs[a], v.objects[o]) for a, o in v.hois[600:]] == ORIGINAL_ADDED_HOIS
    assert v.verb_ids[117:] == list(range(118, 124))
    assert list(v.setting(NEW_VERBS_SETTING).unseen_hois) == list(range(600, 609))
    assert (
        v.setting("ua").unseen_hois == hico.setting("ua").unseen_hois
        and v.rare_hois == hico.rare_hois
    )


def test_seen_and_unseen_vcoco_verbs_split_the_24_evaluated_ones_18_and_6(mixed):
    assert list(mixed.unseen_source_verbs) == ORIGINAL_UNSEEN_VCOCO
    evaluated = vcoco_actions()["eval_verbs"]
    assert len([v for v in evaluated if v in mixed.seen_source_verbs]) == 18
    assert len([v for v in evaluated if v in mixed.unseen_source_verbs]) == 6


def test_merged_to_source_follows_the_original_hvco_to_vcoco_table(mixed):
    v, s = mixed.vocab, mixed.source
    table = mixed.merged_to_source()
    pairs = {(v.verbs[m], s.verbs[k]) for m, k in zip(*np.nonzero(table))}
    assert {
        ("hold", "hold_obj"),
        ("sit_on", "sit_instr"),
        ("sit_at", "sit_instr"),
        ("watch", "look_obj"),
        ("swing", "hit_instr"),
        ("hit", "hit_obj"),
        ("eat_with", "eat_instr"),
        ("point", "point_instr"),
        ("work_on", "work_on_computer_instr"),
    } <= pairs
    assert len(pairs) == 20 + 6  # 19 mapped verb-roles from 20 HICO verbs, 6 added
    assert not table[:, s.verbs.index("stand")].any()


def test_merged_vocabulary_survives_its_own_file_format(mixed, tmp_path):
    path = tmp_path / "merged.json"
    path.write_text(json.dumps(mixed.vocab.to_json()))
    again = load_vocabulary(path)
    assert (
        again.fingerprint() == mixed.vocab.fingerprint()
        and again.prompts("{verb_ing} {object}")[600] == "surfing with surfboard"
    )


def _vcoco_record(mixed, labels):
    # boxes: 0 person, 1 dining table, 2 chair, 3 traffic light, 4 surfboard
    names = ["person", "dining_table", "chair", "traffic_light", "surfboard"]
    src = mixed.source
    classes = np.array([src.objects.index(n) for n in names])
    boxes = np.array([[0, 0, 10, 10]] * 5, np.float32)
    hois = np.array([(0, o, src.verbs.index(v)) for o, v in labels], np.int64).reshape(
        -1, 3
    )
    return ImageRecord("a.jpg", Path("a.jpg"), 20, 20, boxes, classes, hois)


def test_a_vcoco_label_takes_the_first_mapped_verb_valid_for_its_object(mixed):
    # sit_instr -> sit_on, but sit_on is no HOI with a dining table: sit_at (the second)
    # is taken. hold_obj -> hold, which HICO-DET has with no traffic light: dropped and
    # counted.
    rec = _vcoco_record(
        mixed, [(1, "sit_instr"), (2, "sit_instr"), (3, "hold_obj"), (4, "surf_instr")]
    )
    out, dropped = remap_record(rec, mixed.source, mixed)
    v = mixed.vocab
    assert [(o, v.verbs[m]) for _, o, m in out.hois.tolist()] == [
        (1, "sit_at"),
        (2, "sit_on"),
        (4, "surf"),
    ]
    assert dropped == 1 and out.box_classes.tolist() == rec.box_classes.tolist()


def test_a_base_record_keeps_its_verbs(mixed):
    hico = mixed.base
    rec = ImageRecord(
        "h.jpg",
        Path("h.jpg"),
        20,
        20,
        np.zeros((2, 4), np.float32) + [0, 0, 5, 5],
        np.array([0, hico.objects.index("bicycle")]),
        np.array([[0, 1, hico.verbs.index("ride")]]),
    )
    out, dropped = remap_record(rec, hico, mixed)
    assert out.hois.tolist() == rec.hois.tolist() and dropped == 0


def test_a_record_in_a_foreign_vocabulary_is_refused(mixed):
    from eoid.pipeline.synth.scenes import synth_vocabulary

    rec = ImageRecord(
        "s.jpg",
        Path("s.jpg"),
        20,
        20,
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        np.zeros((0, 3), np.int64),
    )
    with pytest.raises(DataError, match="neither"):
        remap_record(rec, synth_vocabulary(), mixed)


def test_a_mapping_that_forgets_a_source_verb_names_it():
    raw = json.loads(
        (Path(__file__).parents[3] / "eoid/data/vcoco_to_hico_det.json").read_text()
    )
    raw["dropped"] = ["stand", "walk", "run"]  # smile forgotten
    raw["mapped"][0]["verbs"] = ["grasp"]  # not a HICO-DET verb
    mapping = verb_mapping_from_json(raw, "m.json")
    with pytest.raises(DataError) as err:
        merge_vocabularies(
            load_vocabulary("hico-det"), load_vocabulary("v-coco"), mapping
        )
    assert "'smile' is listed 0 times" in str(err.value) and "'grasp'" in str(err.value)


def _tiny_source(folder: Path, vocab, verb: str, obj: str) -> Path:
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(folder / "x.png")
    ann = folder / "ann.json"
    object_id = vocab.object_ids[vocab.objects.index(obj)]
    verb_id = vocab.verb_ids[vocab.verbs.index(verb)]
    ann.write_text(
        json.dumps(
            [
                {
                    "file_name": "x.png",
                    "annotations": [
                        {"bbox": [1, 1, 20, 30], "category_id": 1},
                        {"bbox": [10, 10, 30, 30], "category_id": object_id},
                    ],
                    "hoi_annotation": [
                        {"subject_id": 0, "object_id": 1, "category_id": verb_id}
                    ],
                }
            ]
        )
    )
    return ann


def test_mix_writes_one_training_set_in_the_merged_vocabulary(tmp_path, mixed):
    # Two sources with the same file_name: prefixes keep them apart; the V-COCO label is
    # remapped.
    hico_ann = _tiny_source(tmp_path / "hico", mixed.base, "ride", "bicycle")
    vcoco_ann = _tiny_source(
        tmp_path / "vcoco", mixed.source, "surf_instr", "surfboard"
    )
    out = tmp_path / "mixed"
    train = run_mix(
        [
            MixSource(hico_ann, tmp_path / "hico", "hico-det"),
            MixSource(vcoco_ann, tmp_path / "vcoco", "v-coco"),
        ],
        "vcoco-to-hico-det",
        out,
    )
    from eoid.pipeline.data.readers import read_annotations

    vocab = load_vocabulary(out / "vocabulary.json")
    records = read_annotations(train, out / "images", vocab).records
    assert [r.key for r in records] == ["src0/x.png", "src1/x.png"]
    assert [vocab.verbs[r.hois[0, 2]] for r in records] == ["ride", "surf"]
    report = json.loads((out / "mix_report.json").read_text())
    assert [s["labels"] for s in report["sources"]] == [1, 1] and report[
        "num_hois"
    ] == 609
    # rerun: links replaced
    run_mix(
        [MixSource(hico_ann, tmp_path / "hico", "hico-det")], "vcoco-to-hico-det", out
    )
    assert len(json.loads(train.read_text())) == 1


def test_mix_with_skip_bad_says_how_many_it_skipped_and_lists_them_in_its_report(
    tmp_path, mixed, caplog
):
    import logging

    hico_ann = _tiny_source(tmp_path / "hico", mixed.base, "ride", "bicycle")
    records = json.loads(hico_ann.read_text())
    broken = json.loads(json.dumps(records[0]))
    # no such image: skipped with --skip-bad
    broken["file_name"] = "gone.png"
    hico_ann.write_text(json.dumps(records + [broken]))
    caplog.set_level(logging.WARNING)
    train = run_mix(
        [MixSource(hico_ann, tmp_path / "hico", "hico-det")],
        "vcoco-to-hico-det",
        tmp_path / "mixed",
        skip_bad=True,
    )
    report = train.parent / "mix_report.json"
    assert "skipped 1 bad record(s)" in caplog.text and str(report) in caplog.text
    assert "gone.png" in report.read_text() and len(json.loads(train.read_text())) == 1
