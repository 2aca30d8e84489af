"""NCCL in a one-process world: the collectives eoid's distributed training issues, on
one GPU.

`average_over_ranks` all-reduces a float64 tensor on the device and run_train wraps the
student in DistributedDataParallel (find_unused_parameters); with a single GPU NCCL can
only run one rank, so this checks that NCCL, float64 reductions and DDP's gradient
buckets work on the card.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

pytestmark = pytest.mark.cuda


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nccl_group(monkeypatch):
    if not dist.is_nccl_available():
        pytest.skip(f"torch {torch.__version__} is built without NCCL")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_nccl_one_rank_all_reduce_of_float64_returns_the_input(nccl_group):
    values = torch.tensor([0.25, 3.0, -1.5], dtype=torch.float64, device="cuda")
    dist.all_reduce(values)  # the sum over one rank is the value itself
    assert values.tolist() == [0.25, 3.0, -1.5]
    dist.barrier()


def test_ddp_over_nccl_steps_the_student_as_the_bare_model(nccl_group):
    # one rank: DDP's all-reduced gradients equal the bare model's, so one SGD step on
    # the same batch leaves both copies with the same weights
    from eoid.student.model import build_student

    torch.manual_seed(0)
    bare = build_student("tiny", 4, 6, num_queries=4).cuda().train()
    wrapped = build_student("tiny", 4, 6, num_queries=4).cuda().train()
    wrapped.load_state_dict(bare.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(
        wrapped, device_ids=[0], find_unused_parameters=True
    )
    images = torch.randn(2, 3, 64, 64, device="cuda")
    mask = torch.zeros(2, 64, 64, dtype=torch.bool, device="cuda")
    for model in (bare, ddp):
        torch.manual_seed(1)  # the same dropout in both
        out = model(images, mask)
        (out.verb_logits.square().mean() + out.human_boxes_cxcywh.mean()).backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
    for (name, a), b in zip(bare.named_parameters(), wrapped.parameters()):
        torch.testing.assert_close(a, b, msg=name)
