"""The zarr store: a damaged chunk is one clear error, and leaves no asyncio noise
behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import numpy as np, zarr
from eoid.errors import CacheMismatchError
from eoid.teacher_cache import store_reads
group = zarr.open_group({path!r}, mode="w", zarr_format=3)
array = group.create_array("verb_probs", shape=(65536, 117), dtype="float16", chunks=(4096, 117),
                           shards=(4096, 117), compressors=zarr.codecs.ZstdCodec(level=1),
                           fill_value=0)
array[...] = np.random.default_rng(0).random((65536, 117)).astype("float16")
shard = {path!r} + "/verb_probs/c/3/0"
data = bytearray(open(shard, "rb").read())
data[100: len(data) // 2] = b"x" * (len(data) // 2 - 100)     # a damaged chunk among 16 shards
open(shard, "wb").write(data)
try:
    store_reads.load_arrays(__import__("pathlib").Path({path!r}), ("verb_probs",))
except CacheMismatchError as err:
    print("refused:", err)
"""


def test_a_damaged_chunk_is_a_cache_error_and_no_pending_read_is_reported_at_exit(
    tmp_path,
):
    # zarr reads the 16 shards as concurrent tasks; before the fix the other reads were
    # still pending when the process ended and asyncio logged "Task was destroyed but it
    # is pending!"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(path=str(tmp_path / "cache"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "refused:" in done.stdout and "array 'verb_probs' is unreadable" in done.stdout
    )
    assert "rebuild it with `eoid cache-teacher`" in done.stdout
    assert done.stderr == "", done.stderr[-2000:]
