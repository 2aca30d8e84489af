"""Fixtures every test folder shares: the tiny open_clip model of tests/data/tiny-clip.json.

A 32 px ViT, width 64, 2 layers, text context 32: building and encoding take well under a second.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_CONFIG = Path(__file__).resolve().parent / "data" / "tiny-clip.json"


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
