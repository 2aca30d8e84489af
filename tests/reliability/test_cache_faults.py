"""A kill or a full disk at any instant of writing a teacher cache is resumable: the
same command rerun ends with the bytes of an uninterrupted run and leaves no temporary,
lock or block behind.

The kill sweep stops a run at every durable file step it takes (files.fault_point,
EOID_FAULT_AT=N: creating the store, each array, meta.json, the recipe, plan.json, each
shard and its done marker, manifest.json), not at a few chosen ones.
"""

from __future__ import annotations

import errno

import pytest

from eoid import files
from eoid.errors import EoidError

from tiny_train import WORLD, cache_bytes, cache_config, run_jobs


@pytest.fixture(scope="module")
def sweep(synth, clip_weights, tmp_path_factory) -> dict:
    """Every durable step of a one-process run (3 shards of 32 rows), then a kill at
    each, rerun.
    """
    root = tmp_path_factory.mktemp("sweep")
    (root / "count").mkdir()
    (root / "kills").mkdir()
    steps = run_jobs(
        synth, clip_weights, root / "count", [{"name": "count", "kind": "count"}], 32
    )["count"]["steps"]
    kills = run_jobs(
        synth,
        clip_weights,
        root / "kills",
        [
            {"name": "sweep", "kind": "sweep", "steps": list(range(1, len(steps) + 1))},
            {
                "name": "random",
                "kind": "random",
                "delays": [0.3, 0.6, 0.9, 1.2, 1.5, 1.8],
            },
        ],
        32,
    )
    return {**kills, "steps": steps, "one": kills["one"]["digests"]}


@pytest.mark.slow
def test_a_kill_at_every_durable_step_then_a_rerun_gives_the_uninterrupted_bytes(sweep):
    steps = sweep["steps"]
    # creation (marker, group, 10 arrays, meta, recipe, plan), 3 shards, the manifest
    assert any("plan.json renamed" in s for s in steps) and any(
        "manifest.json" in s for s in steps
    )
    assert sum("done renamed" in s for s in steps) == 3
    for n, got in sweep["sweep"]["per_step"].items():
        where = steps[int(n) - 1]
        # killed at that step, then finished
        assert got["rcs"] == [137, 0], where
        assert got["digests"] == sweep["one"], where  # every file byte for byte
        # no temporary, lock, claim or block
        assert got["leftovers"] == [], where


@pytest.mark.slow
def test_sigkill_at_random_times_then_a_rerun_gives_the_uninterrupted_bytes(sweep):
    for got in sweep["random"]["per_kill"]:
        # 0: finished before the kill
        assert got["rcs"][1] == 0 and got["rcs"][0] in (-9, 0)
        assert got["digests"] == sweep["one"] and got["leftovers"] == []


def _disk_full_from(monkeypatch, call: int) -> list[int]:
    """From its `call`-th call on, every fsync fails as on a full disk (ENOSPC); returns
    the count.
    """
    real, calls = files.os.fsync, [0]

    def full(fd):
        calls[0] += 1
        if calls[0] >= call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", full)
    return calls


def _zarr_full_on(monkeypatch, fragment: str) -> None:
    """zarr's writes of files whose path holds `fragment` fail as on a full disk."""
    import zarr.storage._local as zarr_local

    real = zarr_local._put

    def full(path, value, *args, **kwargs):
        if fragment in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, value, *args, **kwargs)

    monkeypatch.setattr(zarr_local, "_put", full)


# the disk fills while the store is created (an array, meta.json, plan.json), at a
# shard's done marker, or at the manifest (the 1st fsync is the part lock, then
# creation's files, ...)
@pytest.mark.parametrize("fsync_call", [1, 2, 4, 6, 9, 11])
def test_a_full_disk_during_cache_teacher_is_one_error_and_the_rerun_gives_the_same_bytes(
    synth, clip_weights, cache, tmp_path, monkeypatch, fsync_call
):
    from eoid.pipeline.run_cache import run_cache

    out = tmp_path / "cache"
    calls = _disk_full_from(monkeypatch, fsync_call)
    with pytest.raises(
        EoidError, match="No space left on device.*run the same command again"
    ):
        run_cache(cache_config(synth, clip_weights, out), WORLD)
    assert calls[0] >= fsync_call
    monkeypatch.undo()  # space freed
    run_cache(cache_config(synth, clip_weights, out), WORLD)
    assert cache_bytes(out) == cache_bytes(cache) and not list(out.rglob(".*"))


def test_a_full_disk_while_creating_the_arrays_leaves_a_folder_the_rerun_finishes(
    synth, clip_weights, cache, tmp_path, monkeypatch
):
    from eoid.pipeline.run_cache import run_cache

    out = tmp_path / "cache"
    _zarr_full_on(monkeypatch, "labelled/c")
    with pytest.raises(EoidError, match="could not write the cache's plan arrays"):
        run_cache(cache_config(synth, clip_weights, out), WORLD)
    monkeypatch.undo()
    run_cache(cache_config(synth, clip_weights, out), WORLD)
    assert cache_bytes(out) == cache_bytes(cache) and not list(out.rglob(".*"))


@pytest.mark.parametrize("command", ["relabel", "merge"])
@pytest.mark.parametrize("fsync_call", [1, 3, 8])
def test_relabel_and_merge_on_a_full_disk_are_one_error_and_resume_to_the_same_bytes(
    cache, tmp_path, monkeypatch, command, fsync_call
):
    from eoid.pipeline.run_cache_merge import run_merge
    from eoid.pipeline.run_cache_relabel import run_relabel

    def run(out):
        if command == "relabel":
            return run_relabel(cache, out, gamma=50.0)
        return run_merge([cache, cache], out, weights="2,1")

    clean = run(tmp_path / "clean")
    _disk_full_from(monkeypatch, fsync_call)
    with pytest.raises(
        EoidError, match="No space left on device.*run the same command again"
    ) as err:
        run(tmp_path / "out")
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    run(tmp_path / "out")
    assert cache_bytes(tmp_path / "out") == cache_bytes(clean)
    assert not list((tmp_path / "out").rglob(".*"))


def test_remove_dead_temporaries_keeps_those_of_live_writers_and_other_hosts(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    (tmp_path / "sub").mkdir()
    # this host, pid gone: removed
    names = {
        f".a.json.tmp-{host}-{dead.pid}": False,
        # the older form, pid gone: removed
        f".b.json.tmp-{dead.pid}": False,
        f"sub/.c.done.tmp-{host}-{dead.pid}": False,  # in a subfolder too
        f".d.json.tmp-{host}-{os.getpid()}": True,  # a live writer's: kept
        # another host's: cannot tell, kept
        f".e.json.tmp-node-17.cluster-{dead.pid}": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"half")
    files.remove_dead_temporaries(tmp_path)
    assert {n: (tmp_path / n).exists() for n in names} == names
