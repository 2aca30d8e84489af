"""Training continues exactly after --resume, and N gloo processes equal one process of
N x batch.
"""

import json
import os
import subprocess
import sys

import pytest

from eoid.config import TrainConfig
from eoid.config_loading import load_config
from eoid.devices import World
from eoid.pipeline.run_train import run_train


def _cfg(world, out, *sets, **flags):
    paths = world["paths"]
    return load_config(
        TrainConfig,
        None,
        world["sets"]
        + ("data.setting=ua", "loss.a_u_only=true", "optim.batch_size=4", *sets),
        cache=str(world["cache"]),
        out=str(out),
        data__train_annotations=str(paths.train_json),
        data__train_images=str(paths.image_dir),
        **flags,
    )


def _losses(run):
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [(r["iteration"], r["loss"]) for r in rows if "iteration" in r]


def test_resume_continues_with_the_same_losses_as_an_uninterrupted_run(world, tmp_path):
    run_train(_cfg(world, tmp_path / "straight", "optim.epochs=2"), World())
    run_train(_cfg(world, tmp_path / "split", "optim.epochs=1"), World())
    run_train(_cfg(world, tmp_path / "split", "optim.epochs=2", resume=True), World())
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert len(straight) == len(split) > 8
    # the second epoch is computed after a reload from checkpoint.pt, and equals the
    # straight run
    assert split == straight


@pytest.mark.slow
def test_two_gloo_processes_give_the_first_losses_of_one_process_with_the_same_global_batch(
    world, tmp_path
):
    paths = world["paths"]
    common = [
        "--cache",
        str(world["cache"]),
        "--annotations",
        str(paths.train_json),
        "--images",
        str(paths.image_dir),
        "--setting",
        "ua",
    ]
    # augmentation off: every image of the world has one size, so the padded batch is
    # the same whichever process holds an image (the tiny stem's GroupNorm sees the
    # padding); no dropout, whose masks come from each rank's own generator
    for s in world["sets"] + (
        "loss.a_u_only=true",
        "optim.max_iters=2",
        "optim.epochs=1",
        "augment.enabled=false",
        "student.dropout=0.0",
    ):
        common += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "eoid",
            "train",
            "--out",
            str(tmp_path / "one"),
            *common,
            "--set",
            "optim.batch_size=4",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "eoid",
            "train",
            "--out",
            str(tmp_path / "two"),
            *common,
            "--set",
            "optim.batch_size=2",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    rows_one = [
        json.loads(line)
        for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    ]
    rows_two = [
        json.loads(line)
        for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    ]
    first_one, first_two = rows_one[0], rows_two[0]
    terms = [k for k in first_one if k.startswith("loss")]
    assert len(terms) > 8
    for k in terms:
        assert first_two[k] == pytest.approx(first_one[k], rel=1e-4, abs=1e-6), k
    # after one synchronised step the weights agree too, so the second losses match as
    # well
    assert rows_two[1]["loss"] == pytest.approx(rows_one[1]["loss"], rel=1e-3)
