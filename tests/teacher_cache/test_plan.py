"""Pure planning of phase 1: shards per part, encoder batches, image segments."""

import numpy as np
import pytest

from eoid.devices import World
from eoid.errors import ConfigError
from eoid.pipeline.run_cache import part_of
from eoid.teacher_cache.plan import (
    ShardLayout,
    batch_ranges,
    make_layout,
    segments_for,
    shard_for,
)
from eoid.teacher_cache.store import load_block, save_block


def test_parts_own_disjoint_shards_that_cover_all():
    owners = [shard_for(s, 3) for s in range(10)]
    assert sorted(set(owners)) == [0, 1, 2] and owners[:4] == [0, 1, 2, 0]


def test_part_comes_from_the_flag_or_from_torchrun():
    assert part_of("", World()) == (0, 1)
    assert part_of("2/4", World()) == (2, 4)
    assert part_of("", World(rank=1, world_size=2)) == (1, 2)
    for bad in ("4/4", "a/b", "1"):
        with pytest.raises(ConfigError):
            part_of(bad, World())


def test_large_shards_split_into_1024_row_blocks():
    layout = make_layout(num_pairs=5000, shard_rows=2048)
    assert layout.num_shards == 3
    assert layout.blocks(2) == [(4096, 5000)]
    assert layout.blocks(0) == [(0, 1024), (1024, 2048)]


def test_batches_restart_at_block_boundaries_so_a_resume_sees_the_same_batches():
    layout = ShardLayout(shard_rows=8, block_rows=4, num_pairs=14)
    full = batch_ranges(layout, [0, 1], set(), batch_size=3)
    assert full == [
        (0, 0, 3),
        (0, 3, 4),
        (0, 4, 7),
        (0, 7, 8),
        (1, 8, 11),
        (1, 11, 12),
        (1, 12, 14),
    ]
    # blocks at rows 0 and 8 saved
    resumed = batch_ranges(layout, [0, 1], {0, 8}, batch_size=3)
    assert resumed == [b for b in full if b[1] not in (0, 3, 8, 11)]


def test_segments_cover_the_rows_once_per_image_run():
    # image 1 has no pairs
    offsets = np.array([0, 3, 3, 7, 10])
    segs = segments_for(offsets, [(0, 0, 2), (0, 2, 5), (1, 8, 10)])
    assert segs == [(0, 0, 3), (2, 3, 5), (3, 8, 10)]


def test_a_saved_block_reads_back_and_a_truncated_one_is_recomputed(tmp_path):
    rows = {
        "image_emb": np.ones((4, 3), np.float16),
        "verb_probs": np.full((4, 2), 0.5, np.float32),
    }
    save_block(tmp_path, 0, 1024, rows)
    got = load_block(tmp_path, 0, 1024, 4)
    assert got is not None and all(np.array_equal(got[k], rows[k]) for k in rows)
    # not the block of 5 rows asked for
    assert load_block(tmp_path, 0, 1024, 5) is None
    path = tmp_path / "partial" / "shard-00000" / "rows-000000001024.npz"
    path.write_bytes(path.read_bytes()[:50])
    assert load_block(tmp_path, 0, 1024, 4) is None
