"""The teacher on a GPU: float16 and bf16 encoders, and `cache-teacher`'s pinned
host-to-GPU copies.

Marked `cuda`: skipped, with the reason, where torch sees no CUDA device
(tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eoid.teacher_cache.teacher import load_teacher, resolve_precision

pytestmark = pytest.mark.cuda

TINY_CONFIG = Path(__file__).resolve().parents[1] / "data" / "tiny-clip.json"


@pytest.mark.parametrize("precision, min_cosine", [("auto", 0.999), ("bf16", 0.99)])
def test_reduced_precision_teacher_on_cuda_encodes_as_the_float32_teacher_on_the_cpu(
    tiny_weights, precision, min_cosine
):
    # "auto" on a GPU is the original's float16 weights; bf16 is autocast over float32
    # weights. float16 keeps ~3 significant digits (bf16 ~2), so a unit embedding moves
    # by ~1e-3 (~1e-2): cosine 0.999 (0.99) to the float32 one is far from a wrong
    # encoder (~0 for random crops)
    gpu = load_teacher(
        str(TINY_CONFIG),
        str(tiny_weights),
        "cuda",
        resolve_precision(precision, "cuda"),
    )
    cpu = load_teacher(str(TINY_CONFIG), str(tiny_weights), "cpu", "fp32")
    if precision == "auto":
        assert gpu.input_dtype == torch.float16 and gpu.autocast_dtype is None
    else:
        assert gpu.input_dtype == torch.float32 and gpu.autocast_dtype == torch.bfloat16
    assert gpu.channels_last
    crops = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    on_gpu, on_cpu = gpu.encode_images(crops), cpu.encode_images(crops)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    cosine = (on_gpu.cpu() * on_cpu).sum(dim=1)
    assert cosine.min() > min_cosine, cosine


def test_cache_teacher_on_cuda_writes_the_rows_the_cpu_writes(tmp_path, monkeypatch):
    # the same world and float32 teacher on both devices: the GPU run copies its crops
    # through pinned buffers (non_blocking) with a DataLoader worker cropping ahead, so
    # a buffer reused before its copy finished would show up as rows that differ from
    # the CPU's
    from eoid.config import CacheConfig, DataConfig, TeacherConfig
    from eoid.devices import World
    from eoid.pipeline.run_cache import run_cache
    from eoid.pipeline.synth.world import generate_world
    from eoid.teacher_cache.lookup import CacheReader

    # plain float32 convolutions too
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    paths = generate_world(tmp_path / "world", 8, seed=3, progress=False)
    data = DataConfig(
        dataset=str(paths.vocabulary),
        train_annotations=str(paths.train_json),
        train_images=str(paths.image_dir),
    )
    readers = {}
    for device in ("cpu", "cuda:0"):
        teacher = TeacherConfig(
            model="eoid-synth-clip",
            weights="bundled",
            batch_size=4,
            num_workers=1,
            precision="fp32",
        )
        out = run_cache(
            CacheConfig(
                data=data, teacher=teacher, out=str(tmp_path / device.replace(":", ""))
            ),
            World(device=device),
        )
        readers[device] = CacheReader(out, load_embeddings=True)
    cpu, gpu = readers["cpu"], readers["cuda:0"]
    assert len(cpu.verb_probs) > 8  # several encoder batches of 4
    np.testing.assert_array_equal(gpu.human_xyxy, cpu.human_xyxy)
    np.testing.assert_allclose(
        gpu.image_emb.astype(np.float32),
        cpu.image_emb.astype(np.float32),
        # float16 storage: ~1e-3 per entry
        atol=2e-3,
    )
    np.testing.assert_allclose(gpu.verb_probs, cpu.verb_probs, atol=1e-3)
