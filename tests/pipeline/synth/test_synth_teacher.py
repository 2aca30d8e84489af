"""The synthetic world's teacher: ships as package data, loads through open_clip, knows
the verbs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eoid.pipeline.synth.scenes import sample_scenes, synth_vocabulary
from eoid.pipeline.synth.teacher import (
    MODEL_NAME,
    RN_MODEL_NAME,
    build_synth_clip,
    chance_accuracy,
    clip_configs_dir,
    crop_spec_of,
    labelled_pair_crops,
    measure_zero_shot_accuracy,
    per_verb_accuracy,
    shipped_weights,
    train_synth_teacher,
)


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    import open_clip

    open_clip.add_model_config(str(clip_configs_dir()))
    # exactly the call a user makes for RN50x16 weights, with eoid's config and file
    # instead
    model, _, preprocess = open_clip.create_model_and_transforms(
        MODEL_NAME, pretrained=str(shipped_weights())
    )
    return model.eval(), open_clip.get_tokenizer(MODEL_NAME)


@pytest.fixture(scope="module")
def fresh_pairs(shipped):
    # a stream and seed the teacher never trained on (it trained on seed 0's "web"
    # stream)
    return labelled_pair_crops(
        list(sample_scenes(60, seed=4242, stream="test")), crop_spec_of(shipped[0])
    )


@pytest.mark.parametrize("model", [MODEL_NAME, RN_MODEL_NAME])
def test_shipped_checkpoint_is_small_and_documented(model):
    assert shipped_weights(model).stat().st_size < 8 * 2**20
    provenance = json.loads(shipped_weights(model).with_suffix(".json").read_text())
    assert provenance["model"] == model and provenance["zero_shot_accuracy"] > 0.8
    assert {
        "seed",
        "steps",
        "date",
        "command",
        "zero_shot_accuracy_per_verb",
    } <= provenance.keys()
    assert f"--out eoid/data/{model}.safetensors" in provenance["command"]


def test_shipped_teacher_expects_64px_crops_with_clip_normalisation(shipped):
    spec = crop_spec_of(shipped[0])
    assert spec.size == 64 and spec.interpolation == "bicubic"
    assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_shipped_teacher_names_verbs_of_a_fresh_world_far_above_chance(
    shipped, fresh_pairs
):
    model, tokenizer = shipped
    vocab = synth_vocabulary()
    accuracy = measure_zero_shot_accuracy(
        model, fresh_pairs.crops, fresh_pairs.labels, vocab, tokenizer
    )
    chance = chance_accuracy(fresh_pairs.labels, vocab)
    assert chance < 0.35 and accuracy > 0.75


def test_shipped_teacher_knows_the_verbs_unseen_in_the_ua_setting(shipped, fresh_pairs):
    model, tokenizer = shipped
    vocab = synth_vocabulary()
    per_verb = per_verb_accuracy(model, tokenizer, fresh_pairs, vocab)
    for verb in vocab.unseen_verbs("ua"):
        assert per_verb[vocab.verbs[verb]] > 0.6, (vocab.verbs[verb], per_verb)


def test_shipped_teacher_loads_through_the_cache_teacher_as_bundled_weights():
    from eoid.teacher_cache.teacher import load_teacher

    teacher = load_teacher(MODEL_NAME, "bundled")
    assert teacher.crop_spec.size == 64 and teacher.weights_id.startswith("sha256:")


def test_the_second_teacher_is_a_resnet_that_names_fresh_verbs_far_above_chance(
    fresh_pairs,
):
    from open_clip.modified_resnet import ModifiedResNet

    from eoid.teacher_cache.teacher import load_teacher

    teacher = load_teacher(RN_MODEL_NAME, "bundled")
    assert (
        isinstance(teacher.model.visual, ModifiedResNet)
        and teacher.crop_spec.size == 64
    )
    vocab = synth_vocabulary()
    accuracy = measure_zero_shot_accuracy(
        teacher.model, fresh_pairs.crops, fresh_pairs.labels, vocab, teacher.tokenizer
    )
    assert accuracy > 0.75 > 0.35 > chance_accuracy(fresh_pairs.labels, vocab)


class _OneHotClip:
    """A stand-in CLIP: text embedding = one-hot of the prompt's HOI, image embedding
    read from pixels.
    """

    def eval(self):
        return self

    def encode_text(self, tokens):
        return torch.eye(20)[tokens]

    def encode_image(self, crops):
        return crops[:, 0, 0, :20]


def test_zero_shot_accuracy_uses_the_prior_mask_and_leaves_no_interaction_out():
    vocab = synth_vocabulary()
    index = vocab.hoi_index()
    v, o = (
        {n: i for i, n in enumerate(vocab.verbs)},
        {n: i for i, n in enumerate(vocab.objects)},
    )
    crops = torch.zeros(4, 3, 20, 20)
    labels = np.array(
        [
            [v["carry"], o["sports_ball"]],
            [v["hold"], o["sports_ball"]],
            [v["hold"], o["sports_ball"]],
            [v["no_interaction"], o["kite"]],
        ]
    )
    # 0: strongest prompt is its own HOI -> right
    crops[0, 0, 0, index[v["carry"], o["sports_ball"]]] = 1.0
    # 1: strongest is "riding bicycle", not valid for a ball (masked); next "kicking
    # sports ball" -> wrong
    crops[1, 0, 0, index[v["ride"], o["bicycle"]]] = 1.0
    crops[1, 0, 0, index[v["kick"], o["sports_ball"]]] = 0.5
    crops[1, 0, 0, index[v["hold"], o["sports_ball"]]] = 0.2
    # 2: strongest is "no interaction sports ball" (left out of the teacher's choice);
    # next hold -> right
    crops[2, 0, 0, index[v["no_interaction"], o["sports_ball"]]] = 1.0
    crops[2, 0, 0, index[v["hold"], o["sports_ball"]]] = 0.5
    # 3: a no_interaction pair is not scored at all
    accuracy = measure_zero_shot_accuracy(
        _OneHotClip(),
        crops,
        labels,
        vocab,
        tokenizer=lambda prompts: torch.arange(len(prompts)),
    )
    assert accuracy == pytest.approx(2 / 3)


def test_chance_is_one_over_the_object_s_valid_verbs_without_no_interaction():
    vocab = synth_vocabulary()
    v, o = (
        {n: i for i, n in enumerate(vocab.verbs)},
        {n: i for i, n in enumerate(vocab.objects)},
    )
    # sports_ball: carry, hold, kick, look_at, throw (5); bicycle: look_at, push, ride
    # (3)
    labels = np.array([[v["hold"], o["sports_ball"]], [v["ride"], o["bicycle"]]])
    assert chance_accuracy(labels, vocab) == pytest.approx((1 / 5 + 1 / 3) / 2)


def test_a_two_step_training_run_is_reproducible_and_loads_strictly(tmp_path):
    kwargs = dict(num_web_images=12, num_eval_images=6, batch_size=8, progress=False)
    a = train_synth_teacher(tmp_path / "a" / "t.safetensors", seed=5, steps=2, **kwargs)
    train_synth_teacher(tmp_path / "b" / "t.safetensors", seed=5, steps=2, **kwargs)
    assert (tmp_path / "a" / "t.safetensors").read_bytes() == (
        tmp_path / "b" / "t.safetensors"
    ).read_bytes()
    saved = json.loads((tmp_path / "a" / "t.json").read_text())
    assert saved["steps"] == 2 and saved["seed"] == 5 and saved == a
    # open_clip loads it with strict=True
    build_synth_clip(weights=tmp_path / "a" / "t.safetensors")
