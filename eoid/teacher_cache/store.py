"""The teacher cache on disk: one zarr v3 group of flat per-pair arrays sorted by image.

Layout (ENVIRONMENT_FACTS §4: flat ragged table + per-image offsets, sharded, zstd):

    CACHE/zarr.json, image_offsets (N+1,) int64: image i = rows offsets[i]:offsets[i+1]
    per pair (P rows): one array per column of schema.py, each (P,) or (P, width) in its
    dtype:
        the plan columns (PLAN_COLUMNS: pair_image, pair_box_idx, boxes, object_class,
        labelled) and the teacher columns (TEACHER_COLUMNS: image_emb (P,D) float16,
        verb_probs (P,V) float32)
    text_emb (H,D) float32; meta.json: image keys and sizes, prompts, vocabulary
    plan.json: fingerprint + layout, written when the folder is created (its presence
    marks
        creation done; a folder without it holds a half-created store, removed and made
        again)
    .recipe.json: manifest.json to be (without checksums), from creation until
    manifest.json: a
        part or rerun with another recipe is refused before it writes anything
    progress/shard-NNNNN.done: a teacher shard is written and fsynced; holds its files'
    sha256 partial/shard-NNNNN/block-NNNNN.npz: finished blocks of an unfinished shard
    (resume) progress/.shard-NNNNN.lock: the claim of the one process computing that
    shard (O_EXCL) manifest.json: written last; its presence marks a complete cache

Checksums: plan.json records the sha256 of every file written at creation (metadata,
plan arrays, meta.json), each shard's done marker those of its shard files, and
manifest.json all of them (`collect_checksums`). A reader checks the files it loads
against them (`store_reads.verify_files`), so a flipped byte, an emptied or swapped chunk file or an
edited meta.json is refused, not read.

Only the teacher columns are written after creation, one whole shard at a time by the
one writer that owns the shard (two writers in one zarr shard silently lose rows).

Every shard file is written, even one that holds only zeros (zarr would skip it and read
a missing file back as zeros): so a reader can tell a deleted or lost shard from real
data. A failed write (disk full) is an EoidError; the files written before it stay
valid. A kill at any instant leaves files that the rerun either keeps (finished shards,
blocks, plan.json) or removes (a half-created store, a half-written shard, temporaries
of dead writers): the rerun ends with the bytes of an uninterrupted run. Each durable
step calls files.fault_point.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from eoid.errors import CacheMismatchError
from eoid.files import (
    fault_point,
    file_sha256,
    read_json,
    remove_dead_temporaries,
    write_bytes_atomic,
    write_json_atomic,
    writing,
)
from eoid.teacher_cache.plan import CachePlan, ShardLayout
from eoid.teacher_cache.schema import (
    PLAN_COLUMNS,
    PLAN_NAMES,
    TEACHER_COLUMNS,
    TEACHER_NAMES,
    TeacherRows,
    stored_rows,
)

# from the first file of creation until plan.json: "ours, half made"
MARKER = ".eoid-teacher-cache"
RECIPE = ".recipe.json"
# what creation writes at the top of the folder: a half-created store is exactly these
CREATED = (
    "zarr.json",
    *PLAN_NAMES,
    *TEACHER_NAMES,
    "image_offsets",
    "text_emb",
    "meta.json",
    "progress",
    "partial",
    RECIPE,
)


@contextmanager
def _every_chunk_written():
    """zarr writes chunks equal to the fill value too (a missing shard file is then
    always an error).
    """
    import zarr

    with zarr.config.set({"array.write_empty_chunks": True}):
        yield


# ---------------------------------------------------------------- creation


def _create(
    group: Any,
    name: str,
    data: np.ndarray | None,
    shape: tuple[int, ...],
    dtype: str,
    shard_rows: int,
) -> Any:
    import zarr

    chunk = 1024 if shard_rows % 1024 == 0 else shard_rows
    arr = group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=(chunk,) + shape[1:],
        shards=(shard_rows,) + shape[1:],
        compressors=zarr.codecs.ZstdCodec(level=1),
        fill_value=0,
    )
    if data is not None and shape[0]:
        arr[...] = data
    fault_point(f"array {name} created")
    return arr


def is_half_created(path: Path) -> bool:
    """Whether `path` holds a store whose creation a kill cut short: zarr.json beside
    nothing but the store's own files and dot-files, and no plan.json (creation
    writes it last)."""
    names = {p.name for p in path.iterdir()}
    return (
        "zarr.json" in names
        and "plan.json" not in names
        and all(
            n in CREATED or n.startswith(".") or n.endswith(".partial") for n in names
        )
    )


def remove_half_created(path: Path) -> None:
    """Remove what a killed creation wrote (CREATED, zarr's *.partial temporaries),
    nothing else: locks, the marker and files of other writers stay."""
    for name in CREATED:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for tmp in path.glob("zarr.*.partial"):
        tmp.unlink(missing_ok=True)


def create_store(
    path: Path,
    plan: CachePlan,
    layout: ShardLayout,
    text_emb: np.ndarray,
    meta: dict,
    plan_json: dict,
    recipe: dict | None = None,
) -> None:
    """Write the plan columns, text embeddings, metadata and recipe; plan.json last
    marks creation done.

    A half-created store (a killed creation) is removed first; the caller holds the init
    lock. recipe: manifest.json to be, without checksums (RECIPE; None writes none).
    """
    with writing(path, "the cache's plan arrays"), _every_chunk_written():
        _create_store(path, plan, layout, text_emb, meta, plan_json, recipe)


def _create_store(
    path: Path,
    plan: CachePlan,
    layout: ShardLayout,
    text_emb: np.ndarray,
    meta: dict,
    plan_json: dict,
    recipe: dict | None,
) -> None:
    import zarr

    remove_half_created(path)
    # mode "a" creates the group without emptying the folder ("w" would delete the locks
    # in it)
    group = zarr.open_group(str(path), mode="a", zarr_format=3)
    fault_point("group created")
    D = text_emb.shape[1]
    sizes = {"embed_dim": D, "num_verbs": len(meta["vocabulary"]["verbs"])}
    for column in PLAN_COLUMNS:  # written now, from the plan
        data = np.asarray(getattr(plan, column.name)).astype(column.dtype, copy=False)
        _create(
            group,
            column.name,
            data,
            column.shape(plan.num_pairs, sizes),
            column.dtype,
            layout.shard_rows,
        )
    for column in TEACHER_COLUMNS:  # written shard by shard (write_shard)
        _create(
            group,
            column.name,
            None,
            column.shape(plan.num_pairs, sizes),
            column.dtype,
            layout.shard_rows,
        )
    group.create_array(
        "image_offsets",
        data=plan.image_offsets.astype(np.int64),
        chunks=(len(plan.image_offsets),),
    )
    group.create_array(
        "text_emb",
        data=np.asarray(text_emb, np.float32),
        chunks=text_emb.shape if text_emb.size else (1, max(1, D)),
    )
    fault_point("arrays image_offsets, text_emb created")
    write_json_atomic(path / "meta.json", meta, "a cache file")
    (path / "progress").mkdir(exist_ok=True)
    (path / "partial").mkdir(exist_ok=True)
    if recipe is not None:
        write_json_atomic(path / RECIPE, recipe, "a cache file")
    created = [
        p for p in sorted(path.rglob("*")) if p.is_file() and _is_data_file(path, p)
    ]
    write_json_atomic(
        path / "plan.json",
        {**plan_json, "checksums": file_checksums(path, created)},
        "a cache file",
    )
    (path / MARKER).unlink(missing_ok=True)  # plan.json says it now


# ---------------------------------------------------------------- shards, blocks,
# progress


def shard_done_path(path: Path, shard: int) -> Path:
    return path / "progress" / f"shard-{shard:05d}.done"


def shard_claim_path(path: Path, shard: int) -> Path:
    """The lock file of the one process computing `shard` (locks.FolderLock)."""
    return path / "progress" / f".shard-{shard:05d}.lock"


def remove_leftovers(path: Path, layout: ShardLayout) -> None:
    """Remove what killed writers left that a finished cache must not hold:
    temporaries of dead writers, the blocks and claims of done shards, the creation
    marker once plan.json exists, and the recipe once manifest.json exists."""
    remove_dead_temporaries(path)
    if (path / "plan.json").is_file():
        (path / MARKER).unlink(missing_ok=True)
    for shard in done_shards(path):
        shutil.rmtree(path / "partial" / f"shard-{shard:05d}", ignore_errors=True)
        shard_claim_path(path, shard).unlink(missing_ok=True)
    if (path / "manifest.json").is_file():
        (path / RECIPE).unlink(missing_ok=True)


def _is_data_file(root: Path, file: Path) -> bool:
    """A file of the store itself (not progress, partial blocks, locks, plan.json or
    manifest.json).
    """
    rel = file.relative_to(root)
    return (
        rel.parts[0] not in ("progress", "partial")
        and not rel.name.startswith(".")
        and str(rel) not in ("plan.json", "manifest.json")
    )


def file_checksums(root: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to `root` (POSIX): sha256} of `files`."""
    return {file.relative_to(root).as_posix(): file_sha256(file) for file in files}


def collect_checksums(path: Path, layout: ShardLayout) -> dict[str, str]:
    """Every file's sha256, from plan.json and the shards' done markers (for
    manifest.json).
    """
    found = dict(read_json(path / "plan.json", CacheMismatchError).get("checksums", {}))
    for shard in range(layout.num_shards):
        marker = read_json(
            shard_done_path(path, shard),
            CacheMismatchError,
            "Delete that file and rerun `eoid cache-teacher` to write the shard again.",
        )
        found.update(marker["checksums"])
    return dict(sorted(found.items()))


def done_shards(path: Path) -> set[int]:
    folder = path / "progress"
    if not folder.is_dir():
        return set()
    return {int(p.name[6:11]) for p in folder.glob("shard-*.done")}


def block_path(path: Path, shard: int, block_lo: int) -> Path:
    return path / "partial" / f"shard-{shard:05d}" / f"rows-{block_lo:012d}.npz"


def save_block(path: Path, shard: int, block_lo: int, rows: TeacherRows) -> None:
    """Keep a finished block of an unfinished shard (every teacher column, in the store's dtypes),
    atomically."""
    target = block_path(path, shard, block_lo)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **stored_rows(rows))
    write_bytes_atomic(target, buffer.getvalue(), "a block of teacher rows")


def load_block(path: Path, shard: int, block_lo: int, rows: int) -> TeacherRows | None:
    """A saved block of `rows` rows, or None if absent, unreadable or short of a
    teacher column (then it is recomputed)."""
    target = block_path(path, shard, block_lo)
    try:
        with np.load(target, allow_pickle=False) as z:
            block = {name: z[name] for name in TEACHER_NAMES}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    return block if all(len(data) == rows for data in block.values()) else None


def write_shard(path: Path, layout: ShardLayout, shard: int, rows: TeacherRows) -> None:
    """Write one whole teacher shard (every teacher column), fsync it, then mark it
    done and drop its blocks."""
    import zarr

    lo, hi = layout.shard_range(shard)
    written: list[Path] = []
    with (
        writing(path, f"teacher shard {shard} (rows {lo}:{hi})"),
        _every_chunk_written(),
    ):
        group = zarr.open_group(str(path), mode="r+")
        for name, data in stored_rows(rows).items():
            shard_file = path / name / "c" / str(shard)
            # a kill may have left this shard half written: start it afresh, or zarr
            # would merge the new rows into the old file and the bytes would depend on
            # where the kill fell
            if shard_file.is_dir():
                shutil.rmtree(shard_file)
            else:
                shard_file.unlink(missing_ok=True)
            # zarr's, of a killed write
            for tmp in shard_file.parent.glob(f"{shard}.*.partial"):
                tmp.unlink(missing_ok=True)
            group[name][lo:hi] = data
            fault_point(f"{name} shard {shard} written")
            for f in (
                [shard_file] if shard_file.is_file() else sorted(shard_file.rglob("*"))
            ):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                    written.append(f)
    marker = json.dumps({"checksums": file_checksums(path, written)}, indent=1) + "\n"
    write_bytes_atomic(shard_done_path(path, shard), marker.encode(), "a cache file")
    shutil.rmtree(path / "partial" / f"shard-{shard:05d}", ignore_errors=True)
    fault_point(f"blocks of shard {shard} removed")
