"""Every open_clip family as teacher: a ViT, a ModifiedResNet (attention pooling), a
timm ConvNeXt, and a SigLIP-style model (custom text tower, learned logit_bias), tiny
and random (tests/data/tiny-clip-*.json).

Each goes through cache-teacher, relabel, the online teacher of `eoid train
--online-teacher` and the CLIP verb classifier of `eoid evaluate --verb-classifier
clip`, and gives the same distribution through the cache as online (float32 on CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.pipeline.test_run_cache import make_world
from tests.pipeline.test_run_evaluate_clip import AUGMENT, GroundTruthStudent

from eoid.config import (
    CacheConfig,
    DataConfig,
    PostprocessConfig,
    TeacherConfig,
    TrainConfig,
)
from eoid.config_loading import load_config
from eoid.devices import World
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.evaluation.clip_verbs import (
    classifier_hoi_table,
    predict_with_clip_verbs,
)
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.run_cache_relabel import run_relabel
from eoid.pipeline.run_train import run_train
from eoid.pipeline.training.dataset import SampleMeta
from eoid.pipeline.training.teacher_source import OnlineTeacher
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.teacher import load_teacher

DATA = Path(__file__).resolve().parents[1] / "data"
FAMILIES = {
    "vit": "tiny-clip.json",
    "resnet": "tiny-clip-rn.json",
    "convnext": "tiny-clip-convnext.json",
    "sigmoid": "tiny-clip-sigmoid.json",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), num_images=6, seed=2)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory) -> tuple[str, Path]:
    """(model config path, its random weights saved as an open_clip state-dict file)."""
    import open_clip

    config = DATA / FAMILIES[request.param]
    open_clip.add_model_config(str(config))
    torch.manual_seed(1)
    model = open_clip.create_model(config.stem, pretrained=None)
    weights = tmp_path_factory.mktemp(request.param) / "weights.pt"
    torch.save(model.state_dict(), weights)
    return str(config), weights


def _cache(world, family, out: Path, gamma: float | str = 100.0) -> Path:
    ann, images, vocab = world
    # batches of 64 crops, as the online teacher encodes them: a convolution tower's
    # float32 output differs in the last bits between batch sizes (1.4e-6 in probability
    # at gamma 100, ConvNeXt)
    teacher = TeacherConfig(
        model=family[0],
        weights=str(family[1]),
        batch_size=64,
        num_workers=0,
        shard_rows=16,
        gamma=gamma,
    )
    data = DataConfig(
        dataset=str(vocab), train_annotations=str(ann), train_images=str(images)
    )
    return run_cache(CacheConfig(data=data, teacher=teacher, out=str(out)), World())


def test_the_cache_equals_the_online_teacher_and_the_clip_verb_classifier(
    world, family, tmp_path
):
    ann, images, vocab_path = world
    reader = CacheReader(_cache(world, family, tmp_path / "cache"))
    vocab = load_vocabulary(str(vocab_path))
    records = read_annotations(ann, images, vocab).records
    # the online teacher of `eoid train --online-teacher`, on every candidate pair of
    # every image
    online = OnlineTeacher(
        TrainConfig(teacher=TeacherConfig(model=family[0], weights=str(family[1]))),
        vocab,
        records,
        "cpu",
    )
    metas = [
        SampleMeta(k, i, (0, 0), (0, 0), 0, 0, reader.pair_box_idx[reader.rows(k)])
        for i, k in enumerate(reader.image_keys)
    ]
    probs = torch.cat(online.probs_for(metas)).numpy()
    assert np.abs(probs - reader.verb_probs).max() <= 1e-6
    # the CLIP verb classifier on a student whose queries are the labelled pairs: its
    # triplet score is object score x the teacher's probability (boxes round-trip
    # through normalised coordinates)
    student = GroundTruthStudent(
        records, vocab.num_objects, vocab.num_verbs, num_queries=4
    )
    queued = {r.key: pairs for r, (*_, pairs) in zip(records, student.queue)}
    triplets = predict_with_clip_verbs(
        student,
        online.teacher,
        online.text_emb,
        classifier_hoi_table(vocab, prior=True),
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        AUGMENT,
        PostprocessConfig(use_nms=False),
        "cpu",
        online.gamma,
    )
    obj_score = 1 / (1 + vocab.num_objects * np.exp(-20.0))
    checked = 0
    for r in records:
        rows = reader.rows(r.key)
        t = triplets[r.key]
        for h_idx, o_idx in queued[r.key]:
            row = rows.start + int(
                np.flatnonzero((reader.pair_box_idx[rows] == (h_idx, o_idx)).all(1))[0]
            )
            found = zip(t.human_boxes_xyxy, t.object_boxes_xyxy, t.verb_idx, t.scores)
            mine = [
                (v, s)
                for h, o, v, s in found
                if np.allclose(h, r.boxes_xyxy_px[h_idx], atol=0.01)
                and np.allclose(o, r.boxes_xyxy_px[o_idx], atol=0.01)
            ]
            for v, s in mine:
                assert s == pytest.approx(
                    obj_score * reader.verb_probs[row, v], abs=1e-4
                )
            checked += len(mine)
    assert checked > 0


def test_relabel_and_gamma_model_use_the_families_own_logit_scale(
    world, family, tmp_path
):
    scale = float(torch.load(family[1], weights_only=True)["logit_scale"].exp())
    fresh = CacheReader(_cache(world, family, tmp_path / "fresh", gamma="model"))
    relabelled = CacheReader(
        run_relabel(
            _cache(world, family, tmp_path / "cache"), tmp_path / "r", gamma="model"
        )
    )
    assert (
        fresh.fingerprint["gamma"]
        == relabelled.fingerprint["gamma"]
        == pytest.approx(scale)
    )
    # from float16 embeddings
    assert np.allclose(fresh.verb_probs, relabelled.verb_probs, atol=5e-3)


def test_siglip_style_logit_bias_does_not_move_the_softmax_over_prompts(
    world, tmp_path
):
    # the sigmoid model's bias is added to every prompt's logit alike: softmax is
    # shift-invariant
    teacher = load_teacher(str(DATA / FAMILIES["sigmoid"]), "none")
    assert float(teacher.model.logit_bias) == -10.0 and float(
        teacher.model.logit_scale.exp()
    ) == pytest.approx(10.0)
    logits = torch.randn(3, 5) * 10
    assert torch.allclose(
        logits.softmax(1), (logits + teacher.model.logit_bias).softmax(1), atol=1e-6
    )


def test_online_teacher_training_runs_with_every_family(world, family, tmp_path):
    ann, images, vocab_path = world
    sets = (
        f"data.dataset={json.dumps(str(vocab_path))}",
        "data.setting=",
        "loss.a_u_only=false",
        "student.preset=tiny",
        "student.num_queries=8",
        "optim.batch_size=3",
        "optim.num_workers=0",
        "optim.epochs=1",
        "optim.max_iters=1",
        "data.val_images=0",
        "augment.scales=[64]",
        "augment.max_size=96",
        "augment.crop_scales=[64]",
        "augment.crop_min=48",
        "augment.crop_max=64",
        "augment.test_size=64",
        f"teacher.model={json.dumps(family[0])}",
        f"teacher.weights={json.dumps(str(family[1]))}",
        'teacher.gamma="model"',
    )
    cfg = load_config(
        TrainConfig,
        None,
        sets,
        out=str(tmp_path / "run"),
        online_teacher=True,
        data__train_annotations=str(ann),
        data__train_images=str(images),
    )
    run = run_train(cfg, World())
    rows = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r for r in rows if "iteration" in r]
    assert (
        len(steps) == 1
        and steps[0]["teacher_miss_rate"] == 0.0
        and steps[0]["loss_verb_distill"] > 0
    )
