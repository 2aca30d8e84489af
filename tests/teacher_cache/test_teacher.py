import pytest
import torch

from eoid.errors import ConfigError, WeightsNotFoundError
from eoid.teacher_cache.teacher import load_teacher


def test_weights_from_a_file_load_into_the_model_in_eval_mode(
    tiny_teacher, tiny_weights
):
    sd = torch.load(tiny_weights, weights_only=True)
    got = tiny_teacher.model.state_dict()
    assert all(torch.equal(sd[k], got[k]) for k in sd)
    assert not tiny_teacher.model.training and tiny_teacher.weights_id.startswith(
        "sha256:"
    )


def test_embeddings_are_unit_length_float32(tiny_teacher):
    img = tiny_teacher.encode_images(torch.randn(3, 3, 32, 32))
    txt = tiny_teacher.encode_texts(["a picture of person holding cup", "x"])
    assert img.dtype == txt.dtype == torch.float32
    assert torch.allclose(img.norm(dim=1), torch.ones(3), atol=1e-5)
    assert txt.shape == (2, tiny_teacher.embed_dim)


def test_the_crop_size_and_normalisation_come_from_the_model(tiny_teacher):
    spec = tiny_teacher.crop_spec
    assert (
        spec.size == 32
        and spec.interpolation == "bicubic"
        and spec.mean[0] == pytest.approx(0.48145466)
    )


def test_a_missing_tag_offline_names_the_model_and_how_to_pass_a_file(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip, no HF cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError) as err:
        load_teacher("RN50", "openai", "cpu")
    msg = str(err.value)
    assert "'RN50'" in msg and "could not be found" in msg and "--clip-weights" in msg
    assert "RN50x16-quickgelu" in msg


def test_a_missing_weights_file_is_a_clear_error(tmp_path, tiny_config):
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        load_teacher(str(tiny_config), str(tmp_path / "nope.safetensors"), "cpu")


def test_an_unknown_model_name_suggests_close_names():
    with pytest.raises(ConfigError, match="RN50x16"):
        load_teacher("RN50x61", "none", "cpu")


def test_weights_of_another_architecture_are_refused_with_the_file_named(
    tmp_path, tiny_config
):
    path = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(2)}, path)
    with pytest.raises(WeightsNotFoundError, match="other.pt"):
        load_teacher(str(tiny_config), str(path), "cpu")


# ---- precision and gamma ----


def test_auto_precision_is_the_originals_fp16_on_a_gpu_and_fp32_on_a_cpu():
    from eoid.teacher_cache.teacher import resolve_precision

    assert (
        resolve_precision("auto", "cuda:0") == "fp16"
        and resolve_precision("auto", "cpu") == "fp32"
    )
    assert (
        resolve_precision("bf16", "cuda") == "bf16"
        and resolve_precision("fp32", "cuda") == "fp32"
    )
    # as the original's clip.load on a CPU
    assert resolve_precision("fp16", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="teacher.precision = 'half'"):
        resolve_precision("half", "cuda")


def test_fp16_keeps_float16_weights_and_float32_norms_as_the_originals_clip_load(
    tiny_config, tiny_weights
):
    # OpenAI's convert_weights: conv, linear and attention weights and the projections
    # in float16; LayerNorm (computed in float32) and logit_scale stay float32
    fp16 = load_teacher(str(tiny_config), str(tiny_weights), "cpu", "fp16")
    fp32 = load_teacher(str(tiny_config), str(tiny_weights), "cpu", "fp32")
    dtypes = {n: p.dtype for n, p in fp16.model.named_parameters()}
    assert dtypes["visual.conv1.weight"] == dtypes["visual.proj"] == torch.float16
    assert dtypes["text_projection"] == torch.float16
    assert dtypes["visual.ln_post.weight"] == dtypes["logit_scale"] == torch.float32
    assert fp16.input_dtype == torch.float16 and fp16.autocast_dtype is None
    crops = torch.randn(4, 3, 32, 32)
    a, b = fp16.encode_images(crops), fp32.encode_images(crops)
    assert a.dtype == torch.float32 and torch.allclose(
        a.norm(dim=1), torch.ones(4), atol=1e-5
    )
    assert 0 < (a - b).abs().max() < 1e-2  # float16 rounding, nothing else


def test_gamma_is_a_number_or_the_weights_own_logit_scale(tiny_teacher):
    from eoid.teacher_cache.teacher import resolve_gamma

    scale = float(tiny_teacher.model.logit_scale.exp())
    assert (
        resolve_gamma(100, tiny_teacher) == 100.0
        and resolve_gamma("50", tiny_teacher) == 50.0
    )
    assert resolve_gamma("model", tiny_teacher) == pytest.approx(scale)
    with pytest.raises(ConfigError, match="teacher.gamma = 'modle'"):
        resolve_gamma("modle", tiny_teacher)


def test_the_shipped_synthetic_teacher_learned_a_scale_of_about_16():
    from eoid.teacher_cache.teacher import resolve_gamma

    teacher = load_teacher("eoid-synth-clip", "bundled", "cpu")
    assert resolve_gamma("model", teacher) == pytest.approx(15.92, abs=0.01)


def test_a_local_weights_file_takes_the_normalisation_its_models_tags_agree_on():
    from eoid.teacher_cache.clip_sources import _tags_preprocess

    # SigLIP's webli weights are normalised with mean = std = 0.5, not CLIP's defaults
    assert _tags_preprocess("ViT-B-16-SigLIP")["mean"] == (0.5, 0.5, 0.5)
    assert _tags_preprocess("RN50x16-quickgelu")["mean"][0] == pytest.approx(0.48145466)
    # no tags: the model config's own
    assert _tags_preprocess("tiny-clip") == {}


def test_a_hugging_face_tokenizer_is_read_from_local_files_or_refused_in_one_line(
    tmp_path,
):
    # a SigLIP-style config whose text tower uses a Hugging Face tokenizer (SigLIP's own
    # name)
    config = tmp_path / "tiny-hf-text.json"
    config.write_text(
        '{"embed_dim": 8, "custom_text": true, "vision_cfg": {"image_size": 32,'
        ' "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}, "text_cfg":'
        ' {"context_length": 8, "vocab_size": 32000, "width": 32, "heads": 2, "layers":'
        ' 1, "hf_tokenizer_name": "timm/ViT-B-16-SigLIP"}}'
    )
    with pytest.raises((ConfigError, WeightsNotFoundError), match="tokenizer"):
        load_teacher(str(config), "none")
