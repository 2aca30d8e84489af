"""A small generated world and its teacher cache, built once for the end-to-end tests."""
import json
from pathlib import Path

import pytest

TINY = ("student.preset=tiny", "student.num_queries=8", "optim.num_workers=0",
        "augment.scales=[96, 112]", "augment.max_size=160", "augment.crop_scales=[96, 112]",
        "augment.crop_min=64", "augment.crop_max=112", "augment.test_size=112")


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    from eoid.config import CacheConfig, DataConfig, TeacherConfig
    from eoid.pipeline.run_cache import run_cache
    from eoid.pipeline.synth.world import generate_world
    from eoid.pipeline.training.distributed import World
    root = tmp_path_factory.mktemp("e2e")
    paths = generate_world(root / "world", 40, seed=3, progress=False)
    data = DataConfig(dataset=str(paths.vocabulary), train_annotations=str(paths.train_json),
                      train_images=str(paths.image_dir))
    cache = run_cache(CacheConfig(data=data, teacher=TeacherConfig(
        model="eoid-synth-clip", weights="bundled", batch_size=64, num_workers=0),
        out=str(root / "cache")), World())
    return {"root": root, "paths": paths, "cache": Path(cache),
            "sets": TINY + (f"data.dataset={json.dumps(str(paths.vocabulary))}",)}
