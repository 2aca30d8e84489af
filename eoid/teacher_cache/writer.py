"""Computing a teacher cache's shards: the crop stream and the shard loop (the store's
creation, the shard claims and the manifest are in coordination.py).

Crops are cut in DataLoader workers (one item = one image's rows), encoded in fixed
batches, turned into verb distributions block by block, and written by one background
thread in submission order, one whole shard at a time (ENVIRONMENT_FACTS §4: two writers
in one zarr shard lose rows). A stopped or killed part keeps every finished block;
rerun, it resumes there.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from eoid.errors import DataError, Interrupted
from eoid.loaders import WorkerLoader
from eoid.teacher_cache import store
from eoid.teacher_cache.crops import CropSpec, union_crops
from eoid.teacher_cache.distribution import pair_verb_probs
from eoid.teacher_cache.plan import (
    CachePlan,
    ShardLayout,
    batch_ranges,
    block_start,
    segments_for,
)
from eoid.teacher_cache.schema import TeacherRows, concat_rows, stored_rows
from eoid.teacher_cache.teacher import Teacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardJob:
    """Everything the shard loop needs, fixed before the teacher runs."""

    out: Path  # the cache folder
    plan: CachePlan
    layout: ShardLayout
    image_paths: list[Path]  # one per plan image, original images
    # (num_objects, H) bool: the prior mask (no_interaction removed)
    valid_hoi_by_object: np.ndarray
    hoi_to_verb: np.ndarray  # (H,) int64
    num_verbs: int
    # scale of the cosine similarity before the softmax
    gamma: float


# ---------------------------------------------------------------- crops in DataLoader
# workers


class SegmentCrops(torch.utils.data.Dataset):
    """Item k: (row_lo, crops (n, 3, S, S)) for one image's rows; each image decoded
    once.
    """

    def __init__(
        self,
        segments: list[tuple[int, int, int]],
        paths: list[Path],
        keys: list[str],
        plan: CachePlan,
        spec: CropSpec,
    ):
        self.segments, self.paths, self.keys, self.spec = segments, paths, keys, spec
        self.human, self.object = plan.human_xyxy, plan.object_xyxy

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor]:
        img, lo, hi = self.segments[k]
        try:
            with Image.open(self.paths[img]) as im:
                image = im.convert("RGB")
        except (OSError, ValueError) as err:
            raise DataError(
                f"{self.paths[img]}: cannot read image of record {self.keys[img]!r} "
                f"({err}). Restore the file, or rerun with --skip-bad."
            ) from None
        return lo, union_crops(image, self.human[lo:hi], self.object[lo:hi], self.spec)


def prefetch_items(pairs_per_image: float, batch_size: int, num_workers: int) -> int:
    """Segments each worker keeps ready: about two encoder batches of crops in flight
    (2..32).

    DataLoader's default (2 per worker) holds ~4 images, less than one batch of 64
    crops, so the encoder would wait on decoding at every batch.
    """
    per_worker = 2 * batch_size / max(pairs_per_image, 1.0) / max(num_workers, 1)
    return int(min(32, max(2, math.ceil(per_worker))))


def crop_stream(
    dataset: SegmentCrops, num_workers: int, prefetch: int = 2
) -> WorkerLoader:
    """The dataset's items in order, decoded by `num_workers` processes (read it inside
    `with`).
    """
    # no pin_memory here: the main process copies each batch once, into pinned memory
    # (_batch_rows)
    return WorkerLoader(
        dataset,
        stop_signals_to_main=True,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=False,
        prefetch_factor=prefetch if num_workers > 0 else None,
    )


def _batch_rows(parts: list[torch.Tensor], pin: bool) -> torch.Tensor:
    """The crops of one encoder batch in one tensor; pinned (for an async host-to-GPU
    copy) if `pin`.
    """
    rows = torch.empty(
        (sum(len(p) for p in parts), *parts[0].shape[1:]),
        dtype=parts[0].dtype,
        pin_memory=pin,
    )
    return torch.cat(parts, out=rows)


class BackgroundWriter:
    """Store writes on one thread, in submission order, so the encoder never waits on
    the disk.

    Each shard still has exactly one writer (this thread); a failed write is raised in
    the main thread at the next submit or at exit. On exit every pending write is
    finished first, so a stop (Interrupted) still leaves every finished block saved.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="eoid-cache-writer"
        )
        self._pending: list[Future] = []

    def submit(self, fn: Any, *args: Any) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(fn, *args))

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            errors = [f.exception() for f in self._pending]  # waits for each
            first = next((e for e in errors if e is not None), None)
            if first is not None and exc_type is None:
                raise first
        finally:
            self._pool.shutdown(wait=True)


# ---------------------------------------------------------------- the shard loop


def compute_shards(
    job: ShardJob,
    teacher: Teacher,
    text_emb: np.ndarray,
    shards: list[int],
    batch_size: int,
    num_workers: int,
    show_progress: bool,
    stop_requested: Callable[[], str | None] = lambda: None,
    on_written: Callable[[int], None] = lambda shard: None,
) -> None:
    """Run the teacher over the rows of `shards` not yet saved and write each finished
    shard.

    text_emb (H, D) float32 prompt embeddings. `stop_requested` is asked after every
    block: once it names a signal ("SIGINT") the loop raises Interrupted with every
    finished block saved. on_written(shard) is called (on the writer thread) once a
    shard is written and marked done.
    """
    from tqdm import tqdm

    out, layout, plan = job.out, job.layout, job.plan
    saved: dict[int, TeacherRows] = {}
    for s in shards:
        for blo, bhi in layout.blocks(s):
            got = (
                store.load_block(out, s, blo, bhi - blo)
                if len(layout.blocks(s)) > 1
                else None
            )
            if got is not None:
                saved[blo] = got
    ranges = batch_ranges(layout, shards, set(saved), batch_size)
    valid = torch.from_numpy(job.valid_hoi_by_object)
    hoi_to_verb, text = torch.from_numpy(job.hoi_to_verb), torch.from_numpy(text_emb)
    segments = segments_for(plan.image_offsets, ranges)
    prefetch = prefetch_items(
        sum(hi - lo for _, lo, hi in segments) / max(len(segments), 1),
        batch_size,
        num_workers,
    )
    crops = SegmentCrops(
        segments, job.image_paths, plan.image_keys, plan, teacher.crop_spec
    )
    pin = teacher.device.type == "cuda"
    buffer: list[tuple[int, torch.Tensor]] = []
    block_emb: list[torch.Tensor] = []
    bar = tqdm(
        total=sum(hi - lo for _, lo, hi in ranges),
        unit="crop",
        disable=not show_progress,
        desc=f"teacher {teacher.model_name}",
        smoothing=0.1,
    )
    block_of = {(s, blo): bhi for s in shards for blo, bhi in layout.blocks(s)}
    with (
        crop_stream(crops, num_workers, prefetch) as loader,
        BackgroundWriter() as writer,
    ):
        stream = iter(loader)
        for shard, lo, hi in ranges:
            while not buffer or buffer[-1][0] + len(buffer[-1][1]) < hi:
                buffer.append(next(stream))
            rows = _batch_rows(
                [
                    c[max(lo - s0, 0) : hi - s0]
                    for s0, c in buffer
                    if s0 < hi and s0 + len(c) > lo
                ],
                pin,
            )
            while buffer and buffer[0][0] + len(buffer[0][1]) <= hi:
                buffer.pop(0)
            # embeddings stay on the device until the block ends: no GPU sync per batch
            block_emb.append(teacher.encode_images(rows))
            bar.update(hi - lo)
            blo = block_start(layout, lo)
            if (shard, blo) in block_of and block_of[(shard, blo)] == hi:
                emb = torch.cat(block_emb).cpu()
                block_emb = []
                object_idx = torch.from_numpy(
                    plan.object_class[blo:hi].astype(np.int64)
                )
                probs = pair_verb_probs(
                    emb, text, object_idx, valid, hoi_to_verb, job.num_verbs, job.gamma
                )
                saved[blo] = stored_rows(
                    {"image_emb": emb.numpy(), "verb_probs": probs.numpy()}
                )
                if len(layout.blocks(shard)) > 1:
                    writer.submit(store.save_block, out, shard, blo, saved[blo])
                _write_if_full(out, layout, shard, saved, writer.submit, on_written)
                signal_name = stop_requested()
                if signal_name:
                    raise Interrupted(
                        f"{out}: stopped by {signal_name} after rows {blo}:{hi};"
                        " finished blocks are saved",
                        "Run the same command again to resume.",
                        signal_name,
                    )
        for s in shards:
            _write_if_full(out, layout, s, saved, writer.submit, on_written)
    bar.close()


def _write_if_full(
    out: Path,
    layout: ShardLayout,
    shard: int,
    saved: dict[int, TeacherRows],
    submit: Any,
    on_written: Callable[[int], None],
) -> None:
    """Hand a shard whose blocks are all computed to `submit` (the writer); its blocks
    leave `saved`.
    """
    blocks = layout.blocks(shard)
    if shard in store.done_shards(out) or not all(blo in saved for blo, _ in blocks):
        return
    rows = concat_rows([saved[blo] for blo, _ in blocks])
    submit(_write_shard, out, layout, shard, rows, on_written)
    for blo, _ in blocks:
        saved.pop(blo, None)


def _write_shard(
    out: Path,
    layout: ShardLayout,
    shard: int,
    rows: TeacherRows,
    on_written: Callable[[int], None],
) -> None:
    store.write_shard(out, layout, shard, rows)
    on_written(shard)
