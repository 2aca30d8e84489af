"""`eoid export` and `eoid predict --onnx`: the ONNX graph computes what the torch
student does.

Parity: torch and onnxruntime agree within 1e-4 on three image sizes (one a padded batch
of two), for the tiny and the CDN-S preset; `predict` writes the same triplets either
way.
"""

import importlib.util
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from eoid.checkpoint import save_checkpoint
from eoid.cli import main
from eoid.config import AugmentConfig, StudentConfig, TrainConfig, to_dict
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.student.model import build_student

# (batch, height, width); batch 2 is padded
SIZES = [(1, 64, 96), (2, 96, 128), (1, 130, 70)]


def student_checkpoint(path, preset, is_head="interaction", test_size=96):
    """A random-weight eoid checkpoint of `preset` on HICO-DET's vocabulary, tested at
    `test_size` px.
    """
    torch.manual_seed(0)
    vocab = load_vocabulary("hico-det")
    model = build_student(preset, vocab.num_objects, vocab.num_verbs, 8, is_head)
    cfg = TrainConfig(
        student=StudentConfig(preset=preset, num_queries=8, is_head=is_head),
        augment=AugmentConfig(test_size=test_size, max_size=160),
    )
    save_checkpoint(
        path,
        model=model.state_dict(),
        config=to_dict(cfg),
        vocabulary=vocab.to_json(),
        epoch=1,
        iteration=1,
    )
    return path, model.eval()


def export(tmp_path_factory, preset, is_head="interaction"):
    folder = tmp_path_factory.mktemp(f"export_{preset}_{is_head}")
    checkpoint, model = student_checkpoint(folder / "checkpoint.pt", preset, is_head)
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(folder / "model.onnx"),
        ],
    )
    assert result.exit_code == 0, result.output
    return {
        "checkpoint": checkpoint,
        "onnx": folder / "model.onnx",
        "model": model,
        "output": result.output,
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return export(tmp_path_factory, "tiny")


@pytest.fixture(scope="module")
def cdn_s(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return export(tmp_path_factory, "cdn-s")


def batch(b, h, w):
    torch.manual_seed(h * w)
    images, mask = torch.randn(b, 3, h, w), torch.zeros(b, h, w, dtype=torch.bool)
    # the second image is smaller: padded right and bottom, as pad_batch does
    if b == 2:
        mask[1, h * 2 // 3 :, :] = True
        mask[1, :, w * 3 // 5 :] = True
        images[1][:, mask[1]] = 0
    return images, mask


def assert_parity(exported):
    from eoid.pipeline.evaluation.onnx_student import OnnxStudent

    graph = OnnxStudent(exported["onnx"])
    names = graph.output_names
    for size in SIZES:
        images, mask = batch(*size)
        with torch.no_grad():
            ours = exported["model"](images, mask)
        theirs = graph(images, mask)
        for name in names:
            diff = (getattr(ours, name) - getattr(theirs, name)).abs().max().item()
            assert diff < 1e-4, (size, name, diff)
    return names


def test_tiny_student_runs_the_same_in_onnxruntime_on_three_sizes(tiny):
    names = assert_parity(tiny)
    assert names == [
        "human_boxes_cxcywh",
        "object_boxes_cxcywh",
        "object_logits",
        "verb_logits",
        "interactive_logits",
    ]
    assert "onnxruntime and torch agree within" in tiny["output"]


@pytest.mark.slow  # exporting CDN-S takes ~30 s on the shared CPU
def test_cdn_s_student_runs_the_same_in_onnxruntime_on_three_sizes(cdn_s):
    assert_parity(cdn_s)


def test_a_student_without_is_head_exports_without_that_output(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    exported = export(tmp_path_factory, "tiny", is_head="none")
    assert assert_parity(exported) == [
        "human_boxes_cxcywh",
        "object_boxes_cxcywh",
        "object_logits",
        "verb_logits",
    ]


def predict_both_ways(exported, tmp_path):
    images = []
    for i, size in enumerate([(120, 90), (70, 110)]):
        pixels = np.random.default_rng(i).integers(
            0, 255, (*size[::-1], 3), dtype=np.uint8
        )
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
        images.append(str(tmp_path / f"img{i}.png"))
    listings = {}
    for flag in ("--checkpoint", "--onnx"):
        out = tmp_path / flag.strip("-")
        result = CliRunner().invoke(
            main,
            [
                "predict",
                *images,
                flag,
                str(exported[flag.strip("-")]),
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.glob("*.png")) == [
            "0000_img0.png",
            "0001_img1.png",
        ]
        listings[flag] = json.loads((out / "predictions.json").read_text())
        # the ONNX file carries the checkpoint's recipe: 96 px, as the checkpoint's own
        # run
        assert "test_size = 96" in (out / "predict_config.toml").read_text()
    return listings["--checkpoint"], listings["--onnx"]


def assert_same_triplets(torch_listing, onnx_listing):
    assert len(torch_listing) == len(onnx_listing)
    for a, b in zip(torch_listing, onnx_listing):
        assert (
            a["file_name"] == b["file_name"]
            and len(a["triplets"]) == len(b["triplets"]) > 0
        )
        for s, t in zip(a["triplets"], b["triplets"]):
            assert (s["verb"], s["object"]) == (t["verb"], t["object"])
            assert abs(s["score"] - t["score"]) <= 2e-4
            assert np.allclose(s["human_box"], t["human_box"], atol=0.2)
            assert np.allclose(s["object_box"], t["object_box"], atol=0.2)


def test_predict_with_onnx_writes_the_same_triplets_as_torch_tiny(tiny, tmp_path):
    assert_same_triplets(*predict_both_ways(tiny, tmp_path))


@pytest.mark.slow
def test_predict_with_onnx_writes_the_same_triplets_as_torch_cdn_s(cdn_s, tmp_path):
    assert_same_triplets(*predict_both_ways(cdn_s, tmp_path))


def test_export_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    checkpoint, _ = student_checkpoint(tmp_path / "checkpoint.pt", "tiny")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnx" else real(name, *a),
    )
    result = CliRunner().invoke(
        main,
        ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")],
    )
    assert result.exit_code == 1 and "pip install 'eoid[export]'" in result.output
    assert (
        len(result.output.strip().splitlines()) == 1
        and not (tmp_path / "m.onnx").exists()
    )


def test_predict_onnx_without_onnxruntime_says_how_to_install_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main,
        [
            "predict",
            str(tmp_path / "a.png"),
            "--onnx",
            str(tmp_path / "m.onnx"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1 and "pip install 'eoid[export]'" in result.output


def test_an_onnx_file_not_written_by_eoid_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), tmp_path / "other.onnx")
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main,
        [
            "predict",
            str(tmp_path / "a.png"),
            "--onnx",
            str(tmp_path / "other.onnx"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert (
        result.exit_code == 1
        and "not a student written by `eoid export`" in result.output
    )


def test_an_opset_the_exporter_cannot_write_is_refused(tiny, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--checkpoint",
            str(tiny["checkpoint"]),
            "--out",
            str(tmp_path / "m.onnx"),
            "--opset",
            "9",
        ],
    )
    assert (
        result.exit_code == 1
        and "--opset 9" in result.output
        and not (tmp_path / "m.onnx").exists()
    )
