"""`eoid import-checkpoint` on files laid out as the original EoID / CDN main.py writes
them.

The originals are built from eoid's own CDN-S student by renaming its keys back to the
original's (`backbone.body.` -> `backbone.0.body.`, CDN: no `is_embed`; names from EoID
models/EoID.py and CDN models/hoi.py, see /work/notes/import_keys.md), wrapped in the
original's {model, optimizer, lr_scheduler, epoch, args (argparse.Namespace)} (+ EoID's
`criterion` holding the CLIP teacher), in the zip format (torch >= 1.6, EoID) and the
legacy one (torch 1.5, CDN).
"""

import argparse
import pathlib
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from eoid.checkpoint import evaluation_recipe, load_checkpoint
from eoid.cli import main
from eoid.config import StudentConfig, TrainConfig
from eoid.devices import World
from eoid.errors import CheckpointError, ConfigError
from eoid.pipeline.data.student_models import build_model, model_from_checkpoint
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_import import run_import
from eoid.pipeline.run_train import run_train
from eoid.student.model import build_student

EOID_ARGS = dict(  # EoID main.py get_args_parser() with train.sh's values (UA)
    lr=1e-4,
    lr_backbone=1e-5,
    batch_size=4,
    weight_decay=1e-4,
    epochs=90,
    lr_drop=60,
    clip_max_norm=0.1,
    frozen_weights=None,
    backbone="resnet50",
    dilation=False,
    position_embedding="sine",
    enc_layers=6,
    dec_layers_hopd=3,
    dec_layers_interaction=3,
    dim_feedforward=2048,
    hidden_dim=256,
    dropout=0.1,
    nheads=8,
    num_queries=64,
    pre_norm=False,
    masks=False,
    num_obj_classes=80,
    num_verb_classes=117,
    subject_category_id=0,
    verb_loss_type="focal_bce",
    aux_loss=True,
    use_matching=False,
    pretrained="params/detr-r50-pre-2stage-q64.pth",
    dataset_file="hico_ua_st_v1",
    uc_type="uc0",
    hoi_path="data/hico_20160224_det",
    output_dir="output/EoID_ua",
    device="cuda",
    seed=42,
    resume="",
    start_epoch=0,
    eval=False,
    num_workers=2,
    world_size=4,
    dist_url="env://",
    use_nms_filter=True,
    thres_nms=0.7,
    nms_alpha=1.0,
    nms_beta=0.5,
    model="eoid",
    clip_backbone="RN50x16",
    vdetach=True,
    inter_score=True,
    topk=3,
    thres=0.5,
    clip_loss_coef=700.0,
    is_loss_coef=1.0,
    verb_loss_coef=1.6,
    rank=0,
    gpu=0,
    distributed=True,
    dist_backend="nccl",
)
CDN_ARGS = {
    k: v
    for k, v in EOID_ARGS.items()
    if k
    not in (
        "model",
        "clip_backbone",
        "vdetach",
        "inter_score",
        "topk",
        "thres",
        "clip_loss_coef",
        "is_loss_coef",
        "uc_type",
    )
}
CDN_ARGS.update(
    dataset_file="hico", verb_loss_type="focal", verb_loss_coef=2.0, output_dir="logs"
)


def original_state(student: torch.nn.Module, source: str) -> dict:
    """eoid's student state dict in the original's names."""
    state = {}
    for key, value in student.state_dict().items():
        if source == "cdn-official" and key.startswith("is_embed."):
            continue
        state[key.replace("backbone.body.", "backbone.0.body.", 1)] = value.clone()
    return state


def original_file(
    path: Path,
    weights: torch.nn.Module | dict,
    source: str,
    legacy: bool = False,
    **args,
) -> Path:
    """A checkpoint laid out as the original main.py saves it (lines 276-283 of
    EoID's), holding `weights` (a student, renamed by original_state, or an
    original-named state dict)."""
    state = (
        original_state(weights, source)
        if isinstance(weights, torch.nn.Module)
        else weights
    )
    params = [
        torch.nn.Parameter(v.clone())
        for v in list(state.values())[:4]
        if v.is_floating_point()
    ]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 60)
    namespace = argparse.Namespace(
        **{**(EOID_ARGS if source == "eoid-official" else CDN_ARGS), **args}
    )
    content = {
        "model": state,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": 89,
        "args": namespace,
    }
    # EoID also saves the criterion: the fp16 CLIP teacher
    if source == "eoid-official":
        content = {
            **content,
            "criterion": {
                "empty_weight": torch.ones(81),
                "clip.visual.conv1.weight": torch.zeros(8, 3, 3, 3).half(),
                "clip.logit_scale": torch.tensor(4.6).half(),
            },
        }
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def cdn_s():
    torch.manual_seed(0)
    return build_student("cdn-s", 80, 117, 64, "interaction").eval()


def _outputs(model, size=(64, 96)):
    """Outputs on a fixed 2-image batch, the second padded on the right."""
    torch.manual_seed(1)
    images, mask = torch.randn(2, 3, *size), torch.zeros(2, *size, dtype=torch.bool)
    mask[1, :, size[1] * 3 // 4 :] = True
    with torch.no_grad():
        return model.eval()(images, mask)


@pytest.fixture(scope="module")
def source_outputs(cdn_s):
    return _outputs(cdn_s)


@pytest.fixture(scope="module")
def released(tmp_path_factory, cdn_s):
    """The four original files: {(source, "zip" | "legacy"): path}."""
    folder = tmp_path_factory.mktemp("released")
    return {
        (source, fmt): original_file(
            folder / f"{source}_{fmt}.pth", cdn_s, source, fmt == "legacy"
        )
        for source in ("eoid-official", "cdn-official")
        for fmt in ("zip", "legacy")
    }


@pytest.fixture(scope="module")
def imported(tmp_path_factory, released):
    """EoID's zip file (torch 1.9) and CDN's legacy file (torch 1.5) imported: ({source:
    path}, reports).
    """
    folder = tmp_path_factory.mktemp("imported")
    paths, reports = {}, {}
    for source, fmt in (("eoid-official", "zip"), ("cdn-official", "legacy")):
        lines = []
        reports[source] = [
            run_import(
                released[source, fmt],
                source,
                folder / f"{source}.pt",
                None,
                None,
                False,
                lines.append,
            )
        ] + lines
        paths[source] = folder / f"{source}.pt"
    return paths, reports


@pytest.mark.parametrize("source", ["eoid-official", "cdn-official"])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_both_file_formats_pass_the_dry_run(released, source, fmt):
    lines = []
    msg = run_import(
        released[source, fmt], source, None, None, None, True, lines.append
    )
    assert msg.startswith("dry run (--check): every key lands")
    assert (
        f"file: {fmt}" in lines[0] and "args (argparse.Namespace), epoch 89" in lines[0]
    )
    assert (
        "eoid keys left at their fresh init: none" in lines[0]
        and "shape mismatches: none" in lines[0]
    )


def test_eoid_checkpoint_imports_with_outputs_equal_to_the_source_weights(
    imported, source_outputs
):
    paths, reports = imported
    msg, text = reports["eoid-official"]
    assert "wrote" in msg and "--setting ua" in msg
    assert (
        "preset cdn-s" in text and "criterion (EoID's CLIP teacher, 3 tensors)" in text
    )
    assert re.search(
        r"backbone\.0\.body\.layer3\.\* +-> backbone\.body\.layer3\.\* +95\n", text
    )
    model, vocab, config = model_from_checkpoint(paths["eoid-official"], "cpu")
    assert (
        config["student"]["is_head"] == "interaction"
        and config["data"]["setting"] == "ua"
    )
    assert vocab.name == "hico-det"
    ours = _outputs(model)
    for name in (
        "human_boxes_cxcywh",
        "object_boxes_cxcywh",
        "object_logits",
        "verb_logits",
        "interactive_logits",
    ):
        assert torch.equal(getattr(ours, name), getattr(source_outputs, name)), name
    # the recipe evaluate/predict start from is the released test command's: 800 px,
    # top-100, NMS 0.7
    recipe = evaluation_recipe(paths["eoid-official"])
    assert (
        recipe["augment"]["test_size"] == 800 and recipe["augment"]["max_size"] == 1333
    )
    assert recipe["post"]["top_k"] == 100 and recipe["post"]["use_nms"] is True
    assert (
        load_checkpoint(paths["eoid-official"])["extra"]["imported_from"]["epoch"] == 89
    )


def test_cdn_checkpoint_imports_without_an_is_head_and_says_so(
    imported, source_outputs
):
    paths, reports = imported
    assert (
        "CDN has no IS head, so neither has the imported student"
        in reports["cdn-official"][1]
    )
    model, _, config = model_from_checkpoint(paths["cdn-official"], "cpu")
    assert config["student"]["is_head"] == "none" and model.is_embed is None
    assert config["student"]["detach"] is False  # CDN's cascade has no vdetach
    ours = _outputs(model)
    assert ours.interactive_logits is None
    for name in (
        "human_boxes_cxcywh",
        "object_boxes_cxcywh",
        "object_logits",
        "verb_logits",
    ):
        assert torch.equal(getattr(ours, name), getattr(source_outputs, name)), name


def test_vcoco_cdn_checkpoint_drops_the_absent_object_row_and_keeps_100_queries(
    tmp_path,
):
    # CDN V-COCO: --num_obj_classes 81 -> 82 rows: 0..79 objects, 80 "absent object", 81
    # no-object
    torch.manual_seed(0)
    source = build_student("cdn-s", 81, 29, 100, "interaction").eval()
    path = original_file(
        tmp_path / "vcoco.pth",
        source,
        "cdn-official",
        legacy=True,
        dataset_file="vcoco",
        num_obj_classes=81,
        num_verb_classes=29,
        num_queries=100,
    )
    report = []
    run_import(
        path, "cdn-official", tmp_path / "v.pt", None, None, False, report.append
    )
    assert "row 80 (CDN's 'absent object' of role-less verbs) dropped" in report[0]
    ckpt = load_checkpoint(tmp_path / "v.pt")
    assert (
        ckpt["vocabulary"]["name"] == "v-coco"
        and ckpt["config"]["student"]["num_queries"] == 100
    )
    theirs, keep = source.state_dict(), list(range(80)) + [81]
    # same weights -> same outputs (checked on HICO above)
    for key, value in ckpt["model"].items():
        expected = (
            theirs[key][keep] if key.startswith("obj_class_embed.") else theirs[key]
        )
        assert torch.equal(value, expected), key


def test_cdn_matching_head_becomes_the_is_head_on_the_human_object_decoder(
    tmp_path, cdn_s
):
    # CDN --use_matching: matching_embed, Linear(D, 2) on the human-object decoder,
    # index 1 = matched
    state = original_state(cdn_s, "cdn-official")
    state["matching_embed.weight"] = torch.randn(2, 256)
    state["matching_embed.bias"] = torch.randn(2)
    src = original_file(
        tmp_path / "cdn_matching.pth", state, "cdn-official", use_matching=True
    )
    report = []
    run_import(src, "cdn-official", tmp_path / "m.pt", None, None, False, report.append)
    assert "student.is_head = 'human_object'" in report[0]
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["config"]["student"]["is_head"] == "human_object"
    assert torch.equal(ckpt["model"]["is_embed.weight"], state["matching_embed.weight"])


def test_check_prints_the_mapping_and_writes_nothing(tmp_path, released):
    src = released["eoid-official", "zip"]
    result = CliRunner().invoke(
        main,
        [
            "import-checkpoint",
            str(src),
            "--from",
            "eoid-official",
            "--check",
            "--out",
            str(tmp_path / "never.pt"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "transformer.interaction_decoder.*" in result.output
        and "is_embed.*" in result.output
    )
    assert "dry run (--check)" in result.output and not (tmp_path / "never.pt").exists()


def test_a_shape_mismatch_is_reported_and_nothing_is_written(tmp_path, cdn_s):
    state = original_state(cdn_s, "eoid-official")
    # a head eoid builds (256, 256)
    state["sub_bbox_embed.layers.1.weight"] = torch.zeros(256, 128)
    src = original_file(tmp_path / "bad.pth", state, "eoid-official")
    result = CliRunner().invoke(
        main, ["import-checkpoint", str(src), "--from", "eoid-official", "--check"]
    )
    assert result.exit_code == 1
    assert (
        "sub_bbox_embed.layers.1.weight: (256, 128) in the file, (256, 256) in eoid"
        in result.output
    )
    assert "refusing to write" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        main,
        [
            "import-checkpoint",
            str(src),
            "--from",
            "eoid-official",
            "--out",
            str(tmp_path / "out.pt"),
        ],
    )
    assert result.exit_code == 1 and not (tmp_path / "out.pt").exists()


def test_a_missing_and_an_unknown_key_are_both_reported(tmp_path, cdn_s):
    state = original_state(cdn_s, "eoid-official")
    del state["verb_class_embed.bias"]
    state["mystery_head.weight"] = torch.zeros(2)
    src = original_file(tmp_path / "odd.pth", state, "eoid-official")
    report = []
    with pytest.raises(CheckpointError, match="refusing to write"):
        run_import(
            src, "eoid-official", tmp_path / "x.pt", None, None, False, report.append
        )
    assert "original keys with no place in eoid: mystery_head.weight" in report[0]
    assert "eoid keys left at their fresh init: verb_class_embed.bias" in report[0]


class Custom:
    pass


@pytest.mark.parametrize(
    "odd", [pathlib.PosixPath("output/EoID_ua"), Custom()], ids=["path", "class"]
)
def test_any_pickled_object_besides_the_namespace_is_refused(tmp_path, odd):
    # the file is refused while it is read, before any weight is looked at: two tensors
    # do
    weights = {
        "query_embed.weight": torch.zeros(64, 256),
        "backbone.0.body.conv1.weight": torch.zeros(1),
    }
    src = original_file(tmp_path / "odd.pth", weights, "eoid-official", output_dir=odd)
    result = CliRunner().invoke(
        main,
        [
            "import-checkpoint",
            str(src),
            "--from",
            "eoid-official",
            "--out",
            str(tmp_path / "x.pt"),
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "holds a pickled" in result.output and type(odd).__name__ in result.output
    # the refusal never advises an unsafe load
    assert "weights_only=False" not in result.output
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("cut", [100, 5000], ids=["garbage", "truncated"])
def test_a_damaged_file_is_refused_as_unreadable(tmp_path, released, cut):
    (tmp_path / "cut.pth").write_bytes(
        released["cdn-official", "legacy"].read_bytes()[:cut]
    )
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        run_import(tmp_path / "cut.pth", "cdn-official", None, None, None, True, print)


def test_the_namespace_is_let_through_for_the_import_only(released):
    # the allowance is scoped: a plain weights_only load still refuses the same file
    # afterwards
    src = released["eoid-official", "zip"]
    run_import(src, "eoid-official", None, None, None, True, lambda _: None)
    with pytest.raises(Exception, match="argparse.Namespace"):
        torch.load(src, weights_only=True)


@pytest.mark.parametrize(
    "preset, match",
    [
        ("cdn-l", "disagrees with the weights"),
        ("tiny", "no original checkpoint fits the tiny preset"),
    ],
)
def test_a_preset_the_weights_do_not_have_is_refused(tmp_path, released, preset, match):
    src = released["eoid-official", "zip"]
    with pytest.raises(ConfigError, match=match):
        run_import(
            src, "eoid-official", tmp_path / "x.pt", preset, None, False, lambda _: None
        )


def test_the_wrong_source_or_dataset_is_refused(tmp_path, released):
    src = released["eoid-official", "zip"]
    with pytest.raises(CheckpointError, match="Pass --from eoid-official"):
        run_import(
            src, "cdn-official", tmp_path / "x.pt", None, None, False, lambda _: None
        )
    with pytest.raises(ConfigError, match="Pass --dataset hico-det"):
        run_import(
            src,
            "eoid-official",
            tmp_path / "x.pt",
            None,
            "v-coco",
            False,
            lambda _: None,
        )


def test_args_the_weights_cannot_show_are_checked(tmp_path, cdn_s):
    src = original_file(
        tmp_path / "EoID.pth", cdn_s, "eoid-official", nheads=4, dilation=True
    )
    with pytest.raises(CheckpointError, match="args.nheads = 4.*args.dilation = True"):
        run_import(
            src, "eoid-official", tmp_path / "x.pt", None, None, False, lambda _: None
        )


def test_a_detr_file_is_sent_to_detr_init(tmp_path):
    torch.save(
        {
            "model": {
                "class_embed.weight": torch.zeros(92, 256),
                "backbone.0.body.conv1.weight": torch.zeros(64, 3, 7, 7),
            }
        },
        tmp_path / "detr.pth",
    )
    with pytest.raises(CheckpointError, match="student.detr_init"):
        run_import(
            tmp_path / "detr.pth",
            "cdn-official",
            tmp_path / "x.pt",
            None,
            None,
            False,
            print,
        )


def test_a_training_run_can_start_from_an_imported_cdn_checkpoint(imported, cdn_s):
    # student.init_from: every CDN weight lands; the IS head CDN lacks starts fresh
    cfg = StudentConfig(
        preset="cdn-s",
        is_head="interaction",
        init_from=str(imported[0]["cdn-official"]),
    )
    torch.manual_seed(5)
    model = build_model(cfg, load_vocabulary("hico-det"), "cpu")
    theirs = cdn_s.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]) != key.startswith("is_embed."), key


def test_init_from_refuses_another_preset(imported):
    cfg = StudentConfig(preset="cdn-b", init_from=str(imported[0]["cdn-official"]))
    with pytest.raises(
        CheckpointError,
        match="student.preset: checkpoint has 'cdn-s', this run 'cdn-b'",
    ):
        build_model(cfg, load_vocabulary("hico-det"), "cpu")


def test_a_student_without_is_head_cannot_be_trained(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), student=StudentConfig(is_head="none"))
    with pytest.raises(ConfigError, match="student.is_head = 'none'.*init_from"):
        run_train(cfg, World())
