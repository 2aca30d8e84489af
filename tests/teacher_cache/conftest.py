"""Fixtures of the teacher tests: the tiny open_clip model (weights from
tests/conftest.py) as a Teacher.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_CONFIG = Path(__file__).resolve().parents[1] / "data" / "tiny-clip.json"


@pytest.fixture(scope="session")
def tiny_config() -> Path:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_teacher(tiny_weights):
    from eoid.teacher_cache.teacher import load_teacher

    return load_teacher(str(TINY_CONFIG), str(tiny_weights), "cpu")
