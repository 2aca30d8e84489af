"""A reader opened to derive a cache (relabel, merge) leaves the embeddings on disk and
reads them a range at a time: the same rows, checked as strictly as a whole load.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from eoid.errors import CacheMismatchError
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.schema import TEACHER_NAMES


def test_ranged_rows_equal_the_whole_load_on_every_range(synth_cache):
    whole = CacheReader(synth_cache, load_embeddings=True)
    ranged = CacheReader(synth_cache, derive=True)
    assert "image_emb" in whole.columns and "image_emb" not in ranged.columns
    total = len(whole.verb_probs)
    # 16-row shards: ranges inside one, across two, the whole, and empty
    for lo, hi in ((0, 16), (5, 11), (10, 40), (0, total), (total, total)):
        a, b = whole.teacher_rows(lo, hi), ranged.teacher_rows(lo, hi)
        assert set(a) == set(b) == set(TEACHER_NAMES)
        for name in TEACHER_NAMES:
            assert a[name].dtype == b[name].dtype
            assert np.array_equal(a[name], b[name]), (name, lo, hi)


def test_a_missing_embedding_shard_is_refused_when_the_reader_opens(
    synth_cache, tmp_path
):
    cache = tmp_path / "cache"
    shutil.copytree(synth_cache, cache)
    (cache / "image_emb" / "c" / "1" / "0").unlink()
    with pytest.raises(CacheMismatchError, match="image_emb"):
        CacheReader(cache, derive=True)
