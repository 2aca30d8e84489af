"""The student model: every preset's shapes, the detach switch, the IS-head switch, DETR
init.
"""

import time

import pytest
import torch
import torch.nn.functional as F

from eoid.errors import CheckpointError, ConfigError, WeightsNotFoundError
from eoid.student.backbone import Backbone, resize_mask
from eoid.student.model import anchor_attention_bias, build_student, load_detr_init
from eoid.student.presets import PRESETS, get_preset
from eoid.student.transformer import sine_position_encoding


@pytest.mark.parametrize(
    "preset",
    [
        "tiny",
        "cdn-s",
        pytest.param("cdn-b", marks=pytest.mark.slow),  # ~7 s on the shared CPU
        pytest.param("cdn-l", marks=pytest.mark.slow),  # ~15 s (ResNet-101)
    ],
)
def test_every_preset_gives_documented_shapes_and_backpropagates(preset):
    torch.manual_seed(0)
    model = build_student(preset, num_objects=5, num_verbs=7, num_queries=6)
    images = torch.randn(1, 3, 64, 96)
    out = model(images, torch.zeros(1, 64, 96, dtype=torch.bool))
    p = get_preset(preset)
    assert out.human_boxes_cxcywh.shape == out.object_boxes_cxcywh.shape == (1, 6, 4)
    assert out.object_logits.shape == (1, 6, 6) and out.verb_logits.shape == (1, 6, 7)
    assert out.interactive_logits.shape == (
        1,
        6,
        2,
    ) and out.interactive_prob().shape == (1, 6)
    assert len(out.aux) == min(p.dec_layers_ho, p.dec_layers_interaction) - 1
    assert all(a.verb_logits.shape == (1, 6, 7) for a in out.aux)
    assert ((out.human_boxes_cxcywh > 0) & (out.human_boxes_cxcywh < 1)).all()
    out.verb_logits.sum().backward()
    assert model.verb_class_embed.weight.grad is not None


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_the_architecture_its_table_names(preset):
    p = get_preset(preset)
    model = build_student(preset, num_objects=5, num_verbs=7)
    t = model.transformer
    assert (
        len(t.encoder.layers),
        len(t.decoder.layers),
        len(t.interaction_decoder.layers),
    ) == (p.enc_layers, p.dec_layers_ho, p.dec_layers_interaction)
    assert model.query_embed.weight.shape == (64, p.hidden_dim)
    assert type(model.backbone.body).__name__ == (
        "ConvStem" if p.backbone == "conv-stem" else "ResNetBody"
    )
    assert sum(
        1 for m in model.backbone.modules() if type(m).__name__ == "Bottleneck"
    ) == {"resnet50": 16, "resnet101": 33}.get(p.backbone, 0)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigError, match="cdn-s"):
        get_preset("cdn-xl")


def test_tiny_preset_trains_a_128px_batch_in_well_under_a_second():
    threads = torch.get_num_threads()
    # the CPU is shared with other jobs; one thread is the stable case
    torch.set_num_threads(1)
    model = build_student("tiny", num_objects=80, num_verbs=117, num_queries=16)
    images, mask = (
        torch.randn(2, 3, 128, 128),
        torch.zeros(2, 128, 128, dtype=torch.bool),
    )
    model(images, mask).verb_logits.sum().backward()  # warm-up
    best = float("inf")
    for _ in range(5):  # best of five
        start = time.perf_counter()
        out = model(images, mask)
        (out.verb_logits.sum() + out.human_boxes_cxcywh.sum()).backward()
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(threads)
    assert best < 0.5


def test_resnet_stem_and_layer1_are_frozen_as_in_detr():
    body = Backbone("resnet18").body
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}


def test_backbone_weights_load_from_a_local_torchvision_state_dict(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    body = Backbone("resnet18", path).body
    assert torch.equal(body.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        Backbone("resnet18", path)
    with pytest.raises(WeightsNotFoundError):
        Backbone("resnet18", tmp_path / "absent.pth")


@pytest.mark.parametrize("detach", [True, False])
def test_detach_stops_interaction_gradients_into_the_human_object_decoder(detach):
    torch.manual_seed(0)
    model = build_student("tiny", 3, 4, num_queries=5, detach=detach)
    out = model(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    # interaction-only loss
    (out.verb_logits.sum() + out.interactive_logits.sum()).backward()
    ho = [p.grad for p in model.transformer.decoder.parameters()] + [
        model.query_embed.weight.grad
    ]
    leaked = sum(0.0 if g is None else g.abs().sum().item() for g in ho)
    assert (leaked == 0) == detach
    # the encoder memory is not detached: the encoder still learns from the interaction
    # loss
    assert model.transformer.encoder.layers[0].linear1.weight.grad.abs().sum() > 0


def test_is_head_can_sit_on_the_human_object_decoder():
    torch.manual_seed(0)
    model = build_student("tiny", 3, 4, num_queries=5, is_head="human_object")
    out = model(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    out.interactive_logits.sum().backward()
    assert model.transformer.interaction_decoder.layers[0].linear1.weight.grad is None
    with pytest.raises(ConfigError, match="is_head"):
        build_student("tiny", 3, 4, is_head="encoder")


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_the_padding_mask_is_resized_as_torch_nearest_interpolation(stride):
    # DETR resizes the mask with F.interpolate; resize_mask must pick the same cells for
    # every map size a stride-8/16/32 backbone gives (ceil(H / stride)), padded rows
    # included
    sizes = list(range(1, 300)) + [479, 800, 1066, 1333]
    for size in sizes:
        mask = torch.arange(size)[None, :, None].expand(1, size, 3) % 3 == 0
        cells = -(-size // stride)
        expected = F.interpolate(mask[:, None].float(), size=(cells, 3))[:, 0].bool()
        assert torch.equal(resize_mask(mask, cells, 3), expected), size


def test_a_student_without_is_head_has_no_is_weights_and_outputs_none():
    # is_head "none" is how CDN's released weights (no is_embed) are held
    model = build_student("tiny", 3, 4, num_queries=5, is_head="none")
    assert model.is_embed is None and not any(
        k.startswith("is_embed") for k in model.state_dict()
    )
    out = model(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    assert out.interactive_logits is None and all(
        a.interactive_logits is None for a in out.aux
    )
    assert out.verb_logits.shape == (1, 5, 4)
    with pytest.raises(ConfigError, match="use_interactive_score = false"):
        out.interactive_prob()


def test_anchor_bias_centres_human_heads_on_the_human_anchor_and_the_rest_on_the_object():
    # cx, cy, w, h
    logit = torch.logit(torch.tensor([[0.25, 0.2, 0.2, 0.2], [0.75, 0.7, 0.2, 0.2]]))
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, 6:] = True  # two padded columns
    bias = anchor_attention_bias(logit[:1], logit[1:], mask, heads=4).view(
        1, 4, 1, 8, 8
    )
    # cell centres run over the 6 unpadded columns; the peak sits on the cell nearest
    # the anchor
    best = [divmod(int(bias[0, h, 0, :, :6].argmax()), 6) for h in range(4)]
    assert best[:2] == [(1, 1), (1, 1)] and best[2:] == [(5, 4), (5, 4)]
    assert torch.isinf(bias[..., 6:]).all() and torch.isfinite(bias[..., :6]).all()


def test_local_attention_makes_each_query_read_around_its_anchor():
    # features changed under query 0's anchor move query 0's output of a decoder layer,
    # not query 1's (one layer: its self-attention comes before the cross-attention)
    torch.manual_seed(0)
    model = build_student("tiny", 3, 4, num_queries=2).eval()
    layer = model.transformer.decoder.layers[0]
    anchors = torch.logit(
        torch.tensor([[0.2, 0.2, 0.15, 0.15], [0.8, 0.8, 0.15, 0.15]])
    )
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    bias = anchor_attention_bias(anchors, anchors, mask, heads=4)
    memory, pos = torch.randn(1, 256, 64), torch.zeros(1, 256, 64)
    changed = memory.view(1, 16, 16, 64).clone()
    # the cells around (0.2, 0.2)
    changed[:, 1:5, 1:5] += 3.0
    query_pos = model.query_embed.weight[None]
    with torch.no_grad():
        tgt = torch.zeros_like(query_pos)
        a = layer(tgt, memory, mask.flatten(1), pos, query_pos, bias)
        b = layer(tgt, changed.view(1, 256, 64), mask.flatten(1), pos, query_pos, bias)
        unbiased = layer(tgt, changed.view(1, 256, 64), mask.flatten(1), pos, query_pos)
    moved = (a - b).abs().sum(-1)[0]
    assert moved[0] > 20 * moved[1]
    # without the bias both move
    assert (a - unbiased).abs().sum(-1)[0, 1] > 20 * moved[1]
    with pytest.raises(ConfigError, match="box_anchors"):
        from eoid.student.model import CDN

        CDN(model.backbone, model.transformer, 3, 4, 2, local_attention=True)


def test_sine_encoding_ignores_padding():
    # the unpadded left part of a padded map is encoded as if it were the whole map
    mask = torch.zeros(1, 4, 6, dtype=torch.bool)
    mask[:, :, 3:] = True
    padded = sine_position_encoding(mask, 8)[..., :3]
    alone = sine_position_encoding(torch.zeros(1, 4, 3, dtype=torch.bool), 8)
    assert torch.allclose(padded, alone, atol=1e-5)


def _fake_detr(model, num_dec=6, num_queries=100):
    """A DETR-format state dict shaped for `model` (our tiny widths), with recognisable
    values.
    """
    own = model.state_dict()
    detr = {}
    for k, v in own.items():
        if k.startswith("backbone.body."):
            detr["backbone.0.body." + k[len("backbone.body.") :]] = torch.full_like(
                v, 0.5
            )
        elif k.startswith(("input_proj.", "transformer.encoder.")):
            detr[k] = torch.full_like(v, 0.25)
        elif k.startswith("transformer.decoder.layers.0."):
            rest = k[len("transformer.decoder.layers.0.") :]
            for i in range(num_dec):
                detr[f"transformer.decoder.layers.{i}.{rest}"] = torch.full_like(
                    v, float(i)
                )
        elif k.startswith("transformer.decoder.norm."):
            detr[k] = torch.full_like(v, 7.0)
        elif k.startswith("sub_bbox_embed."):
            detr["bbox_embed." + k[len("sub_bbox_embed.") :]] = torch.full_like(v, 3.0)
    d = own["query_embed.weight"].shape[1]
    detr["query_embed.weight"] = (
        torch.arange(num_queries, dtype=torch.float32)[:, None].expand(-1, d).clone()
    )
    detr["class_embed.weight"] = (
        torch.arange(92, dtype=torch.float32)[:, None].expand(-1, d).clone()
    )
    detr["class_embed.bias"] = torch.arange(92, dtype=torch.float32)
    return detr


def test_detr_init_maps_classes_queries_and_decoders(tmp_path):
    torch.manual_seed(0)
    model = build_student("tiny", num_objects=3, num_verbs=4, num_queries=8)
    path = tmp_path / "detr.pth"
    torch.save({"model": _fake_detr(model)}, path)
    verb_before = model.verb_class_embed.weight.clone()
    left = load_detr_init(model, path, coco_ids_of_objects=[1, 18, 90])
    sd = model.state_dict()
    # + DETR's no-object row
    assert sd["obj_class_embed.bias"].tolist() == [1, 18, 90, 91]
    # first 8 of DETR's 100
    assert sd["query_embed.weight"][:, 0].tolist() == list(range(8))
    # first L layers
    assert (sd["transformer.decoder.layers.1.linear1.weight"] == 1).all()
    assert (sd["transformer.interaction_decoder.layers.1.linear1.weight"] == 1).all()
    assert (sd["obj_bbox_embed.layers.0.weight"] == 3).all()
    assert torch.equal(model.verb_class_embed.weight, verb_before)
    assert "verb_class_embed.weight" in left and "is_embed.weight" in left


def test_detr_init_can_leave_the_interaction_decoder_random_like_the_original(tmp_path):
    model = build_student("tiny", 3, 4, num_queries=8)
    path = tmp_path / "detr.pth"
    torch.save(_fake_detr(model), path)  # a bare state dict is accepted too
    left = load_detr_init(model, path, [1, 2, 3], init_interaction_decoder=False)
    assert "transformer.interaction_decoder.layers.0.linear1.weight" in left


def test_detr_init_refuses_missing_pickled_and_mismatched_files(tmp_path):
    model = build_student("tiny", 3, 4, num_queries=8)
    with pytest.raises(WeightsNotFoundError):
        load_detr_init(model, tmp_path / "absent.pth", [1, 2, 3])
    import argparse

    path = tmp_path / "with_args.pth"
    torch.save({"model": _fake_detr(model), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match="cannot be read as tensors only") as err:
        load_detr_init(model, path, [1, 2, 3])
    # never advise loading it unsafely
    assert "weights_only=False" not in str(err.value)
    torch.save(_fake_detr(build_student("tiny", 3, 4, num_queries=8)), path)
    other = build_student("cdn-s", 3, 4, num_queries=8)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_detr_init(other, path, [1, 2, 3])
