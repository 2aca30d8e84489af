"""Phase 1 runner: `eoid cache-teacher`, the CLIP teacher run once into a sharded zarr
cache.

It reads the training annotations, plans the rows (teacher_cache/plan.py), takes this
part's lock, creates or checks the store, claims its shards and runs the shard loop
(teacher_cache/writer.py); the last part to finish writes manifest.json. Parts (`--part
i/n`, or
torchrun ranks) may run at the same time, in any order: they never share a shard (each is
claimed before it is computed), and a part with another recipe is refused. A killed run rerun
with the same command ends with the bytes of an uninterrupted one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from eoid.config import CacheConfig, parse_part, to_dict
from eoid.devices import World
from eoid.errors import CacheMismatchError, ConfigError, DataError
from eoid.files import file_sha256, output_folder, read_json, write_json_atomic
from eoid.locks import FolderLock
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.stop import StopFlag
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store, store_reads
from eoid.teacher_cache.coordination import (
    ShardClaims,
    finalize_if_complete,
    prepare_store,
)
from eoid.teacher_cache.plan import (
    CachePlan,
    ShardLayout,
    build_plan,
    make_layout,
    shard_for,
)
from eoid.teacher_cache.teacher import (
    Teacher,
    load_teacher,
    resolve_gamma,
    resolve_precision,
)
from eoid.teacher_cache.writer import ShardJob, compute_shards

log = logging.getLogger(__name__)


def part_of(part: str, world: World) -> tuple[int, int]:
    """(part index, number of parts) from `--part i/n` or torchrun's rank and world
    size.
    """
    if world.world_size > 1:
        if part:
            raise ConfigError(
                f"--part {part!r} under torchrun: each rank already takes its own part;"
                " drop --part or run without torchrun."
            )
        return world.rank, world.world_size
    return parse_part(part, "--part")


def fingerprint(
    cfg: CacheConfig,
    vocab: Vocabulary,
    teacher: Teacher,
    plan: CachePlan,
    prompts: list[str],
    precision: str,
) -> dict:
    """Everything the rows of this run depend on (teacher_cache/manifest.py); gamma as a
    number.
    """
    return mf.make_fingerprint(
        model=teacher.model_name,
        weights=teacher.weights_id,
        template=cfg.teacher.template,
        prompts_sha256=mf.prompts_sha256(prompts),
        gamma=resolve_gamma(cfg.teacher.gamma, teacher),
        crop=teacher.crop_spec.to_json(),
        precision=precision,
        vocabulary=vocab.fingerprint(),
        excluded_verbs=[vocab.verbs[v] for v in vocab.teacher_excluded_verbs],
        annotations_sha256=file_sha256(Path(cfg.data.train_annotations)),
        num_images=plan.num_images,
        num_pairs=plan.num_pairs,
    )


def manifest(
    cfg: CacheConfig,
    fingerprint: dict,
    layout: ShardLayout,
    plan: CachePlan,
    embed_dim: int,
) -> dict:
    """manifest.json of the finished cache: the fingerprint and the resolved config (no
    paths of this run).
    """
    config = to_dict(cfg)
    for k in ("out", "part", "break_lock"):
        config.pop(k, None)
    config["teacher"].pop("num_workers", None)
    return {
        "format_version": mf.FORMAT_VERSION,
        "complete": True,
        "fingerprint": fingerprint,
        "layout": layout.to_json(),
        "embed_dim": int(embed_dim),
        "num_labelled_pairs": int(plan.labelled.sum()),
        "config": config,
    }


def run_cache(cfg: CacheConfig, world: World) -> Path:
    """Write (or resume, or finish) the teacher cache `cfg.out`; returns the cache
    folder.
    """
    if not cfg.out:
        raise ConfigError("cache-teacher needs --out DIR (the cache folder to write).")
    if cfg.teacher.shard_rows < 1 or cfg.teacher.batch_size < 1:
        raise ConfigError("teacher.shard_rows and teacher.batch_size must be >= 1.")
    part, num_parts = part_of(cfg.part, world)
    out = output_folder(
        Path(cfg.out),
        "the cache",
        inputs=[p for p in [cfg.data.train_images] if p],
        owner="cache-teacher",
        marker=store.MARKER,
        signs=mf.CACHE_SIGNS,
    )
    vocab = load_vocabulary(cfg.data.dataset)
    if not cfg.data.train_annotations or not cfg.data.train_images:
        raise ConfigError(
            "cache-teacher needs --annotations FILE and --images DIR "
            "(data.train_annotations, data.train_images)."
        )
    read = read_annotations(
        Path(cfg.data.train_annotations),
        Path(cfg.data.train_images),
        vocab,
        skip_bad=cfg.data.skip_bad,
    )
    if not read.records:
        skipped = f" (all {read.num_skipped} were skipped as bad)" if read.bad else ""
        raise DataError(
            f"{cfg.data.train_annotations}: no records to cache{skipped}; a cache of 0"
            " pairs would teach nothing. Pass the training annotation file of these"
            " images."
        )
    plan = build_plan(read.records, vocab.human)
    layout = make_layout(plan.num_pairs, cfg.teacher.shard_rows)
    with FolderLock(
        out / f".lock-part-{part}-of-{num_parts}", break_lock=cfg.break_lock
    ):
        precision = resolve_precision(cfg.teacher.precision, world.device)
        teacher = load_teacher(
            cfg.teacher.model, cfg.teacher.weights, world.device, precision
        )
        prompts = vocab.prompts(cfg.teacher.template)
        expected = fingerprint(cfg, vocab, teacher, plan, prompts, precision)
        if (out / "manifest.json").is_file():
            found = read_json(
                out / "manifest.json", CacheMismatchError, "Pass another --out."
            )
            mf.require_match(
                f"{out}",
                found.get("fingerprint", {}),
                expected,
                "It is a finished cache: pass another --out to build a new one.",
            )
            # only removes what a kill left
            finalize_if_complete(out, found, layout)
            log.info("%s: cache already complete", out)
            return out
        meta = {
            "image_keys": plan.image_keys,
            "image_sizes": plan.image_sizes.tolist(),
            "prompts": prompts,
            "vocabulary": vocab.to_json(),
        }
        recipe = manifest(cfg, expected, layout, plan, teacher.embed_dim)
        prepare_store(
            out,
            plan,
            layout,
            recipe,
            lambda: teacher.encode_texts(prompts).cpu().numpy(),
            meta,
            cfg.break_lock,
        )
        if read.bad and part == 0:
            write_json_atomic(
                out / "bad_records.json",
                [b.message() for b in read.bad],
                "a cache file",
            )
            log.warning(
                "skipped %d bad record(s) (%d problem(s)); listed in %s",
                read.num_skipped,
                len(read.bad),
                out / "bad_records.json",
            )
        text_emb = store_reads.load_arrays(out, ("text_emb",))["text_emb"]
        mine = [
            s
            for s in range(layout.num_shards)
            if shard_for(s, num_parts) == part and s not in store.done_shards(out)
        ]
        job = ShardJob(
            out,
            plan,
            layout,
            [r.path for r in read.records],
            vocab.teacher_valid_hois(),
            vocab.hoi_to_verb,
            vocab.num_verbs,
            expected["gamma"],
        )
        with StopFlag() as stop, ShardClaims(out, mine, cfg.break_lock) as claims:
            if claims.others:
                log.info(
                    "%s: shard(s) %s are being written by another process; left to it.",
                    out,
                    ", ".join(map(str, claims.others)),
                )
            compute_shards(
                job,
                teacher,
                text_emb,
                claims.shards,
                cfg.teacher.batch_size,
                cfg.teacher.num_workers,
                show_progress=world.rank == 0,
                stop_requested=lambda: stop.raised,
                on_written=claims.release,
            )
        if not finalize_if_complete(out, recipe, layout):
            left = layout.num_shards - len(store.done_shards(out))
            log.warning(
                "%s: part %d/%d done; %d shard(s) of other parts remain. The last part"
                " to finish writes manifest.json.",
                out,
                part,
                num_parts,
                left,
            )
    return out
