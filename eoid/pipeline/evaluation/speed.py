"""Inference cost per image: wall time of each stage of the inference loop, warm-up
excluded.

Stages (results.json "speed" -> "ms_per_image"):
  student      the student's forward, the batch's copy to the device included
  postprocess  top-k triplets, triplet NMS and the conversion to per-image arrays (with CLIP's or
               blended verbs: replacing the student's verb scores first)
  clip         (CLIP or blended verbs only) reading the original images, cutting and resizing the
               union crops, the CLIP image tower and the masked softmax over the HOI
               prompts
Image decoding and resizing for the student (the data loader) and the scoring are not
counted.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

STAGE_LABELS = {"student": "student", "postprocess": "post-processing", "clip": "CLIP"}


class StageClock:
    """Wall time per stage of the inference loop, summed over the batches after the
    warm-up.

    The first `warmup_batches` batches run as usual but are not counted (lazy
    initialisation, allocator growth, kernel selection). On CUDA each stage is bracketed
    by torch.cuda.synchronize, so that its asynchronous kernels are counted in that
    stage. `now`: the clock in seconds (tests pass their own).
    """

    def __init__(
        self,
        device: str,
        warmup_batches: int = 1,
        now: Callable[[], float] = time.perf_counter,
    ):
        self.cuda = str(device).startswith("cuda")
        self.warmup_batches = warmup_batches
        self.now = now
        self.batches = 0
        self.images = 0
        self.seconds: dict[str, float] = {}

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage `name` of the current batch."""
        self._sync()
        start = self.now()
        try:
            yield
        finally:
            self._sync()
            if self.batches >= self.warmup_batches:
                self.seconds[name] = self.seconds.get(name, 0.0) + self.now() - start

    def end_batch(self, num_images: int) -> None:
        """Close the current batch of `num_images` images."""
        if self.batches >= self.warmup_batches:
            self.images += num_images
        self.batches += 1

    def report(self, **setup: Any) -> dict:
        """The results.json "speed" block: `setup` (device, dtype, batch size, ...),
        the images timed and the ms per image of each stage and in total (None when
        every batch was warm-up)."""
        ms = per_image_ms(self.seconds, self.images)
        return {
            **setup,
            "warmup_batches": min(self.warmup_batches, self.batches),
            "images_timed": self.images,
            "ms_per_image": ms,
        }


def per_image_ms(seconds: dict[str, float], images: int) -> dict[str, float] | None:
    """Milliseconds per image of each stage, and their "total"; None when no image was
    timed.
    """
    if images <= 0:
        return None
    ms = {name: 1000.0 * s / images for name, s in seconds.items()}
    ms["total"] = sum(ms.values())
    return ms


def torch_setup(model: Any, device: str, batch_size: int) -> dict:
    """What a timing depends on: device, the student's dtype, batch size, CPU threads."""
    params = getattr(model, "parameters", None)
    dtype = (
        str(next(params()).dtype).replace("torch.", "")
        if params
        else "float32 (onnxruntime)"
    )
    setup = {"device": str(device), "dtype": dtype, "batch_size": batch_size}
    if str(device).startswith("cuda"):
        setup["gpu"] = torch.cuda.get_device_name(torch.device(device))
    else:
        setup["threads"] = torch.get_num_threads()
    return setup


def format_speed(speed: dict) -> str:
    """One printed line: the ms per image of each stage, with the setup they were
    measured on.
    """
    where = [speed["device"], speed["dtype"], f"batch {speed['batch_size']}"]
    if "threads" in speed:
        where.append(f"{speed['threads']} threads")
    if "gpu" in speed:
        where.append(speed["gpu"])
    if "clip" in speed:
        where.append(f"CLIP {speed['clip']} {speed['clip_precision']}")
    ms = speed["ms_per_image"]
    if ms is None:
        return (
            f"speed: not measured ({', '.join(where)}): every image fell in the "
            f"{speed['warmup_batches']} warm-up batch(es)"
        )
    stages = ", ".join(
        f"{STAGE_LABELS.get(k, k)} {v:.2f}" for k, v in ms.items() if k != "total"
    )
    return (
        f"speed (ms per image; {', '.join(where)}; {speed['images_timed']} images after"
        f" {speed['warmup_batches']} warm-up batch): {stages}; total {ms['total']:.2f}"
    )
