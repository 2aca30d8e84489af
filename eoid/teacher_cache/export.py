"""`eoid cache export`: a finished teacher cache as one HDF5 file that any codebase
reads with h5py.

HOI codebases share pre-extracted features as single HDF5 files; this is eoid's cache in
that form. Layout (P pairs, N images, H prompts, V verbs, D embedding width; rows sorted
by image):

    /                     attrs: format "eoid-teacher-cache-hdf5", format_version 1,
                          manifest (manifest.json as JSON text), vocabulary (JSON text)
    /images/keys          (N,) str      file names, as the annotation file gives them
    /images/sizes         (N, 2) int64  (width, height) px of the original images
    /images/offsets       (N+1,) int64  image i holds pairs offsets[i]:offsets[i+1]
    /pairs/NAME           (P,) or (P, width), the cache's dtype: one dataset per per-pair column
                          of teacher_cache/schema.py (its meaning there), PLAN_COLUMNS
                          then TEACHER_COLUMNS, named without the "pair_" prefix:
    /pairs/image          (P,) int32    the pair's image index
    /pairs/box_idx        (P, 2) int32  (human, object) box index in the image's annotation record
    /pairs/human_xyxy, /pairs/object_xyxy   (P, 4) float32  original-image pixels, x1 y1 x2 y2
    /pairs/object_class, /pairs/labelled    (P,) int32, (P,) bool
    /pairs/image_emb      (P, D) float16  unit-length CLIP embedding of the pair's union crop
    /pairs/verb_probs     (P, V) float32  the teacher's verb distribution
    /prompts/text         (H,) str      one prompt per HOI of the vocabulary
    /prompts/text_emb     (H, D) float32  unit-length CLIP text embeddings
    /vocabulary/verbs, /vocabulary/objects   (V,), (num_objects,) str  names, in index order

Datasets are plain (no compression filter), so any HDF5 reader opens them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from eoid.errors import EoidError
from eoid.files import new_file, write_atomic, writing
from eoid.teacher_cache import store_reads
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.schema import (
    PLAN_COLUMNS,
    PLAN_NAMES,
    TEACHER_COLUMNS,
    TEACHER_NAMES,
)

FORMAT = "eoid-teacher-cache-hdf5"
FORMAT_VERSION = 1


def cache_tables(
    reader: CacheReader,
    text_emb: np.ndarray,
    columns: dict[str, np.ndarray],
    image_sizes: list,
) -> dict[str, np.ndarray | list[str]]:
    """Every dataset of the export, by its path in the file (see the module docstring).

    columns: every per-pair column of the schema, by name, as the cache stores it.
    """
    return {
        "images/keys": list(reader.image_keys),
        "images/sizes": np.asarray(image_sizes, dtype=np.int64).reshape(-1, 2),
        "images/offsets": np.asarray(reader.offsets, dtype=np.int64),
        **{
            f"pairs/{c.name.removeprefix('pair_')}": columns[c.name]
            for c in (*PLAN_COLUMNS, *TEACHER_COLUMNS)
        },
        "prompts/text": list(reader.prompts),
        "prompts/text_emb": np.asarray(text_emb, dtype=np.float32),
        "vocabulary/verbs": [v["name"] for v in reader.vocabulary["verbs"]],
        "vocabulary/objects": [o["name"] for o in reader.vocabulary["objects"]],
    }


def _write_file(f: BinaryIO, tables: dict[str, Any], attrs: dict[str, Any]) -> None:
    import h5py

    with h5py.File(f, "w") as h5:
        h5.attrs.update(attrs)
        for name, data in tables.items():
            # names and prompts: variable-length UTF-8 strings
            if isinstance(data, list):
                h5.create_dataset(name, data=data, dtype=h5py.string_dtype())
            else:
                h5.create_dataset(name, data=data)


def export_hdf5(cache: Path, out: Path) -> Path:
    """Write finished cache `cache` as the new HDF5 file `out` (atomically: all of it or
    nothing).

    An existing `out` is refused, as `eoid export` refuses one, and so is a file inside
    the cache.
    """
    out = new_file(out, "the HDF5 export")
    if Path(cache).resolve() in out.resolve().parents:
        raise EoidError(
            f"{out}: inside the cache {cache}, whose files its checksums list; write"
            " the export outside it."
        )
    try:
        import h5py  # noqa: F401  (checked here so a missing extra is one clear line)
    except ImportError:
        raise EoidError(
            "eoid cache export needs h5py: pip install 'eoid[hdf5]' (or pip install"
            " h5py)."
        ) from None
    # an unfinished cache is refused here
    reader = CacheReader(cache, load_embeddings=True)
    unread = tuple(n for n in (*PLAN_NAMES, *TEACHER_NAMES) if n not in reader.columns)
    extra = store_reads.load_arrays(Path(cache), ("text_emb", *unread))
    columns = {**reader.columns, **{n: extra[n] for n in unread}}
    meta = json.loads((Path(cache) / "meta.json").read_text())
    tables = cache_tables(reader, extra["text_emb"], columns, meta["image_sizes"])
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "manifest": json.dumps(reader.manifest),
        "vocabulary": json.dumps(reader.vocabulary),
    }
    with writing(out, "the HDF5 export"):
        write_atomic(out, lambda f: _write_file(f, tables, attrs))
    return out
