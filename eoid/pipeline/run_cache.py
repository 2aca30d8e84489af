"""Phase 1 runner: `eoid cache-teacher`, the CLIP teacher run once into a sharded zarr cache.

Rows (candidate pairs) are sorted by image and split into zarr shards of `shard_rows` rows; a
part (`--part i/n`, or torchrun rank i of n) owns the shards `shard_for(s, n) == i`, so parts
never touch one shard and their union equals a single run byte for byte. Within a shard, rows
go through the encoder in fixed batches inside fixed blocks, so a run killed at any moment and
rerun resumes at its last saved block and ends with the same bytes as an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from eoid.config import CacheConfig, to_dict
from eoid.errors import CacheMismatchError, ConfigError, DataError, Interrupted
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.candidates import candidate_pairs, labelled_mask
from eoid.teacher_cache.crops import CropSpec, union_crops
from eoid.teacher_cache.distribution import pair_verb_probs, valid_hoi_table
from eoid.teacher_cache.lock import FolderLock
from eoid.teacher_cache.manifest import file_sha256
from eoid.teacher_cache.teacher import Teacher, load_teacher

log = logging.getLogger(__name__)
MAX_SEGMENT_ROWS = 256   # crops one worker item carries at most (bounds memory on crowded images)


# ---------------------------------------------------------------- pure planning

def build_plan(records: list[ImageRecord], human_class: int) -> store.CachePlan:
    """Candidate pairs of every record, flattened in record order (the cache rows)."""
    box_idx, offsets = [], [0]
    for rec in records:
        pairs = candidate_pairs(rec.boxes_xyxy_px, rec.box_classes, human_class, rec.hois[:, :2])
        box_idx.append(pairs)
        offsets.append(offsets[-1] + len(pairs))
    human, obj, cls, lab = [], [], [], []
    for rec, pairs in zip(records, box_idx):
        human.append(rec.boxes_xyxy_px[pairs[:, 0]].reshape(-1, 4))
        obj.append(rec.boxes_xyxy_px[pairs[:, 1]].reshape(-1, 4))
        cls.append(rec.box_classes[pairs[:, 1]])
        lab.append(labelled_mask(pairs, rec.boxes_xyxy_px, rec.box_classes, rec.hois))
    cat = (lambda xs, shape, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt))
    return store.CachePlan(
        image_keys=[r.key for r in records],
        image_sizes=np.array([[r.width, r.height] for r in records], dtype=np.int64).reshape(-1, 2),
        image_offsets=np.asarray(offsets, dtype=np.int64),
        pair_box_idx=cat(box_idx, (0, 2), np.int32), human_xyxy=cat(human, (0, 4), np.float32),
        object_xyxy=cat(obj, (0, 4), np.float32), object_class=cat(cls, (0,), np.int32),
        labelled=cat(lab, (0,), bool))


def shard_for(shard: int, num_parts: int) -> int:
    """The part that writes zarr shard `shard` (round robin: a job array and torchrun agree)."""
    return shard % num_parts


def parse_part(part: str, world: Any) -> tuple[int, int]:
    """(part index, number of parts) from `--part i/n` or torchrun's rank and world size."""
    if world.world_size > 1:
        if part:
            raise ConfigError(f"--part {part!r} under torchrun: each rank already takes its own part; "
                              "drop --part or run without torchrun.")
        return world.rank, world.world_size
    if not part:
        return 0, 1
    try:
        i, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise ConfigError(f"--part {part!r}: expected i/n, e.g. --part 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--part {part!r}: need 0 <= i < n, e.g. --part 0/4 ... --part 3/4")
    return i, n


def batch_ranges(layout: store.Layout, shards: list[int], done_blocks: set[int],
                 batch_size: int) -> list[tuple[int, int, int]]:
    """(shard, lo, hi) encoder batches of the blocks still to compute; fixed by the layout alone."""
    out = []
    for s in shards:
        for blo, bhi in layout.blocks(s):
            if blo not in done_blocks:
                out += [(s, lo, min(lo + batch_size, bhi)) for lo in range(blo, bhi, batch_size)]
    return out


def segments_for(offsets: np.ndarray, ranges: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(image, lo, hi) row segments covering `ranges`, one per image where rows are contiguous."""
    merged: list[list[int]] = []
    for _, lo, hi in ranges:
        if merged and merged[-1][1] == lo:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    segs = []
    for lo, hi in merged:
        img = int(np.searchsorted(offsets, lo, side="right") - 1)
        while lo < hi:
            while offsets[img + 1] <= lo:
                img += 1
            end = min(hi, int(offsets[img + 1]), lo + MAX_SEGMENT_ROWS)
            segs.append((img, lo, end))
            lo = end
    return segs


# ---------------------------------------------------------------- crops in DataLoader workers

class SegmentCrops(torch.utils.data.Dataset):
    """Item k: (row_lo, crops (n, 3, S, S)) for one image's rows; each image decoded once."""

    def __init__(self, segments: list[tuple[int, int, int]], paths: list[Path], keys: list[str],
                 plan: store.CachePlan, spec: CropSpec):
        self.segments, self.paths, self.keys, self.spec = segments, paths, keys, spec
        self.human, self.object = plan.human_xyxy, plan.object_xyxy

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor]:
        img, lo, hi = self.segments[k]
        try:
            with Image.open(self.paths[img]) as im:
                image = im.convert("RGB")
        except (OSError, ValueError) as err:
            raise DataError(f"{self.paths[img]}: cannot read image of record {self.keys[img]!r} "
                            f"({err}). Restore the file, or rerun with --skip-bad.") from None
        return lo, union_crops(image, self.human[lo:hi], self.object[lo:hi], self.spec)


def prefetch_items(pairs_per_image: float, batch_size: int, num_workers: int) -> int:
    """Segments each worker keeps ready: about two encoder batches of crops in flight (2..32).

    DataLoader's default (2 per worker) holds ~4 images, less than one batch of 64 crops, so the
    encoder would wait on decoding at every batch.
    """
    per_worker = 2 * batch_size / max(pairs_per_image, 1.0) / max(num_workers, 1)
    return int(min(32, max(2, math.ceil(per_worker))))


def crop_stream(dataset: SegmentCrops, num_workers: int, prefetch: int = 2
                ) -> Iterator[tuple[int, torch.Tensor]]:
    # no pin_memory here: the main process copies each batch once, into pinned memory (_batch_rows)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                         num_workers=num_workers, persistent_workers=False,
                                         prefetch_factor=prefetch if num_workers > 0 else None)
    yield from loader


def _batch_rows(parts: list[torch.Tensor], pin: bool) -> torch.Tensor:
    """The crops of one encoder batch in one tensor; pinned (for an async host-to-GPU copy) if `pin`."""
    rows = torch.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype,
                       pin_memory=pin)
    return torch.cat(parts, out=rows)


class _BackgroundWriter:
    """Store writes on one thread, in submission order, so the encoder never waits on the disk.

    Each shard still has exactly one writer (this thread); a failed write is raised in the main
    thread at the next submit or at exit. On exit every pending write is finished first, so a
    stop (Interrupted) still leaves every finished block saved.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eoid-cache-writer")
        self._pending: list[Future] = []

    def submit(self, fn: Any, *args: Any) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(fn, *args))

    def __enter__(self) -> "_BackgroundWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            errors = [f.exception() for f in self._pending]   # waits for each
            first = next((e for e in errors if e is not None), None)
            if first is not None and exc_type is None:
                raise first
        finally:
            self._pool.shutdown(wait=True)


# ---------------------------------------------------------------- the run

@dataclass
class Run:
    """Everything one part needs, fixed before the teacher runs."""
    out: Path
    plan: store.CachePlan
    layout: store.Layout
    paths: list[Path]
    fingerprint: dict
    vocab: Vocabulary


def _expected(cfg: CacheConfig, vocab: Vocabulary, teacher: Teacher, plan: store.CachePlan,
              prompts: list[str], precision: str) -> dict:
    return mf.make_fingerprint(
        model=teacher.model_name, weights=teacher.weights_id, template=cfg.teacher.template,
        prompts_sha256=hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
        gamma=cfg.teacher.gamma, crop=teacher.crop_spec.to_json(), precision=precision,
        vocabulary=vocab.fingerprint(),
        excluded_verbs=[] if vocab.no_interaction is None else [vocab.verbs[vocab.no_interaction]],
        annotations_sha256=file_sha256(Path(cfg.data.train_annotations)),
        num_images=plan.num_images, num_pairs=plan.num_pairs)


def resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bf16" if str(device).startswith("cuda") else "fp32"
    return precision if str(device).startswith("cuda") else "fp32"


def _prepare_folder(run: Run, cfg: CacheConfig, teacher: Teacher, prompts: list[str]) -> None:
    """Create the store once (parts wait on an init lock) or check that it fits this run."""
    out = run.out
    with FolderLock(out / ".init.lock", break_lock=cfg.break_lock, wait_s=600.0):
        if (out / "plan.json").is_file():
            found = store.read_json(out / "plan.json")
            mf.require_match(f"{out}", found["fingerprint"], run.fingerprint,
                             "Pass another --out, or delete that folder to rebuild it.")
            if found["layout"] != run.layout.to_json():
                raise CacheMismatchError(f"{out}: written with shard_rows {found['layout']['shard_rows']}, "
                                         f"this run asks for {run.layout.shard_rows}. Use the same "
                                         "teacher.shard_rows to resume, or another --out.")
            return
        ours = {store.MARKER, ".init.lock"} | {p.name for p in out.glob(".lock-part-*")}
        foreign = [p.name for p in out.iterdir() if p.name not in ours]
        if foreign and not (out / store.MARKER).exists():
            raise CacheMismatchError(f"{out}: folder is not empty and not a teacher cache "
                                     f"({', '.join(sorted(foreign)[:5])}). Pass an empty or new --out.")
        (out / store.MARKER).touch()
        text_emb = teacher.encode_texts(prompts).cpu().numpy()
        meta = {"image_keys": run.plan.image_keys, "image_sizes": run.plan.image_sizes.tolist(),
                "prompts": prompts, "vocabulary": run.vocab.to_json()}
        store.create_store(out, run.plan, run.layout, text_emb, meta,
                           {"fingerprint": run.fingerprint, "layout": run.layout.to_json()})


def _manifest(run: Run, cfg: CacheConfig, teacher: Teacher) -> dict:
    config = to_dict(cfg)
    for k in ("out", "part", "break_lock"):
        config.pop(k, None)
    config["teacher"].pop("num_workers", None)
    return {"format_version": mf.FORMAT_VERSION, "complete": True, "fingerprint": run.fingerprint,
            "layout": run.layout.to_json(), "embed_dim": int(teacher.embed_dim),
            "num_labelled_pairs": int(run.plan.labelled.sum()), "config": config}


def finalize_if_complete(out: Path, manifest: dict, layout: store.Layout) -> bool:
    """Write manifest.json once every shard is done (any part may; the bytes are the same)."""
    if len(store.done_shards(out)) < layout.num_shards:
        return False
    if not (out / "manifest.json").is_file():
        store.write_json_atomic(out / "manifest.json", manifest)
    return True


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop stops at the next block and says how to resume."""

    def __init__(self) -> None:
        self.stop, self._old = False, {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, lambda *_: setattr(self, "stop", True))
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def compute_shards(run: Run, teacher: Teacher, text_emb: np.ndarray, shards: list[int],
                   batch_size: int, num_workers: int, gamma: float, show_progress: bool) -> None:
    """Run the teacher over the rows of `shards` not yet saved and write each finished shard."""
    from tqdm import tqdm
    out, layout, plan = run.out, run.layout, run.plan
    saved: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for s in shards:
        for blo, bhi in layout.blocks(s):
            got = store.load_block(out, s, blo, bhi - blo) if len(layout.blocks(s)) > 1 else None
            if got is not None:
                saved[blo] = got
    ranges = batch_ranges(layout, shards, set(saved), batch_size)
    vocab = run.vocab
    excluded = [] if vocab.no_interaction is None else [vocab.no_interaction]
    valid = torch.from_numpy(valid_hoi_table(vocab.hoi_to_object, vocab.hoi_to_verb,
                                             vocab.num_objects, excluded))
    hoi_to_verb, text = torch.from_numpy(vocab.hoi_to_verb), torch.from_numpy(text_emb)
    segments = segments_for(plan.image_offsets, ranges)
    prefetch = prefetch_items(sum(hi - lo for _, lo, hi in segments) / max(len(segments), 1),
                              batch_size, num_workers)
    stream = crop_stream(SegmentCrops(segments, run.paths, plan.image_keys, plan, teacher.crop_spec),
                         num_workers, prefetch)
    pin = teacher.device.type == "cuda"
    buffer: list[tuple[int, torch.Tensor]] = []
    block_emb: list[torch.Tensor] = []
    bar = tqdm(total=sum(hi - lo for _, lo, hi in ranges), unit="crop", disable=not show_progress,
               desc=f"teacher {teacher.model_name}", smoothing=0.1)
    block_of = {(s, blo): bhi for s in shards for blo, bhi in layout.blocks(s)}
    with _StopFlag() as flag, _BackgroundWriter() as writer:
        for shard, lo, hi in ranges:
            while not buffer or buffer[-1][0] + len(buffer[-1][1]) < hi:
                buffer.append(next(stream))
            rows = _batch_rows([c[max(lo - s0, 0): hi - s0] for s0, c in buffer
                                if s0 < hi and s0 + len(c) > lo], pin)
            while buffer and buffer[0][0] + len(buffer[0][1]) <= hi:
                buffer.pop(0)
            # embeddings stay on the device until the block ends: no GPU sync per batch
            block_emb.append(teacher.encode_images(rows))
            bar.update(hi - lo)
            blo = _block_start(layout, lo)
            if (shard, blo) in block_of and block_of[(shard, blo)] == hi:
                emb = torch.cat(block_emb).cpu()
                block_emb = []
                probs = pair_verb_probs(emb, text, torch.from_numpy(plan.object_class[blo:hi].astype(np.int64)),
                                        valid, hoi_to_verb, vocab.num_verbs, gamma)
                saved[blo] = (emb.numpy().astype(np.float16), probs.numpy().astype(np.float16))
                if len(layout.blocks(shard)) > 1:
                    writer.submit(store.save_block, out, shard, blo, *saved[blo])
                _write_if_full(out, layout, shard, saved, writer.submit)
                if flag.stop:
                    raise Interrupted(f"{out}: stopped by a signal after rows {blo}:{hi}; finished "
                                      "blocks are saved. Run the same command again to resume.")
        for s in shards:
            _write_if_full(out, layout, s, saved, writer.submit)
    bar.close()


def _block_start(layout: store.Layout, row: int) -> int:
    shard_lo = (row // layout.shard_rows) * layout.shard_rows
    return shard_lo + ((row - shard_lo) // layout.block_rows) * layout.block_rows


def _write_if_full(out: Path, layout: store.Layout, shard: int,
                   saved: dict[int, tuple[np.ndarray, np.ndarray]], submit: Any) -> None:
    """Hand a shard whose blocks are all computed to `submit` (the writer); its blocks leave `saved`."""
    blocks = layout.blocks(shard)
    if shard in store.done_shards(out) or not all(blo in saved for blo, _ in blocks):
        return
    emb = np.concatenate([saved[blo][0] for blo, _ in blocks])
    probs = np.concatenate([saved[blo][1] for blo, _ in blocks])
    submit(store.write_shard, out, layout, shard, emb, probs)
    for blo, _ in blocks:
        saved.pop(blo, None)


def read_records(cfg: CacheConfig, vocab: Vocabulary) -> tuple[list[ImageRecord], list]:
    from eoid.pipeline.data.readers import read_annotations
    if not cfg.data.train_annotations or not cfg.data.train_images:
        raise ConfigError("cache-teacher needs --annotations FILE and --images DIR "
                          "(data.train_annotations, data.train_images).")
    result = read_annotations(Path(cfg.data.train_annotations), Path(cfg.data.train_images), vocab,
                              skip_bad=cfg.data.skip_bad)
    return result.records, result.bad


def run_cache(cfg: CacheConfig, world: Any) -> Path:
    """Write (or resume, or finish) the teacher cache `cfg.out`; returns the cache folder."""
    if not cfg.out:
        raise ConfigError("cache-teacher needs --out DIR (the cache folder to write).")
    if cfg.teacher.shard_rows < 1 or cfg.teacher.batch_size < 1:
        raise ConfigError("teacher.shard_rows and teacher.batch_size must be >= 1.")
    part, num_parts = parse_part(cfg.part, world)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_vocabulary(cfg.data.dataset)
    records, bad = read_records(cfg, vocab)
    plan = build_plan(records, vocab.human)
    layout = store.make_layout(plan.num_pairs, cfg.teacher.shard_rows)
    name = f".lock-part-{part}-of-{num_parts}"
    with FolderLock(out / name, break_lock=cfg.break_lock):
        precision = resolve_precision(cfg.teacher.precision, world.device)
        teacher = load_teacher(cfg.teacher.model, cfg.teacher.weights, world.device, precision)
        prompts = vocab.prompts(cfg.teacher.template)
        run = Run(out, plan, layout, [r.path for r in records],
                  _expected(cfg, vocab, teacher, plan, prompts, precision), vocab)
        if (out / "manifest.json").is_file():
            found = store.read_json(out / "manifest.json")
            mf.require_match(f"{out}", found["fingerprint"], run.fingerprint,
                             "It is a finished cache: pass another --out to build a new one.")
            log.info("%s: cache already complete", out)
            return out
        _prepare_folder(run, cfg, teacher, prompts)
        if bad and part == 0:
            store.write_json_atomic(out / "bad_records.json", [b.message() for b in bad])
        text_emb = store.load_arrays(out, ("text_emb",))["text_emb"]
        mine = [s for s in range(layout.num_shards)
                if shard_for(s, num_parts) == part and s not in store.done_shards(out)]
        compute_shards(run, teacher, text_emb, mine, cfg.teacher.batch_size, cfg.teacher.num_workers,
                       cfg.teacher.gamma, show_progress=world.rank == 0)
        if not finalize_if_complete(out, _manifest(run, cfg, teacher), layout):
            left = layout.num_shards - len(store.done_shards(out))
            log.warning("%s: part %d/%d done; %d shard(s) of other parts remain. The last part to "
                        "finish writes manifest.json.", out, part, num_parts, left)
    return out
