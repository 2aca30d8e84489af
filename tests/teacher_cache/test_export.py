"""`eoid cache export`: the HDF5 file holds exactly the cache; unfinished caches
refused; atomic writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from eoid.errors import CacheMismatchError, EoidError
from eoid.teacher_cache import store_reads
from eoid.teacher_cache.export import FORMAT, export_hdf5
from eoid.teacher_cache.lookup import CacheReader

h5py = pytest.importorskip("h5py")


@pytest.fixture
def cache(synth_cache) -> Path:
    return synth_cache  # several 16-row shards: the export joins them


def test_the_export_read_back_with_h5py_alone_equals_the_cache(cache, tmp_path):
    out = export_hdf5(cache, tmp_path / "sub" / "cache.h5")  # the folder is created
    reader = CacheReader(cache, load_embeddings=True)
    extra = store_reads.load_arrays(cache, ("text_emb", "pair_image"))
    meta = json.loads((cache / "meta.json").read_text())
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == 1
        assert json.loads(f.attrs["manifest"]) == reader.manifest
        assert json.loads(f.attrs["vocabulary"]) == reader.vocabulary
        assert list(f["images/keys"].asstr()[:]) == reader.image_keys
        assert f["images/sizes"][:].tolist() == meta["image_sizes"]
        assert list(f["prompts/text"].asstr()[:]) == reader.prompts
        assert list(f["vocabulary/verbs"].asstr()[:]) == [
            v["name"] for v in reader.vocabulary["verbs"]
        ]
        same = {
            "images/offsets": reader.offsets,
            "pairs/human_xyxy": reader.human_xyxy,
            "pairs/object_xyxy": reader.object_xyxy,
            "pairs/object_class": reader.object_class,
            "pairs/labelled": reader.labelled,
            "pairs/box_idx": reader.pair_box_idx,
            "pairs/image": extra["pair_image"],
            "pairs/image_emb": reader.image_emb,
            "pairs/verb_probs": reader.verb_probs,
            "prompts/text_emb": extra["text_emb"],
        }
        for name, expected in same.items():
            got = f[name][:]
            assert got.shape == expected.shape and np.array_equal(got, expected), name
        # the cache's own dtype, whatever it is (float16 today), not a fixed one
        assert f["pairs/verb_probs"].dtype == reader.verb_probs.dtype
        # offsets index the pair rows: every pair of image i points back at image i
        offsets, image = f["images/offsets"][:], f["pairs/image"][:]
        assert all(
            (image[offsets[i] : offsets[i + 1]] == i).all()
            for i in range(len(offsets) - 1)
        )


def test_an_unfinished_cache_is_refused_and_nothing_is_written(cache, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "plan.json").write_text((cache / "plan.json").read_text())
    with pytest.raises(CacheMismatchError, match="unfinished teacher cache"):
        export_hdf5(unfinished, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_a_failed_export_leaves_no_file_and_no_temporary_file(
    cache, tmp_path, monkeypatch
):
    import eoid.teacher_cache.export as export

    target = tmp_path / "cache.h5"

    def disk_full(f, tables, attrs):
        f.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_file", disk_full)
    with pytest.raises(EoidError, match="No space left"):
        export_hdf5(cache, target)
    assert os.listdir(tmp_path) == []


def test_an_existing_file_and_a_file_inside_the_cache_are_refused_and_kept(
    cache, tmp_path
):
    target = tmp_path / "cache.h5"
    target.write_bytes(b"someone's file")
    with pytest.raises(EoidError, match="already exists"):
        export_hdf5(cache, target)
    assert target.read_bytes() == b"someone's file"
    with pytest.raises(EoidError, match="inside the cache"):
        export_hdf5(cache, cache / "export.h5")
    assert not (cache / "export.h5").exists()
