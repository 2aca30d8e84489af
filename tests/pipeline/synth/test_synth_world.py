"""The synthetic world: deterministic, loadable, zero-shot settings as specified, verbs
visible.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eoid.errors import ConfigError
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.synth.layouts import FREE, QUICKSTART
from eoid.pipeline.synth.scenes import synth_vocabulary
from eoid.pipeline.synth.world import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # 80 images, half in test: >= 40 test people, more than the 20 HOIs the stream shows
    # first
    return generate_world(
        tmp_path_factory.mktemp("world"), 80, seed=3, test_fraction=0.5, progress=False
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    a = _files(generate_world(tmp_path / "a", 6, seed=1, progress=False).root)
    b = _files(generate_world(tmp_path / "b", 6, seed=1, progress=False).root)
    c = _files(generate_world(tmp_path / "c", 6, seed=2, progress=False).root)
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_vocabulary_file_loads_and_matches_the_builtin_definition(world):
    vocab = load_vocabulary(world.vocabulary)
    assert vocab.fingerprint() == synth_vocabulary().fingerprint()
    assert vocab.objects[vocab.human] == "person" and vocab.human == 0
    assert (
        vocab.no_interaction is not None
        and vocab.verbs[vocab.no_interaction] == "no_interaction"
    )
    assert 3 <= vocab.num_objects - 1 <= 5 and {
        "ride",
        "hold",
        "kick",
        "carry",
        "look_at",
    } <= set(vocab.verbs)
    # every verb has a gerund phrase for the prompts, and prompts read like HICO-DET's
    prompts = vocab.prompts("a picture of person {verb_ing} {object}")
    assert "a picture of person kicking sports ball" in prompts


def test_annotations_are_valid_hico_records(world):
    vocab = load_vocabulary(world.vocabulary)
    valid = vocab.valid
    for path in (world.train_json, world.test_json):
        records = json.loads(path.read_text())
        assert records
        for rec in records:
            with Image.open(world.image_dir / rec["file_name"]) as im:
                width, height = im.size
            classes = [
                vocab.object_ids.index(a["category_id"]) for a in rec["annotations"]
            ]
            for a in rec["annotations"]:
                x1, y1, x2, y2 = a["bbox"]
                assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, rec[
                    "file_name"
                ]
            for h in rec["hoi_annotation"]:
                assert classes[h["subject_id"]] == vocab.human
                obj = classes[h["object_id"]]
                assert obj != vocab.human
                verb = vocab.verb_ids.index(h["category_id"])
                assert valid[obj, verb]
                assert vocab.hois[h["hoi_category_id"] - 1] == (verb, obj)


def test_images_hold_one_to_three_people_and_some_unlabelled_cross_pairs(world):
    records = json.loads(world.train_json.read_text()) + json.loads(
        world.test_json.read_text()
    )
    people = [sum(a["category_id"] == 1 for a in r["annotations"]) for r in records]
    assert min(people) >= 1 and max(people) == 3
    # an image with two people has person x object combinations that carry no label
    crowded = [r for r, n in zip(records, people) if n >= 2]
    assert crowded and all(
        len(r["hoi_annotation"]) < n * (len(r["annotations"]) - n)
        for r, n in zip(crowded, [p for p in people if p >= 2])
    )


def test_quickstart_layout_labels_carrying_pairs_hold_too_and_draws_the_same_images(
    tmp_path,
):
    free = generate_world(
        tmp_path / "free",
        40,
        seed=5,
        progress=False,
        layout=dataclasses.replace(QUICKSTART, implied=()),
    )
    implied = generate_world(
        tmp_path / "implied", 40, seed=5, progress=False, layout=QUICKSTART
    )
    vocab = load_vocabulary(implied.vocabulary)
    carry, hold = (
        vocab.verb_ids[vocab.verbs.index("carry")],
        vocab.verb_ids[vocab.verbs.index("hold")],
    )
    added = 0
    for a, b in zip(
        json.loads(free.train_json.read_text()),
        json.loads(implied.train_json.read_text()),
    ):
        assert a["annotations"] == b["annotations"]
        assert (free.image_dir / a["file_name"]).read_bytes() == (
            implied.image_dir / b["file_name"]
        ).read_bytes()
        pairs = {(h["subject_id"], h["object_id"]): set() for h in b["hoi_annotation"]}
        for h in b["hoi_annotation"]:
            pairs[h["subject_id"], h["object_id"]].add(h["category_id"])
        for verbs in pairs.values():
            # every carrying pair also holds
            assert carry not in verbs or hold in verbs
        added += len(b["hoi_annotation"]) - len(a["hoi_annotation"])
    assert (
        added
        == sum(
            h["category_id"] == carry
            for r in json.loads(free.train_json.read_text())
            for h in r["hoi_annotation"]
        )
        > 0
    )
    assert FREE.implied == ()  # the teacher's world keeps one verb per pair


def test_every_hoi_and_every_unseen_verb_of_ua_appears_in_the_test_labels(world):
    vocab = load_vocabulary(world.vocabulary)
    seen = set()
    for rec in json.loads(world.test_json.read_text()):
        for h in rec["hoi_annotation"]:
            obj = vocab.object_ids.index(
                rec["annotations"][h["object_id"]]["category_id"]
            )
            seen.add((vocab.verb_ids.index(h["category_id"]), obj))
    assert seen == set(vocab.hois)
    assert {vocab.verbs[v] for v in vocab.unseen_verbs("ua")} <= {
        vocab.verbs[v] for v, _ in seen
    }


def test_zero_shot_settings_have_hico_det_properties():
    vocab = synth_vocabulary()
    ua, uc = vocab.setting("ua"), vocab.setting("uc")
    assert ua.kind == "verb" and uc.kind == "hoi"
    unseen_verbs = vocab.unseen_verbs("ua")
    assert 2 <= len(unseen_verbs) < vocab.num_verbs // 2
    # UA hides every HOI of its verbs, and each of their objects keeps >= 2 seen verbs
    # besides no_interaction, so the object class (the prior mask) does not give the
    # verb away
    assert set(ua.unseen_hois) == {
        i for i, (v, _) in enumerate(vocab.hois) if v in unseen_verbs
    }
    for i in ua.unseen_hois:
        obj = vocab.hois[i][1]
        others = [
            v
            for v, o in vocab.hois
            if o == obj and v not in unseen_verbs and v != vocab.no_interaction
        ]
        assert len(others) >= 2
    # UC hides combinations only: every verb stays seen with another object
    assert uc.unseen_hois and vocab.unseen_verbs("uc") == []
    assert set(vocab.rare_hois).isdisjoint(ua.unseen_hois) and set(
        vocab.rare_hois
    ) < set(range(len(vocab.hois)))


def test_every_object_has_several_verbs():
    vocab = synth_vocabulary()
    assert (vocab.valid[1:].sum(1) >= 4).all() and not vocab.valid[vocab.human].any()


def _pair_geometry(
    records: list[dict], vocab
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 5) box geometry of each labelled pair in units of the person's height, verbs,
    objects.
    """
    feats, verbs, objects = [], [], []
    for rec in records:
        boxes = np.array([a["bbox"] for a in rec["annotations"]], float)
        for h in rec["hoi_annotation"]:
            p, q = boxes[h["subject_id"]], boxes[h["object_id"]]
            ph = p[3] - p[1]
            feats.append(
                [
                    abs(q[0] + q[2] - p[0] - p[2]) / 2 / ph,
                    ((q[1] + q[3]) / 2 - p[1]) / ph,
                    max(q[0] - p[2], p[0] - q[2]) / ph,
                    (q[3] - p[3]) / ph,
                    (q[1] - p[1]) / ph,
                ]
            )
            verbs.append(vocab.verb_ids.index(h["category_id"]))
            objects.append(
                vocab.object_ids.index(
                    rec["annotations"][h["object_id"]]["category_id"]
                )
            )
    return np.array(feats), np.array(verbs), np.array(objects)


def test_verbs_are_visible_to_a_nearest_centroid_rule_on_pair_geometry(world):
    # The verb rules are spatial (object above the head, at the hand, at the foot, far
    # away...), so the centroid of each HOI's box geometry, learnt on train, must name
    # the test verbs.
    vocab = load_vocabulary(world.vocabulary)
    x_tr, v_tr, o_tr = _pair_geometry(json.loads(world.train_json.read_text()), vocab)
    x_te, v_te, o_te = _pair_geometry(json.loads(world.test_json.read_text()), vocab)
    mu, sd = x_tr.mean(0), x_tr.std(0)
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    centroids = {
        (v, o): x_tr[(v_tr == v) & (o_tr == o)].mean(0)
        for v, o in vocab.hois
        if ((v_tr == v) & (o_tr == o)).any()
    }
    pred = [
        min((np.linalg.norm(x - c), v) for (v, oo), c in centroids.items() if oo == o)[
            1
        ]
        for x, o in zip(x_te, o_te)
    ]
    chance = np.mean([1 / vocab.valid[o].sum() for o in o_te])
    accuracy = float(np.mean(np.array(pred) == v_te))
    assert accuracy > 0.9 > 3 * chance


def test_bad_sizes_are_refused_with_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="num_images"):
        generate_world(tmp_path, 1, seed=0, progress=False)
