"""Writing a teacher cache: the store's creation, the crop stream, the shard loop, the
manifest.

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

from eoid.errors import CacheMismatchError, DataError, Interrupted
from eoid.files import fault_point, read_json, write_json_atomic, writing
from eoid.loaders import WorkerLoader
from eoid.locks import FolderLock
from eoid.teacher_cache import manifest as mf
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


# ---------------------------------------------------------------- creating the folder

OURS = (
    store.MARKER,
    ".init.lock",
    ".manifest.lock",
    ".lock-part-",
    ".eoid-write-test-",
)


def prepare_store(
    out: Path,
    plan: CachePlan,
    layout: ShardLayout,
    recipe: dict,
    text_emb: Callable[[], np.ndarray],
    meta: dict,
    break_lock: bool,
) -> None:
    """Create the store once (parts wait on an init lock) or check that it fits this
    run.

    recipe: manifest.json to be, without checksums (its "fingerprint" and "config"): a
    store started with another one is refused naming the first difference, so every part
    and every rerun writes the same bytes. text_emb: computes the (H, D) prompt
    embeddings, called only when the store is created. A half-created store (its creator
    was killed) is made again.
    """
    fingerprint = recipe["fingerprint"]
    with FolderLock(out / ".init.lock", break_lock=break_lock, wait_s=600.0):
        store.remove_leftovers(out, layout)
        if (out / "plan.json").is_file():
            found = read_json(
                out / "plan.json",
                CacheMismatchError,
                "Delete that folder to rebuild it.",
            )
            mf.require_match(
                f"{out}",
                found.get("fingerprint", {}),
                fingerprint,
                "Pass another --out, or delete that folder to rebuild it.",
            )
            if found["layout"] != layout.to_json():
                raise CacheMismatchError(
                    f"{out}: written with shard_rows {found['layout']['shard_rows']}, "
                    f"this run asks for {layout.shard_rows}. Use the same "
                    "teacher.shard_rows to resume, or another --out."
                )
            if (out / store.RECIPE).is_file():
                started = read_json(
                    out / store.RECIPE,
                    CacheMismatchError,
                    "Delete that file (it is rewritten from this run's recipe).",
                )
                why = recipe_difference(started, recipe)
                if why:
                    raise CacheMismatchError(
                        f"{out}: this run's recipe differs from the one this cache was"
                        f" started with: {why}. Give every part and every rerun the"
                        " same recipe, or pass another --out."
                    )
            return
        foreign = [p.name for p in out.iterdir() if not p.name.startswith(OURS)]
        if (
            foreign
            and not (out / store.MARKER).exists()
            and not store.is_half_created(out)
        ):
            raise CacheMismatchError(
                f"{out}: folder is not empty and not a teacher cache "
                f"({', '.join(sorted(foreign)[:5])}). Pass an empty or new --out."
            )
        with writing(out / store.MARKER, "a cache file"):
            (out / store.MARKER).touch()
        fault_point("marker written")
        store.create_store(
            out,
            plan,
            layout,
            text_emb(),
            meta,
            {"fingerprint": fingerprint, "layout": layout.to_json()},
            recipe,
        )


def recipe_difference(started: dict, this_run: dict, where: str = "") -> str | None:
    """The first value that differs between two recipes, as "teacher.batch_size is 8
    here, 16 there", or None. Only keys both hold are compared below the top (config
    keys a newer eoid added are not a difference)."""
    for key in dict.fromkeys([*started, *this_run]):
        a, b = started.get(key, "<missing>"), this_run.get(key, "<missing>")
        name = f"{where}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            why = recipe_difference(a, b, "" if name == "config" else f"{name}.")
            if why:
                return why
        elif a != b:
            return f"{name} is {b!r} here, {a!r} in the parts or run that started it"
    return None


class ShardClaims:
    """The claims (progress/.shard-NNNNN.lock) of the shards this process computes.

    A shard claimed by a live process, or done, is left out of `shards`: two processes
    never write one zarr shard, even parts started with different part counts. A dead
    process's claim is broken (locks.FolderLock). Each claim is released once its shard
    is written, or on exit.
    """

    def __init__(self, out: Path, wanted: list[int], break_lock: bool):
        self._locks: dict[int, FolderLock] = {}
        self.others: list[int] = []  # wanted shards another live process computes
        try:
            for shard in wanted:
                lock = FolderLock.claim(store.shard_claim_path(out, shard), break_lock)
                if lock is None:
                    self.others.append(shard)
                # finished by another process since `wanted`
                elif shard in store.done_shards(out):
                    lock.release()
                else:
                    self._locks[shard] = lock
        # a full disk at the 3rd claim: the first two are not kept
        except BaseException:
            self.__exit__()
            raise
        self.shards = sorted(self._locks)

    def release(self, shard: int) -> None:
        lock = self._locks.pop(shard, None)
        if lock is not None:
            lock.release()

    def __enter__(self) -> "ShardClaims":
        return self

    def __exit__(self, *exc: object) -> None:
        for shard in list(self._locks):
            self.release(shard)


def finalize_if_complete(out: Path, manifest: dict, layout: ShardLayout) -> bool:
    """Write manifest.json, with every file's checksum, once every shard is done.

    Any part may: the one that finds every shard done first writes it, under a lock,
    after removing what killed writers left (the bytes are the same whoever writes
    them). On a finished cache it only removes what a kill left (a stale lock of a
    killed finaliser too).
    """
    if len(store.done_shards(out)) < layout.num_shards:
        return False
    with FolderLock(out / ".manifest.lock", wait_s=600.0):
        store.remove_leftovers(out, layout)
        if not (out / "manifest.json").is_file():
            checksums = store.collect_checksums(out, layout)
            write_json_atomic(
                out / "manifest.json",
                {**manifest, "checksums": checksums},
                "a cache file",
            )
            store.remove_leftovers(out, layout)
    return True


def write_derived(
    out: Path,
    plan: CachePlan,
    layout: ShardLayout,
    text_emb: np.ndarray,
    meta: dict,
    manifest: dict,
    rows: Callable[[int, int], TeacherRows],
) -> Path:
    """Write a cache computed from finished ones (relabel, merge) through the store's
    own code.

    manifest: manifest.json without checksums (they are collected last); it decides what
    `out` may already hold: nothing, an unfinished cache of this recipe (a killed run:
    the shards it finished are kept), or this very cache (kept as it is). rows(lo, hi)
    gives every teacher column (schema.TEACHER_COLUMNS) of rows lo:hi.
    """
    fingerprint = manifest["fingerprint"]
    with FolderLock(out / ".lock-part-0-of-1"):
        if (out / "manifest.json").is_file():
            found = read_json(
                out / "manifest.json", CacheMismatchError, "Pass another --out."
            )
            mf.require_match(
                f"{out}",
                found.get("fingerprint", {}),
                fingerprint,
                "It is a finished cache: pass another --out to write a new one.",
            )
            # only removes what a kill left
            finalize_if_complete(out, found, layout)
            return out
        prepare_store(
            out, plan, layout, manifest, lambda: text_emb, meta, break_lock=False
        )
        for shard in sorted(set(range(layout.num_shards)) - store.done_shards(out)):
            store.write_shard(out, layout, shard, rows(*layout.shard_range(shard)))
        finalize_if_complete(out, manifest, layout)
    return out


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
