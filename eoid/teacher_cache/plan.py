"""The cache's rows and how they split: candidate pairs per image, shards, resumable
blocks, batches.

Rows (candidate pairs) are sorted by image and split into zarr shards of `shard_rows`
rows; a part (`--part i/n`, or torchrun rank i of n) owns the shards `shard_for(s, n) ==
i`, so parts never touch one shard and their union equals a single run byte for byte.
Within a shard, rows go through the encoder in fixed batches inside fixed blocks (the
unit saved for resume), so the bytes never depend on where a run was killed. Pure
functions of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from eoid.teacher_cache.candidates import candidate_pairs, labelled_mask

# crops one worker item carries at most (bounds memory on crowded images)
MAX_SEGMENT_ROWS = 256


class ImageBoxes(Protocol):
    """What planning needs of one annotated image (the pipeline's ImageRecord has it)."""

    key: str
    width: int
    height: int
    boxes_xyxy_px: np.ndarray  # (B, 4) original pixels
    box_classes: np.ndarray  # (B,) object index
    hois: np.ndarray  # (H, 3) (human_box_idx, object_box_idx, verb)


@dataclass(frozen=True, eq=False)
class CachePlan:
    """The per-pair columns known before the teacher runs (from the ground-truth boxes)."""

    image_keys: list[str]
    image_sizes: np.ndarray  # (N, 2) int64 (width, height) px
    image_offsets: np.ndarray  # (N+1,) int64
    # (P, 2) int32 (human_box_idx, object_box_idx) into the record's boxes
    pair_box_idx: np.ndarray
    human_xyxy: np.ndarray  # (P, 4) float32, original px
    object_xyxy: np.ndarray  # (P, 4) float32, original px
    object_class: np.ndarray  # (P,) int32
    labelled: np.ndarray  # (P,) bool

    @property
    def num_pairs(self) -> int:
        return int(self.image_offsets[-1])

    @property
    def num_images(self) -> int:
        return len(self.image_keys)

    @property
    def pair_image(self) -> np.ndarray:
        """(P,) int32 image index of each pair."""
        return np.repeat(
            np.arange(self.num_images, dtype=np.int32), np.diff(self.image_offsets)
        )


@dataclass(frozen=True)
class ShardLayout:
    """How rows split into zarr shards (one writer each) and resumable blocks."""

    shard_rows: int
    block_rows: int
    num_pairs: int

    @property
    def num_shards(self) -> int:
        return -(-self.num_pairs // self.shard_rows)

    def shard_range(self, shard: int) -> tuple[int, int]:
        return shard * self.shard_rows, min(
            (shard + 1) * self.shard_rows, self.num_pairs
        )

    def blocks(self, shard: int) -> list[tuple[int, int]]:
        """Row ranges of the blocks of a shard (the unit saved for resume)."""
        lo, hi = self.shard_range(shard)
        return [
            (b, min(b + self.block_rows, hi)) for b in range(lo, hi, self.block_rows)
        ]

    def to_json(self) -> dict:
        return {
            "shard_rows": self.shard_rows,
            "block_rows": self.block_rows,
            "num_pairs": self.num_pairs,
        }


def make_layout(num_pairs: int, shard_rows: int) -> ShardLayout:
    """Blocks of 1024 rows inside shards (the whole shard when shard_rows is not a
    multiple).
    """
    block = 1024 if shard_rows % 1024 == 0 else shard_rows
    return ShardLayout(shard_rows=shard_rows, block_rows=block, num_pairs=num_pairs)


def build_plan(records: Sequence[ImageBoxes], human_class: int) -> CachePlan:
    """Candidate pairs of every record, flattened in record order (the cache rows)."""
    box_idx, offsets = [], [0]
    for rec in records:
        pairs = candidate_pairs(
            rec.boxes_xyxy_px, rec.box_classes, human_class, rec.hois[:, :2]
        )
        box_idx.append(pairs)
        offsets.append(offsets[-1] + len(pairs))
    human, obj, cls, lab = [], [], [], []
    for rec, pairs in zip(records, box_idx):
        human.append(rec.boxes_xyxy_px[pairs[:, 0]].reshape(-1, 4))
        obj.append(rec.boxes_xyxy_px[pairs[:, 1]].reshape(-1, 4))
        cls.append(rec.box_classes[pairs[:, 1]])
        lab.append(labelled_mask(pairs, rec.boxes_xyxy_px, rec.box_classes, rec.hois))

    def cat(xs: list[np.ndarray], shape: tuple[int, ...], dt) -> np.ndarray:
        return np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt)

    return CachePlan(
        image_keys=[r.key for r in records],
        image_sizes=np.array(
            [[r.width, r.height] for r in records], dtype=np.int64
        ).reshape(-1, 2),
        image_offsets=np.asarray(offsets, dtype=np.int64),
        pair_box_idx=cat(box_idx, (0, 2), np.int32),
        human_xyxy=cat(human, (0, 4), np.float32),
        object_xyxy=cat(obj, (0, 4), np.float32),
        object_class=cat(cls, (0,), np.int32),
        labelled=cat(lab, (0,), bool),
    )


def shard_for(shard: int, num_parts: int) -> int:
    """The part that writes zarr shard `shard` (round robin: a job array and torchrun
    agree).
    """
    return shard % num_parts


def batch_ranges(
    layout: ShardLayout, shards: list[int], done_blocks: set[int], batch_size: int
) -> list[tuple[int, int, int]]:
    """(shard, lo, hi) encoder batches of the blocks still to compute; fixed by the
    layout alone.
    """
    out = []
    for s in shards:
        for blo, bhi in layout.blocks(s):
            if blo not in done_blocks:
                out += [
                    (s, lo, min(lo + batch_size, bhi))
                    for lo in range(blo, bhi, batch_size)
                ]
    return out


def segments_for(
    offsets: np.ndarray, ranges: list[tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """(image, lo, hi) row segments covering `ranges`, one per image where rows are
    contiguous.
    """
    merged: list[list[int]] = []
    for _, lo, hi in ranges:
        if merged and merged[-1][1] == lo:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    segs = []
    for lo, hi in merged:
        img = int(np.searchsorted(offsets, lo, side="right") - 1)
        while lo < hi:
            while offsets[img + 1] <= lo:
                img += 1
            end = min(hi, int(offsets[img + 1]), lo + MAX_SEGMENT_ROWS)
            segs.append((img, lo, end))
            lo = end
    return segs


def block_start(layout: ShardLayout, row: int) -> int:
    """First row of the block that holds `row`."""
    shard_lo = (row // layout.shard_rows) * layout.shard_rows
    return shard_lo + ((row - shard_lo) // layout.block_rows) * layout.block_rows
