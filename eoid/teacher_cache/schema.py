"""The cache's per-pair arrays, named once: name, dtype, width and meaning of every
column.

The store creates one zarr array per column (store.py), the HDF5 export one dataset each
(export.py), and every teacher column travels as one entry of a `TeacherRows` dict
through the writer's blocks (.npz) and shards, and through merge and relabel. A new
teacher-computed field is one row of TEACHER_COLUMNS, the code that computes it
(writer.compute_shards) and its consumer.

Rows are sorted by image; P is the number of pairs. Plan columns are fixed before the
teacher runs (candidate pairs of the annotation file); teacher columns are written shard
by shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Column:
    """One per-pair array of the cache: shape (P,) or (P, width), stored as `dtype`."""

    # the array's name in the store, a block (.npz) and the export
    name: str
    dtype: str  # numpy dtype on disk
    # None: one value per pair; an int; or a size of the store (SIZES)
    width: int | str | None
    meaning: str  # what a row holds, in a phrase

    def shape(self, num_pairs: int, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """(P,) or (P, width); sizes: {"embed_dim": D, "num_verbs": V} of this store."""
        if self.width is None:
            return (num_pairs,)
        return (
            num_pairs,
            self.width if isinstance(self.width, int) else sizes[self.width],
        )


# the sizes a width may name: the store's own
SIZES = ("embed_dim", "num_verbs")

PLAN_COLUMNS = (
    Column("pair_image", "int32", None, "index of the pair's image"),
    Column(
        "pair_box_idx", "int32", 2, "(human, object) box index in the image's record"
    ),
    Column("human_xyxy", "float32", 4, "human box, original-image pixels"),
    Column("object_xyxy", "float32", 4, "object box, original-image pixels"),
    Column("object_class", "int32", None, "vocabulary object index"),
    Column("labelled", "bool", None, "the pair carries a label in the annotation file"),
)

TEACHER_COLUMNS = (
    Column(
        "image_emb",
        "float16",
        "embed_dim",
        "unit-length CLIP embedding of the pair's union crop",
    ),
    # float32: the loss's values exactly; float16 would round p > 0.99976 to 1, which
    # the focal loss takes as a positive
    Column("verb_probs", "float32", "num_verbs", "the teacher's verb distribution"),
)

PLAN_NAMES = tuple(c.name for c in PLAN_COLUMNS)
TEACHER_NAMES = tuple(c.name for c in TEACHER_COLUMNS)

TeacherRows = dict[str, np.ndarray]  # {teacher column name: (rows, ...) array}


def stored_rows(rows: Mapping[str, np.ndarray]) -> TeacherRows:
    """Teacher rows in the schema's order and the store's dtypes; a missing or
    unknown column is a bug of the code that computed them (ValueError)."""
    if set(rows) != set(TEACHER_NAMES):
        raise ValueError(
            f"teacher rows hold {sorted(rows)}, the schema's teacher columns are "
            f"{list(TEACHER_NAMES)}"
        )
    return {
        c.name: np.asarray(rows[c.name]).astype(c.dtype, copy=False)
        for c in TEACHER_COLUMNS
    }


def concat_rows(parts: list[TeacherRows]) -> TeacherRows:
    """Consecutive row ranges as one, column by column."""
    return {name: np.concatenate([p[name] for p in parts]) for name in TEACHER_NAMES}
