"""`student.init_from`: a training run starts from an eoid checkpoint, e.g. an imported
CDN one.
"""

import json

import torch
from click.testing import CliRunner

from eoid.checkpoint import load_checkpoint, save_checkpoint
from eoid.cli import main


def _train(world, out, *sets):
    paths = world["paths"]
    args = [
        "train",
        "--out",
        str(out),
        "--annotations",
        str(paths.train_json),
        "--images",
        str(paths.image_dir),
        "--set",
        "loss.distill=0",
        "--set",
        "optim.epochs=1",
        "--set",
        "optim.max_iters=1",
    ]
    for s in world["sets"] + sets:
        args += ["--set", s]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def test_a_run_starts_from_init_from_and_a_head_the_checkpoint_lacks_starts_fresh(
    world, tmp_path
):
    # run a trains one step; its weights without the IS head stand in for an imported
    # CDN checkpoint (is_head "none"). Run b starts from them with learning rates 0, so
    # after its step every weight still equals a's, and its IS head is b's own fresh
    # one.
    _train(world, tmp_path / "a")
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    config = {**a["config"], "student": {**a["config"]["student"], "is_head": "none"}}
    save_checkpoint(
        tmp_path / "cdn_like.pt",
        model={k: v for k, v in a["model"].items() if not k.startswith("is_embed.")},
        config=config,
        vocabulary=a["vocabulary"],
        epoch=0,
        iteration=0,
    )
    _train(
        world,
        tmp_path / "b",
        f"student.init_from={json.dumps(str(tmp_path / 'cdn_like.pt'))}",
        "optim.lr=0.0",
        "optim.lr_backbone=0.0",
    )
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert b["config"]["student"]["is_head"] == "interaction"
    for key, value in b["model"].items():
        if not key.startswith("is_embed."):
            assert torch.equal(value, a["model"][key]), key
