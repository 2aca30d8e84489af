"""Shared fixtures: a tiny open_clip model (random weights, saved to a file) and a tiny world.

The tiny model is registered from tests/data/tiny-clip.json (32 px ViT, width 64, 2 layers,
text context 32); building and encoding take well under a second.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_CONFIG = Path(__file__).resolve().parents[1] / "data" / "tiny-clip.json"


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


@pytest.fixture(scope="session")
def tiny_config() -> Path:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_teacher(tiny_weights):
    from eoid.teacher_cache.teacher import load_teacher
    return load_teacher(str(TINY_CONFIG), str(tiny_weights), "cpu")
