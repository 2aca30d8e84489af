"""Parts of `eoid cache-teacher` run at the same time into one --out, as a cluster job
array starts them: every part finishes, in any order and overlap, and the store's bytes
(every file's sha256) equal a one-process cache. The parts are real processes (forked by
cache_jobs.py, which imports torch once); a part with another recipe is refused naming
the difference.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from eoid.config import CacheConfig
from eoid.errors import CacheMismatchError
from eoid.locks import FolderLock

from tiny_train import (
    ROOT,
    WORLD,
    assert_like_one_process,
    cache_bytes,
    cache_command,
    cache_config,
    run_jobs,
    subprocess_env,
)


@pytest.fixture(scope="module")
def jobs(synth, clip_weights, tmp_path_factory) -> dict:
    """Two parts started together; two parts with part 1 SIGKILLed once it claimed a
    shard, rerun.
    """
    return run_jobs(
        synth,
        clip_weights,
        tmp_path_factory.mktemp("jobs"),
        [
            {"name": "together2", "kind": "parts", "parts": ["0/2", "1/2"]},
            {
                "name": "killed",
                "kind": "killed",
                "parts": ["0/2", "1/2"],
                "kill": 1,
                "after_done": 1,
            },
        ],
    )


def test_two_parts_started_together_both_finish_with_the_bytes_of_one_process(jobs):
    assert_like_one_process(jobs, "together2", [0, 0])


def test_a_part_killed_mid_run_and_rerun_finishes_with_the_bytes_of_one_process(jobs):
    # the killed part's exit is -9; the other finishes its shards; the rerun of the
    # killed part breaks its dead claims and lock, finishes its shards and (last to
    # finish) writes the manifest
    assert_like_one_process(jobs, "killed", [0, -9, 0])


@pytest.fixture(scope="module")
def many(synth, clip_weights, tmp_path_factory) -> dict:
    return run_jobs(
        synth,
        clip_weights,
        tmp_path_factory.mktemp("many"),
        [
            {"name": "together3", "kind": "parts", "parts": ["0/3", "1/3", "2/3"]},
            {
                "name": "staggered3",
                "kind": "parts",
                "parts": ["2/3", "0/3", "1/3"],
                "delays": [0, 0.7, 0.7],
            },
            {
                "name": "together8",
                "kind": "parts",
                "parts": [f"{i}/8" for i in range(8)],
            },
            # parts whose counts disagree: the shard claims keep two processes out of one
            # shard
            {
                "name": "mixed",
                "kind": "parts",
                "parts": ["0/2", "0/3", "1/3", "1/2", "2/3"],
            },
        ],
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,num_parts",
    [("together3", 3), ("staggered3", 3), ("together8", 8), ("mixed", 5)],
)
def test_parts_together_staggered_or_with_other_part_counts_give_the_bytes_of_one_process(
    many, name, num_parts
):
    # 5 shards: with 8 parts, three parts own no shard and only check the store and
    # finish
    assert_like_one_process(many, name, [0] * num_parts)


def _part(cfg: CacheConfig, part: str) -> CacheConfig:
    return CacheConfig(data=cfg.data, teacher=cfg.teacher, out=cfg.out, part=part)


def test_a_part_started_with_another_batch_size_is_refused_naming_it(
    synth, clip_weights, cache, tmp_path
):
    from eoid.pipeline.run_cache import run_cache

    out = tmp_path / "cache"
    run_cache(_part(cache_config(synth, clip_weights, out), "0/2"), WORLD)
    # the encoder's batch size changes the rows' last bits (a batch of 11 rows is not 8
    # + 3), so a part with another one would give bytes that depend on which part wrote
    # which shard
    other = _part(cache_config(synth, clip_weights, out, batch_size=8), "1/2")
    with pytest.raises(
        CacheMismatchError,
        match=r"teacher\.batch_size is 8 here, 16 in the parts or run "
        r"that started it\. Give every part",
    ):
        run_cache(other, WORLD)
    run_cache(_part(cache_config(synth, clip_weights, out), "1/2"), WORLD)
    assert cache_bytes(out) == cache_bytes(cache)


def test_a_shard_claimed_by_a_live_process_is_left_to_it(
    synth, clip_weights, cache, tmp_path
):
    from eoid.pipeline.run_cache import run_cache
    from eoid.teacher_cache import store

    out = tmp_path / "cache"
    # shards 1 and 3
    run_cache(_part(cache_config(synth, clip_weights, out), "1/2"), WORLD)
    # this test process computes shard 2
    with FolderLock(store.shard_claim_path(out, 2)):
        run_cache(_part(cache_config(synth, clip_weights, out), "0/2"), WORLD)
        assert (
            store.done_shards(out) == {0, 1, 3, 4}
            and not (out / "manifest.json").exists()
        )
    # the claim is gone
    run_cache(_part(cache_config(synth, clip_weights, out), "0/2"), WORLD)
    assert cache_bytes(out) == cache_bytes(cache)
    assert not [p for p in out.rglob(".*")]


@pytest.mark.slow
def test_two_cache_teacher_commands_started_together_exit_0_with_the_bytes_of_one_process(
    synth, clip_weights, cache, tmp_path
):
    out = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            cache_command(synth, clip_weights, out, f"--part={i}/2"),
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("Traceback" in e for e in errs)
    assert cache_bytes(out) == cache_bytes(cache) and not [p for p in out.rglob(".*")]
    assert os.listdir(out / "partial") == []
