"""Many parts writing one teacher cache folder, race-safe: the store is created once
under an init lock (a rerun or part with another recipe is refused naming the first
difference), each process claims the shards it computes so that two never write one zarr
shard, and whichever part finds every shard done writes manifest.json with every file's
checksum. `write_derived` writes a cache computed from finished ones (relabel, merge)
through the same steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from eoid.errors import CacheMismatchError
from eoid.files import fault_point, read_json, write_json_atomic, writing
from eoid.locks import FolderLock
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.plan import CachePlan, ShardLayout
from eoid.teacher_cache.schema import TeacherRows

OURS = (
    store.MARKER,
    ".init.lock",
    ".manifest.lock",
    ".lock-part-",
    ".eoid-write-test-",
)


def prepare_store(
    out: Path,
    plan: CachePlan,
    layout: ShardLayout,
    recipe: dict,
    text_emb: Callable[[], np.ndarray],
    meta: dict,
    break_lock: bool,
) -> None:
    """Create the store once (parts wait on an init lock) or check that it fits this
    run.

    recipe: manifest.json to be, without checksums (its "fingerprint" and "config"): a
    store started with another one is refused naming the first difference, so every part
    and every rerun writes the same bytes. text_emb: computes the (H, D) prompt
    embeddings, called only when the store is created. A half-created store (its creator
    was killed) is made again.
    """
    fingerprint = recipe["fingerprint"]
    with FolderLock(out / ".init.lock", break_lock=break_lock, wait_s=600.0):
        store.remove_leftovers(out, layout)
        if (out / "plan.json").is_file():
            found = read_json(
                out / "plan.json",
                CacheMismatchError,
                "Delete that folder to rebuild it.",
            )
            mf.require_match(
                f"{out}",
                found.get("fingerprint", {}),
                fingerprint,
                "Pass another --out, or delete that folder to rebuild it.",
            )
            if found["layout"] != layout.to_json():
                raise CacheMismatchError(
                    f"{out}: written with shard_rows {found['layout']['shard_rows']}, "
                    f"this run asks for {layout.shard_rows}. Use the same "
                    "teacher.shard_rows to resume, or another --out."
                )
            if (out / store.RECIPE).is_file():
                started = read_json(
                    out / store.RECIPE,
                    CacheMismatchError,
                    "Delete that file (it is rewritten from this run's recipe).",
                )
                why = recipe_difference(started, recipe)
                if why:
                    raise CacheMismatchError(
                        f"{out}: this run's recipe differs from the one this cache was"
                        f" started with: {why}. Give every part and every rerun the"
                        " same recipe, or pass another --out."
                    )
            return
        foreign = [p.name for p in out.iterdir() if not p.name.startswith(OURS)]
        if (
            foreign
            and not (out / store.MARKER).exists()
            and not store.is_half_created(out)
        ):
            raise CacheMismatchError(
                f"{out}: folder is not empty and not a teacher cache "
                f"({', '.join(sorted(foreign)[:5])}). Pass an empty or new --out."
            )
        with writing(out / store.MARKER, "a cache file"):
            (out / store.MARKER).touch()
        fault_point("marker written")
        store.create_store(
            out,
            plan,
            layout,
            text_emb(),
            meta,
            {"fingerprint": fingerprint, "layout": layout.to_json()},
            recipe,
        )


def recipe_difference(started: dict, this_run: dict, where: str = "") -> str | None:
    """The first value that differs between two recipes, as "teacher.batch_size is 8
    here, 16 there", or None. Only keys both hold are compared below the top (config
    keys a newer eoid added are not a difference)."""
    for key in dict.fromkeys([*started, *this_run]):
        a, b = started.get(key, "<missing>"), this_run.get(key, "<missing>")
        name = f"{where}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            why = recipe_difference(a, b, "" if name == "config" else f"{name}.")
            if why:
                return why
        elif a != b:
            return f"{name} is {b!r} here, {a!r} in the parts or run that started it"
    return None


class ShardClaims:
    """The claims (progress/.shard-NNNNN.lock) of the shards this process computes.

    A shard claimed by a live process, or done, is left out of `shards`: two processes
    never write one zarr shard, even parts started with different part counts. A dead
    process's claim is broken (locks.FolderLock). Each claim is released once its shard
    is written, or on exit.
    """

    def __init__(self, out: Path, wanted: list[int], break_lock: bool):
        self._locks: dict[int, FolderLock] = {}
        self.others: list[int] = []  # wanted shards another live process computes
        try:
            for shard in wanted:
                lock = FolderLock.claim(store.shard_claim_path(out, shard), break_lock)
                if lock is None:
                    self.others.append(shard)
                # finished by another process since `wanted`
                elif shard in store.done_shards(out):
                    lock.release()
                else:
                    self._locks[shard] = lock
        # a full disk at the 3rd claim: the first two are not kept
        except BaseException:
            self.__exit__()
            raise
        self.shards = sorted(self._locks)

    def release(self, shard: int) -> None:
        lock = self._locks.pop(shard, None)
        if lock is not None:
            lock.release()

    def __enter__(self) -> "ShardClaims":
        return self

    def __exit__(self, *exc: object) -> None:
        for shard in list(self._locks):
            self.release(shard)


def finalize_if_complete(out: Path, manifest: dict, layout: ShardLayout) -> bool:
    """Write manifest.json, with every file's checksum, once every shard is done.

    Any part may: the one that finds every shard done first writes it, under a lock,
    after removing what killed writers left (the bytes are the same whoever writes
    them). On a finished cache it only removes what a kill left (a stale lock of a
    killed finaliser too).
    """
    if len(store.done_shards(out)) < layout.num_shards:
        return False
    with FolderLock(out / ".manifest.lock", wait_s=600.0):
        store.remove_leftovers(out, layout)
        if not (out / "manifest.json").is_file():
            checksums = store.collect_checksums(out, layout)
            write_json_atomic(
                out / "manifest.json",
                {**manifest, "checksums": checksums},
                "a cache file",
            )
            store.remove_leftovers(out, layout)
    return True


def write_derived(
    out: Path,
    plan: CachePlan,
    layout: ShardLayout,
    text_emb: np.ndarray,
    meta: dict,
    manifest: dict,
    rows: Callable[[int, int], TeacherRows],
) -> Path:
    """Write a cache computed from finished ones (relabel, merge) through the store's
    own code.

    manifest: manifest.json without checksums (they are collected last); it decides what
    `out` may already hold: nothing, an unfinished cache of this recipe (a killed run:
    the shards it finished are kept), or this very cache (kept as it is). rows(lo, hi)
    gives every teacher column (schema.TEACHER_COLUMNS) of rows lo:hi.
    """
    fingerprint = manifest["fingerprint"]
    with FolderLock(out / ".lock-part-0-of-1"):
        if (out / "manifest.json").is_file():
            found = read_json(
                out / "manifest.json", CacheMismatchError, "Pass another --out."
            )
            mf.require_match(
                f"{out}",
                found.get("fingerprint", {}),
                fingerprint,
                "It is a finished cache: pass another --out to write a new one.",
            )
            # only removes what a kill left
            finalize_if_complete(out, found, layout)
            return out
        prepare_store(
            out, plan, layout, manifest, lambda: text_emb, meta, break_lock=False
        )
        for shard in sorted(set(range(layout.num_shards)) - store.done_shards(out)):
            store.write_shard(out, layout, shard, rows(*layout.shard_range(shard)))
        finalize_if_complete(out, manifest, layout)
    return out
