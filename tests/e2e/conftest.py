"""A small generated world and its teacher cache, built once for the end-to-end tests."""

import json

import pytest

TINY = (
    "student.preset=tiny",
    "student.num_queries=8",
    "optim.num_workers=0",
    "augment.scales=[96, 112]",
    "augment.max_size=160",
    "augment.crop_scales=[96, 112]",
    "augment.crop_min=64",
    "augment.crop_max=112",
    "augment.test_size=112",
)


@pytest.fixture(scope="session")
def world(tmp_path_factory, world_cache_factory) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    paths, cache = world_cache_factory(root, 40, 3)
    return {
        "root": root,
        "paths": paths,
        "cache": cache,
        "sets": TINY + (f"data.dataset={json.dumps(str(paths.vocabulary))}",),
    }
