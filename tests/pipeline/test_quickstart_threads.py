"""A quickstart run trained alone gets the thread count it has beside the other run, so
that its numbers do not depend on how the quickstart was run (resumed, --no-parallel,
benchmarks/blend.py)."""

from __future__ import annotations

import pytest
import torch

from eoid.pipeline.run_quickstart import run_quickstart, run_threads, torch_threads


class _Stop(Exception):
    pass


def test_a_run_trained_alone_uses_the_side_by_side_thread_count(tmp_path, monkeypatch):
    seen = []

    def train(cfg, world):
        seen.append(torch.get_num_threads())
        raise _Stop

    monkeypatch.setattr("eoid.pipeline.run_train.run_train", train)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(run_threads() + 1)
        with pytest.raises(_Stop):
            run_quickstart(tmp_path / "qs", num_images=12, epochs=1, parallel=False)
        assert seen == [run_threads()]
        # and the caller's count is back
        assert torch.get_num_threads() == run_threads() + 1
    finally:
        torch.set_num_threads(before)


def test_torch_threads_restores_the_count_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError
    assert torch.get_num_threads() == before
