"""The schema's law: the store, its blocks and the export hold exactly the schema's
columns.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from eoid.teacher_cache import store, store_reads
from eoid.teacher_cache.schema import (
    PLAN_COLUMNS,
    PLAN_NAMES,
    SIZES,
    TEACHER_COLUMNS,
    TEACHER_NAMES,
    stored_rows,
)

COLUMNS = (*PLAN_COLUMNS, *TEACHER_COLUMNS)


def _sizes(cache) -> dict[str, int]:
    manifest = json.loads((cache / "manifest.json").read_text())
    meta = json.loads((cache / "meta.json").read_text())
    return {
        "embed_dim": manifest["embed_dim"],
        "num_verbs": len(meta["vocabulary"]["verbs"]),
    }


def test_column_names_are_unique_and_widths_name_a_size_of_the_store():
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)
    assert all(
        c.width is None or isinstance(c.width, int) or c.width in SIZES for c in COLUMNS
    )
    assert all(c.meaning for c in COLUMNS)


def test_a_written_store_holds_every_column_with_its_dtype_and_width_and_no_other(
    synth_cache,
):
    # besides the per-pair columns the store holds only the offsets and the prompt
    # embeddings
    arrays_on_disk = {p.parent.name for p in synth_cache.glob("*/zarr.json")}
    assert arrays_on_disk == {*PLAN_NAMES, *TEACHER_NAMES, "image_offsets", "text_emb"}
    num_pairs = json.loads((synth_cache / "manifest.json").read_text())["fingerprint"][
        "num_pairs"
    ]
    # every shard file present
    arrays = store_reads.load_arrays(synth_cache, (*PLAN_NAMES, *TEACHER_NAMES))
    for column in COLUMNS:
        data = arrays[column.name]
        assert data.dtype == np.dtype(column.dtype), column.name
        assert data.shape == column.shape(num_pairs, _sizes(synth_cache)), column.name


def test_a_block_round_trips_every_teacher_column_in_the_stores_dtype(tmp_path):
    # float64 in: the block keeps each column in the store's dtype, exactly as a shard
    # would
    sizes = {"embed_dim": 5, "num_verbs": 3}
    rng = np.random.default_rng(0)
    rows = {c.name: rng.random(c.shape(4, sizes)) for c in TEACHER_COLUMNS}
    store.save_block(tmp_path, 2, 64, rows)
    got = store.load_block(tmp_path, 2, 64, 4)
    assert got is not None and list(got) == list(TEACHER_NAMES)
    for column in TEACHER_COLUMNS:
        assert got[column.name].dtype == np.dtype(column.dtype)
        assert np.array_equal(got[column.name], rows[column.name].astype(column.dtype))


def test_a_block_missing_a_teacher_column_is_recomputed(tmp_path):
    # a block of an older eoid without a column: read as absent, not as a short row set
    target = store.block_path(tmp_path, 0, 0)
    target.parent.mkdir(parents=True)
    np.savez(target, **{TEACHER_NAMES[0]: np.zeros((4, 2), np.float16)})
    assert store.load_block(tmp_path, 0, 0, 4) is None


def test_teacher_rows_without_every_column_or_with_an_unknown_one_are_refused():
    rows = {c.name: np.zeros((1, 1)) for c in TEACHER_COLUMNS}
    with pytest.raises(ValueError, match="schema's teacher columns"):
        stored_rows({k: v for k, v in rows.items() if k != TEACHER_NAMES[-1]})
    with pytest.raises(ValueError, match="schema's teacher columns"):
        stored_rows({**rows, "object_emb": np.zeros((1, 1))})


def test_the_export_holds_every_column_as_a_pairs_dataset_in_its_dtype(
    synth_cache, tmp_path
):
    h5py = pytest.importorskip("h5py")
    from eoid.teacher_cache.export import export_hdf5

    out = export_hdf5(synth_cache, tmp_path / "cache.h5")
    with h5py.File(out, "r") as f:
        assert set(f["pairs"]) == {c.name.removeprefix("pair_") for c in COLUMNS}
        for column in COLUMNS:
            assert f[f"pairs/{column.name.removeprefix('pair_')}"].dtype == np.dtype(
                column.dtype
            )
