"""Fixtures of the reliability tests: a tiny synthetic world and an uninterrupted
reference run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_train import run_cli, train_command

torch.set_num_threads(1)  # in-process runs: repeatable, and fair to a shared CPU


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """A synthetic world of 12 training images (3 batches of 4) and its vocabulary."""
    from eoid.pipeline.synth.world import generate_world

    root = tmp_path_factory.mktemp("synth")
    generate_world(root, 17, 0, image_size=96, progress=False)
    return root


@pytest.fixture(scope="session")
def reference_run(synth, tmp_path_factory) -> Path:
    """An uninterrupted 3-epoch `eoid train` in a subprocess: what every interrupted run
    must equal.
    """
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run_cli(train_command(synth, out, 3))
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def inprocess_reference(synth, tmp_path_factory) -> Path:
    """The same 3-epoch run inside this process (in-process runs compare with in-process
    runs).
    """
    from eoid.pipeline.run_train import run_train

    from tiny_train import WORLD, train_config

    return run_train(
        train_config(synth, tmp_path_factory.mktemp("inprocess") / "run", 3), WORLD
    )


@pytest.fixture(scope="session")
def clip_weights(tiny_weights) -> Path:
    return tiny_weights


@pytest.fixture(scope="session")
def cache(synth, clip_weights, tmp_path_factory) -> Path:
    """A finished teacher cache of the synthetic world (tests copy it before damaging
    it).
    """
    from eoid.pipeline.run_cache import run_cache

    from tiny_train import WORLD, cache_config

    return run_cache(
        cache_config(synth, clip_weights, tmp_path_factory.mktemp("cache") / "cache"),
        WORLD,
    )


@pytest.fixture(scope="session")
def trained_run(synth, tmp_path_factory) -> Path:
    """A finished 1-epoch tiny run (checkpoint.pt, metrics.jsonl): tests copy it before
    changing it.
    """
    from eoid.pipeline.run_train import run_train

    from tiny_train import WORLD, train_config

    return run_train(
        train_config(synth, tmp_path_factory.mktemp("trained") / "run", 1), WORLD
    )
