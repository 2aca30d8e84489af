"""Table 2's CLIP verb classifier: the student's boxes and objects, the teacher's verb
distribution.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from eoid.checkpoint import save_checkpoint
from eoid.config import (
    AugmentConfig,
    EvalConfig,
    PostprocessConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VerbsConfig,
    to_dict,
)
from eoid.config_loading import load_config
from eoid.devices import World
from eoid.pipeline.data.images import load_rgb
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.student_models import build_model
from eoid.pipeline.evaluation.clip_verbs import (
    blend_verb_scores,
    classifier_hoi_table,
    predict_with_clip_verbs,
    with_verb_probs,
)
from eoid.pipeline.evaluation.inference import predict_images
from eoid.pipeline.evaluation.scoring import score
from eoid.pipeline.run_evaluate_clip import run_clip_classifier
from eoid.pipeline.synth.scenes import synth_vocabulary
from eoid.pipeline.synth.world import generate_world
from eoid.student.model import StudentOutput
from eoid.student.postprocess import postprocess
from eoid.teacher_cache.distribution import valid_hoi_table
from eoid.teacher_cache.online import online_teacher
from eoid.teacher_cache.teacher import load_teacher

AUGMENT = AugmentConfig(test_size=160, max_size=256)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    return generate_world(tmp_path_factory.mktemp("world"), 20, seed=3, progress=False)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("eoid-synth-clip", "bundled", "cpu")


def test_prior_table_is_the_teachers_mask_and_no_prior_opens_every_hoi_but_no_interaction():
    vocab = synth_vocabulary()
    with_prior = classifier_hoi_table(vocab, prior=True)
    without = classifier_hoi_table(vocab, prior=False)
    expected = valid_hoi_table(
        vocab.hoi_to_object,
        vocab.hoi_to_verb,
        vocab.num_objects,
        [vocab.no_interaction],
    )
    assert (with_prior == expected).all()
    # without the prior every object class may take every HOI whose verb is not
    # no_interaction
    assert (without == (vocab.hoi_to_verb != vocab.no_interaction)[None, :]).all()


def test_replaced_verb_probabilities_come_back_out_of_postprocess_as_triplet_scores():
    # 1 image, 2 queries, 3 verbs; probabilities 0 and 1 included (logit -inf / +inf).
    probs = torch.tensor([[[0.0, 0.25, 1.0], [0.5, 0.0, 0.125]]])
    out = StudentOutput(
        torch.full((1, 2, 4), 0.5),
        torch.full((1, 2, 4), 0.5),
        torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, -1.0]]]),
        torch.zeros(1, 2, 3),
        torch.zeros(1, 2, 2),
    )
    p = postprocess(
        with_verb_probs(out, probs), torch.tensor([[100, 100]]), top_k=6, use_nms=False
    )[0]
    obj_score = out.object_logits.softmax(-1)[0, :, :-1].max(-1).values
    expect = {
        (int(q), int(v)): float(obj_score[q] * probs[0, q, v])
        for q in range(2)
        for v in range(3)
    }
    for q, v, s in zip(p.query_idx, p.verbs, p.scores):
        assert s == pytest.approx(expect[(int(q), int(v))], abs=1e-6)


class GroundTruthStudent:
    """A stand-in student whose queries are the test images' ground-truth pairs
    (perfect boxes and objects)."""

    def __init__(self, records, num_objects: int, num_verbs: int, num_queries: int):
        self.queue = []
        for r in records:
            w, h = load_rgb(r.path, r.key).size
            hb = np.zeros((num_queries, 4), np.float32)
            ob = np.zeros((num_queries, 4), np.float32)
            logits = np.full((num_queries, num_objects + 1), -10.0, np.float32)
            # unused queries say "no object"
            logits[:, -1] = 10.0
            pairs = np.unique(r.hois[:, :2], axis=0)[:num_queries]
            for q, (hi, oi) in enumerate(pairs):
                for dst, box in ((hb, r.boxes_xyxy_px[hi]), (ob, r.boxes_xyxy_px[oi])):
                    x1, y1, x2, y2 = box
                    dst[q] = [
                        (x1 + x2) / 2 / w,
                        (y1 + y2) / 2 / h,
                        (x2 - x1) / w,
                        (y2 - y1) / h,
                    ]
                logits[q, :] = -10.0
                logits[q, r.box_classes[oi]] = 10.0
            self.queue.append((hb, ob, logits, pairs))
        self.num_verbs = num_verbs

    def eval(self):
        return self

    def __call__(self, images, masks):
        batch, self.queue = self.queue[: len(images)], self.queue[len(images) :]
        hb, ob, lg = (
            torch.from_numpy(np.stack([b[i] for b in batch])) for i in range(3)
        )
        q = hb.shape[1]
        return StudentOutput(
            hb,
            ob,
            lg,
            torch.zeros(len(batch), q, self.num_verbs),
            torch.zeros(len(batch), q, 2),
        )


def test_with_perfect_boxes_the_scores_are_the_teachers_distribution_on_each_union_crop(
    world, teacher
):
    vocab = synth_vocabulary()
    records = read_annotations(world.test_json, world.image_dir, vocab).records
    student = GroundTruthStudent(
        records, vocab.num_objects, vocab.num_verbs, num_queries=8
    )
    pairs_of = {r.key: p for r, (*_, p) in zip(records, student.queue)}
    text = teacher.encode_texts(vocab.prompts(TeacherConfig().template))
    table = classifier_hoi_table(vocab, prior=True)
    post = PostprocessConfig(use_nms=False)
    triplets = predict_with_clip_verbs(
        student,
        teacher,
        text,
        table,
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        AUGMENT,
        post,
        "cpu",
        100.0,
    )
    # Oracle: the teacher run directly on the ground-truth pairs of the first image.
    r = records[0]
    pairs = pairs_of[r.key]
    human_xyxy, object_xyxy = r.boxes_xyxy_px[pairs[:, 0]], r.boxes_xyxy_px[pairs[:, 1]]
    probs = online_teacher(
        teacher,
        [load_rgb(r.path, r.key)],
        np.zeros(len(pairs), np.int64),
        human_xyxy,
        object_xyxy,
        r.box_classes[pairs[:, 1]],
        text,
        torch.from_numpy(table),
        torch.from_numpy(vocab.hoi_to_verb),
        vocab.num_verbs,
        100.0,
    )
    t = triplets[r.key]
    # softmax of +10 against -10s
    obj_score = 1 / (1 + (vocab.num_objects) * np.exp(-20.0))
    checked = 0
    for h, o, v, s in zip(
        t.human_boxes_xyxy, t.object_boxes_xyxy, t.verb_idx, t.scores
    ):
        for k, (hi, oi) in enumerate(pairs):
            if np.allclose(h, r.boxes_xyxy_px[hi], atol=0.01) and np.allclose(
                o, r.boxes_xyxy_px[oi], atol=0.01
            ):
                assert s == pytest.approx(obj_score * float(probs[k, v]), abs=1e-4)
                checked += 1
    # every pair's verbs were found among the triplets
    assert checked >= len(pairs)
    # The teacher's verbs beat a classifier that knows nothing: gamma = 0 makes the same
    # softmax uniform over each object's verbs, so only the crops' information differs.
    clip_map = score(triplets, records, vocab, "ua")["mAP"]["full"]
    fresh = GroundTruthStudent(
        records, vocab.num_objects, vocab.num_verbs, num_queries=8
    )
    uniform = predict_with_clip_verbs(
        fresh,
        teacher,
        text,
        table,
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        AUGMENT,
        post,
        "cpu",
        0.0,
    )
    assert clip_map > score(uniform, records, vocab, "ua")["mAP"]["full"] + 5.0


def test_clip_classifier_evaluation_writes_full_rare_non_rare_with_and_without_prior(
    world, tmp_path
):
    vocab = synth_vocabulary()
    cfg = TrainConfig(student=StudentConfig(preset="tiny", num_queries=8))
    torch.manual_seed(0)
    model = build_model(cfg.student, vocab, "cpu")
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(
        ckpt,
        model=model.state_dict(),
        config=to_dict(cfg),
        vocabulary=vocab.to_json(),
        epoch=1,
        iteration=1,
    )
    for prior in (True, False):
        out = tmp_path / f"eval_{prior}"
        ev = load_config(
            EvalConfig,
            None,
            (),
            checkpoint=str(ckpt),
            out=str(out),
            data__test_annotations=str(world.test_json),
            data__test_images=str(world.image_dir),
            augment__test_size=160,
            augment__max_size=256,
        )
        ev = dataclasses.replace(ev, verbs=VerbsConfig(classifier="clip", prior=prior))
        teacher_cfg = TeacherConfig(model="eoid-synth-clip", weights="bundled")
        table = run_clip_classifier(ev, teacher_cfg, World())
        results = json.loads((out / "results.json").read_text())
        assert {"full", "rare", "non_rare"} <= set(results["mAP"])
        assert (
            results["meta"]["verb_classifier"] == "clip"
            and results["meta"]["prior"] is prior
        )
        assert ("with the prior" if prior else "without the prior") in table
        assert (out / "predictions.json").is_file()


def test_blend_is_the_weighted_geometric_mean_with_the_student_and_clip_at_its_ends():
    # one query, 4 verbs; CLIP's 0 on a verb outside the object's HOIs included
    student = torch.tensor([[0.9, 0.5, 0.2, 0.8]])
    clip = torch.tensor([[0.1, 0.4, 0.5, 0.0]])
    # 0^0 = 1: the student
    assert torch.equal(blend_verb_scores(student, clip, 0.0), student)
    # CLIP exactly
    assert torch.equal(blend_verb_scores(student, clip, 1.0), clip)
    # w = 0.5: the geometric mean sqrt(s * c), e.g. sqrt(0.9 * 0.1) = 0.3
    assert blend_verb_scores(student, clip, 0.5) == pytest.approx(
        torch.sqrt(student * clip)
    )
    assert blend_verb_scores(student, clip, 0.5)[0, 0].item() == pytest.approx(0.3)
    # w = 0.25: s^0.75 * c^0.25, e.g. 0.2^0.75 * 0.5^0.25
    assert blend_verb_scores(student, clip, 0.25)[0, 2].item() == pytest.approx(
        0.2**0.75 * 0.5**0.25
    )
    # a verb CLIP rules out stays out for any w > 0
    assert blend_verb_scores(student, clip, 0.01)[0, 3].item() == 0.0


def _dense(triplets):
    """Per image: the sorted triplet scores and the sorted (object, verb) pairs, for
    comparisons.
    """
    return {
        k: (np.sort(t.scores), sorted(zip(t.object_idx.tolist(), t.verb_idx.tolist())))
        for k, t in triplets.items()
    }


def test_blend_at_0_is_the_student_alone_and_at_1_ranks_as_clip_does(world, teacher):
    vocab = synth_vocabulary()
    records = read_annotations(world.test_json, world.image_dir, vocab).records[:4]
    torch.manual_seed(0)
    model = build_model(StudentConfig(preset="tiny", num_queries=8), vocab, "cpu")
    text = teacher.encode_texts(vocab.prompts(TeacherConfig().template))
    table = classifier_hoi_table(vocab, prior=True)
    post = PostprocessConfig(use_nms=False)
    paths, keys = [r.path for r in records], [r.key for r in records]

    def clip_run(weight):
        return predict_with_clip_verbs(
            model,
            teacher,
            text,
            table,
            paths,
            keys,
            vocab,
            AUGMENT,
            post,
            "cpu",
            100.0,
            blend_weight=weight,
        )

    alone, _ = predict_images(
        model, paths, keys, vocab, AUGMENT, post, "cpu", progress=False
    )
    for got, want in ((clip_run(0.0), alone), (clip_run(1.0), clip_run(None))):
        got, want = _dense(got), _dense(want)
        for key in keys:
            assert got[key][0] == pytest.approx(want[key][0], rel=1e-5, abs=1e-7)
            assert got[key][1] == want[key][1]
