"""`eoid train` on a GPU: bf16 autocast steps and the pinned-memory loader (marked
`cuda`).
"""

from __future__ import annotations

import math

import pytest
import torch

from eoid.checkpoint import load_checkpoint
from eoid.devices import World

from tiny_train import losses, train_config

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("amp", [True, False])
def test_training_on_cuda_runs_bf16_autocast_when_amp_is_on(
    synth, tmp_path, monkeypatch, amp
):
    # optim.amp is the original's bf16 autocast around the forward pass; the spy sees
    # every autocast the loop opens, so an amp run that silently ran in float32 (or the
    # reverse) fails
    from eoid.pipeline.run_train import run_train

    opened = []
    real_autocast = torch.autocast

    def spy(device_type, *args, **kwargs):
        opened.append((device_type, kwargs.get("dtype"), kwargs.get("enabled", True)))
        return real_autocast(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    cfg = train_config(
        synth,
        tmp_path / "run",
        1,
        f"optim.amp={str(amp).lower()}",
        "optim.max_iters=3",
        "optim.num_workers=1",
    )
    run = run_train(cfg, World(device="cuda:0"))
    steps = losses(run)
    assert [i for i, _ in steps] == [1, 2, 3]
    assert all(math.isfinite(loss) for _, loss in steps)
    bf16 = [o for o in opened if o == ("cuda", torch.bfloat16, True)]
    assert len(bf16) == (3 if amp else 0), opened
    assert f"amp = {str(amp).lower()}" in (run / "config.toml").read_text()
    # saved from the GPU, loads anywhere
    weights = load_checkpoint(run / "checkpoint.pt")["model"]
    assert all(
        bool(torch.isfinite(t.float()).all())
        for t in weights.values()
        if torch.is_tensor(t)
    )
