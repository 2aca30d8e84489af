"""An error in a DataLoader worker ends the command at once: the worker's own one-line
message, exit 1.

Before: `eoid train` with 2 loader workers on a truncated PNG printed the worker's
10-line traceback and then hung forever at exit (multiprocessing joins its daemon
workers after a SIGTERM, which training workers ignore so that a stop signal reaches the
main process only).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from eoid.cli import main
from eoid.errors import DataError

from tiny_train import ROOT, WORLD, cache_config, subprocess_env, train_command

BROKEN = 5


def _truncated_world(synth: Path, tmp: Path) -> tuple[Path, str]:
    """A copy of the world whose record BROKEN's PNG keeps a valid header but only half
    its bytes.
    """
    world = tmp / "world"
    shutil.copytree(synth, world)
    name = json.loads((world / "train.json").read_text())[BROKEN]["file_name"]
    image = world / "images" / name
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    return world, name


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(status.parent.name))
    return found


def _describe(pids: set[int]) -> list[str]:
    """Each process as "pid state cmdline", for a failure message."""
    found = []
    for pid in sorted(pids):
        proc = Path("/proc") / str(pid)
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (
                (proc / "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        found.append(f"{pid} {state} {cmdline.strip()}")
    return found


def test_train_with_two_loader_workers_and_a_truncated_png_ends_in_seconds_with_one_line(
    synth, tmp_path
):
    world, name = _truncated_world(synth, tmp_path)
    cmd = train_command(world, tmp_path / "run", 1, "optim.num_workers=2")
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail("eoid train hung after a loader worker's error")
    assert time.monotonic() - start < 60
    assert proc.returncode == 1, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and name in errors[0] and "truncated" in errors[0]
    assert "Traceback" not in stderr and "Caught DataError" not in stderr
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_worker_error_in_training_leaves_no_worker_process_behind(synth, tmp_path):
    from eoid.pipeline.run_train import run_train

    from tiny_train import train_config

    world, name = _truncated_world(synth, tmp_path)
    cfg = train_config(world, tmp_path / "run", 1, "optim.num_workers=2")
    # processes of earlier tests in this pytest are not ours
    before = set(_children(os.getpid()))
    with pytest.raises(DataError) as err:
        run_train(cfg, WORLD)
    assert "\n" not in str(err.value) and name in str(err.value)
    deadline = time.monotonic() + 10
    while set(_children(os.getpid())) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _describe(set(_children(os.getpid())) - before) == []


def test_cache_teacher_with_crop_workers_reports_a_truncated_image_in_one_line(
    synth, clip_weights, tmp_path
):
    from eoid.pipeline.run_cache import run_cache

    world, name = _truncated_world(synth, tmp_path)
    cfg = cache_config(world, clip_weights, tmp_path / "cache", num_workers=2)
    with pytest.raises(DataError) as err:
        run_cache(cfg, WORLD)
    msg = str(err.value)
    assert "\n" not in msg and name in msg and "--skip-bad" in msg
    assert not msg.startswith("Caught")


def test_inference_with_loader_workers_reports_a_truncated_image_in_one_line(
    synth, tmp_path
):
    from eoid.config import AugmentConfig
    from eoid.pipeline.evaluation.inference import model_outputs

    world, name = _truncated_world(synth, tmp_path)
    names = [r["file_name"] for r in json.loads((world / "train.json").read_text())][:8]
    paths = [world / "images" / n for n in names]

    class Mean(torch.nn.Module):
        def forward(self, images, masks):
            return images.mean()

    with pytest.raises(DataError) as err:
        for _ in model_outputs(
            Mean(),
            paths,
            names,
            AugmentConfig(test_size=96, max_size=128),
            "cpu",
            batch_size=2,
            num_workers=2,
            progress=False,
        ):
            pass
    assert "\n" not in str(err.value) and name in str(err.value)


def test_data_check_reports_a_truncated_image_whose_header_is_fine(synth, tmp_path):
    world, name = _truncated_world(synth, tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "data",
            "check",
            str(world / "train.json"),
            "--images",
            str(world / "images"),
            "--dataset",
            str(world / "vocabulary.json"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "unreadable_image: 1" in result.output and name in result.output
