"""Fixtures every test folder shares: the tiny open_clip model of
tests/data/tiny-clip.json.

A 32 px ViT, width 64, 2 layers, text context 32: building and encoding take well under
a second. Tests marked `cuda` (pyproject.toml) are skipped, with the reason, where torch
sees no CUDA device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_CONFIG = Path(__file__).resolve().parent / "data" / "tiny-clip.json"


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the `cuda` tests where there is no CUDA device, saying why (pytest -rs
    prints it).
    """
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason=(
            f"needs a CUDA device: torch {torch.__version__} (CUDA build "
            f"{torch.version.cuda or 'none'}) sees none"
        )
    )
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """The tiny model's random weights saved as an ordinary open_clip state-dict file."""
    import open_clip

    open_clip.add_model_config(str(TINY_CONFIG))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return path


def world_and_cache(root: Path, images: int, seed: int, **teacher) -> tuple:
    """A generated world of `images` images under root/world and its shipped-teacher
    cache in root/cache.

    `teacher`: TeacherConfig fields beyond the fast defaults (e.g. shard_rows). Returns
    (paths, cache).
    """
    from eoid.config import CacheConfig, DataConfig, TeacherConfig
    from eoid.devices import World
    from eoid.pipeline.run_cache import run_cache
    from eoid.pipeline.synth.world import generate_world

    paths = generate_world(root / "world", images, seed=seed, progress=False)
    data = DataConfig(
        dataset=str(paths.vocabulary),
        train_annotations=str(paths.train_json),
        train_images=str(paths.image_dir),
    )
    teacher_cfg = TeacherConfig(
        model="eoid-synth-clip",
        weights="bundled",
        batch_size=64,
        num_workers=0,
        **teacher,
    )
    cache = run_cache(
        CacheConfig(data=data, teacher=teacher_cfg, out=str(root / "cache")), World()
    )
    return paths, Path(cache)


@pytest.fixture(scope="session")
def world_cache_factory():
    """`world_and_cache` for fixtures of other folders (a conftest's functions are not
    importable).
    """
    return world_and_cache


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """A finished teacher cache of a 10-image generated world (the shipped teacher), in
    16-row shards.
    """
    return world_and_cache(
        tmp_path_factory.mktemp("synth_cache"), 10, 1, shard_rows=16
    )[1]


@pytest.fixture
def two_steps_of(tmp_path):
    """Train a shipped recipe as it stands for two iterations of the tiny student on a
    12-image synthetic world (its own UA setting, no test set); returns the metrics rows
    of the iterations. The recipes' tests run their training this way."""

    def train(recipe: Path) -> list[dict]:
        import json

        from eoid.config import TrainConfig
        from eoid.config_loading import load_config
        from eoid.devices import World
        from eoid.pipeline.run_train import run_train
        from eoid.pipeline.synth.world import generate_world

        world = generate_world(tmp_path / "world", 12, 0, image_size=96, progress=False)
        tiny = (
            f"data.dataset={json.dumps(str(world.vocabulary))}",
            "data.val_images=0",
            "student.detr_init=''",
            "student.preset=tiny",
            "student.num_queries=8",
            "optim.batch_size=4",
            "optim.num_workers=0",
            "optim.epochs=1",
            "optim.max_iters=2",
            "augment.scales=[96]",
            "augment.max_size=128",
            "augment.crop_scales=[96]",
            "augment.crop_min=64",
            "augment.crop_max=96",
            "augment.test_size=96",
        )
        cfg = load_config(
            TrainConfig,
            recipe,
            tiny,
            out=str(tmp_path / "run"),
            data__train_annotations=str(world.train_json),
            data__train_images=str(world.image_dir),
            data__test_annotations="",
        )
        metrics = (run_train(cfg, World()) / "metrics.jsonl").read_text()
        rows = [json.loads(line) for line in metrics.splitlines()]
        return [r for r in rows if "iteration" in r]

    return train
