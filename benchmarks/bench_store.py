"""Teacher-cache store benchmark: a HICO-DET-sized synthetic cache written and read
back.

    python benchmarks/bench_store.py                     # 38,118 images, ~330k pairs, D = 768
    python benchmarks/bench_store.py --images 2000       # a quick check

The arrays are generated directly (no CLIP) and written through
eoid.teacher_cache.store's own writer functions (create_store, write_shard, then the
manifest), exactly as `cache-teacher` writes them: plan columns at creation, then one
whole teacher shard at a time, fsynced. Pairs per image follow a negative binomial (mean
~8.7, clipped to 1..200, as HICO-DET's candidate pairs); image embeddings are random
unit vectors in float16 (incompressible, like real ones); each verb row is a float32
softmax over the verbs valid for its pair's object (as real ones; CacheReader checks
this and every file's checksum when it opens a cache).

Reported: write time, size on disk, file count, bytes per pair; the load time of a fresh
process (python started, eoid imported, then CacheReader opened and timed; the page
cache is warm: dropping it needs root and would disturb other users), with and without
embeddings; the warm per-image read + lookup latency (CacheReader.lookup on random
images).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eoid.files import write_json_atomic
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store, store_reads
from eoid.teacher_cache.distribution import distribution_problems, valid_verb_table
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.plan import CachePlan, make_layout
from eoid.teacher_cache.schema import TeacherRows, stored_rows

from report import print_table, save_json

RESULTS = Path(__file__).parent / "results"
COLD_OPEN = """
import json, sys, time, resource
t0 = time.perf_counter()
from eoid.teacher_cache.lookup import CacheReader
t1 = time.perf_counter()
r = CacheReader(sys.argv[1], load_embeddings=sys.argv[2] == "1")
t2 = time.perf_counter()
r.lookup(r.image_keys[0], r.human_xyxy[r.rows(r.image_keys[0])],
         r.object_xyxy[r.rows(r.image_keys[0])], r.object_class[r.rows(r.image_keys[0])])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "first_lookup_s": t3 - t2,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic_plan(
    num_images: int, rng: np.random.Generator, num_objects: int
) -> CachePlan:
    counts = np.clip(1 + rng.negative_binomial(2, 2 / (2 + 7.7), num_images), 1, 200)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    p = int(offsets[-1])
    xy = rng.uniform(0, 500, (p, 2, 2)).astype(np.float32)
    wh = rng.uniform(20, 200, (p, 2, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=2)  # (P, 2, 4): human, object
    return CachePlan(
        image_keys=[f"HICO_train2015_{i:08d}.jpg" for i in range(num_images)],
        image_sizes=np.tile(np.array([[640, 480]], np.int64), (num_images, 1)),
        image_offsets=offsets,
        pair_box_idx=rng.integers(0, 8, (p, 2)).astype(np.int32),
        human_xyxy=boxes[:, 0],
        object_xyxy=boxes[:, 1],
        object_class=rng.integers(0, num_objects, p).astype(np.int32),
        labelled=rng.random(p) < 0.3,
    )


def teacher_rows(
    object_class: np.ndarray,
    dim: int,
    valid_verbs: np.ndarray,
    rng: np.random.Generator,
) -> TeacherRows:
    """Random unit embeddings and, per row, a softmax over the verbs valid for its
    object (as the teacher's: a reader checks that every row is such a distribution)."""
    rows = len(object_class)
    emb = rng.standard_normal((rows, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    valid = valid_verbs[object_class]
    logits = np.where(
        valid, rng.standard_normal(valid.shape, dtype=np.float32) * 3, -np.inf
    )
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = np.where(
        valid.any(1, keepdims=True), probs / probs.sum(1, keepdims=True), 0.0
    )
    return stored_rows({"image_emb": emb, "verb_probs": probs})


def open_checks(path: Path, reader: CacheReader, rounds: int = 3) -> dict[str, float]:
    """Seconds (best of `rounds`, warm page cache) of the checks CacheReader makes
    when it opens a cache: the sha256 of the files training reads, of every file
    (verify), and the row check."""
    from eoid.teacher_cache.lookup import teacher_valid_verbs

    training = (
        "human_xyxy",
        "object_xyxy",
        "object_class",
        "verb_probs",
        "image_offsets",
        "labelled",
        "pair_box_idx",
    )
    valid = teacher_valid_verbs(reader.vocabulary, reader.fingerprint["excluded_verbs"])
    checksums = reader.manifest["checksums"]
    timed = {
        "open_checksums_train_s": lambda: store_reads.verify_files(
            path, checksums, training
        ),
        "open_checksums_all_s": lambda: store_reads.verify_files(path, checksums),
        "open_row_check_s": lambda: distribution_problems(
            reader.verb_probs, reader.object_class, valid
        ),
    }
    out = {}
    for name, call in timed.items():
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


def folder_stats(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(os.stat(p).st_blocks * 512 for p in files)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--images", type=int, default=38118, help="HICO-DET train has 38,118 images"
    )
    ap.add_argument(
        "--dim", type=int, default=768, help="embedding size (RN50x16: 768)"
    )
    ap.add_argument("--shard-rows", type=int, default=65536)
    ap.add_argument("--lookups", type=int, default=3000)
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp folder)"
    )
    ap.add_argument("--json", type=Path, default=RESULTS / "bench_store.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vocab = load_vocabulary("hico-det")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "cache"
        path.mkdir()
        plan = synthetic_plan(args.images, rng, vocab.num_objects)
        layout = make_layout(plan.num_pairs, args.shard_rows)
        prompts = vocab.prompts("a picture of person {verb_ing} {object}")
        text_emb = rng.standard_normal((len(prompts), args.dim), dtype=np.float32)
        fingerprint = mf.make_fingerprint(
            model="synthetic",
            weights="random-init",
            template="",
            prompts_sha256="",
            gamma=100.0,
            crop={},
            precision="fp32",
            vocabulary=vocab.fingerprint(),
            excluded_verbs=[vocab.verbs[v] for v in vocab.teacher_excluded_verbs],
            annotations_sha256="",
            num_images=plan.num_images,
            num_pairs=plan.num_pairs,
        )
        valid_verbs = valid_verb_table(
            vocab.teacher_valid_hois(), vocab.hoi_to_verb, vocab.num_verbs
        )
        shards = [
            teacher_rows(plan.object_class[lo:hi], args.dim, valid_verbs, rng)
            for lo, hi in (layout.shard_range(s) for s in range(layout.num_shards))
        ]

        t0 = time.perf_counter()
        (path / store.MARKER).touch()
        store.create_store(
            path,
            plan,
            layout,
            text_emb,
            {
                "image_keys": plan.image_keys,
                "image_sizes": plan.image_sizes.tolist(),
                "prompts": prompts,
                "vocabulary": vocab.to_json(),
            },
            {"fingerprint": fingerprint, "layout": layout.to_json()},
        )
        t_create = time.perf_counter() - t0
        for s, rows in enumerate(shards):
            store.write_shard(path, layout, s, rows)
        write_json_atomic(
            path / "manifest.json",
            {
                "format_version": mf.FORMAT_VERSION,
                "complete": True,
                "fingerprint": fingerprint,
                "layout": layout.to_json(),
                "embed_dim": args.dim,
                "config": {},
                "checksums": store.collect_checksums(path, layout),
            },
        )
        t_write = time.perf_counter() - t0
        raw = sum(a.nbytes for rows in shards for a in rows.values())
        del shards
        num_files, disk = folder_stats(path)

        cold = {}
        for emb in ("0", "1"):
            proc = subprocess.run(
                [sys.executable, "-c", COLD_OPEN, str(path), emb],
                check=True,
                capture_output=True,
                text=True,
            )
            cold["with_embeddings" if emb == "1" else "verb_rows_only"] = json.loads(
                proc.stdout
            )

        reader = CacheReader(path)
        checks = open_checks(path, reader)
        keys = rng.choice(reader.image_keys, args.lookups)
        cost = []
        for key in keys:
            t = time.perf_counter_ns()
            # the loader's lookup: its own GT pairs, jittered a little
            rows = reader.rows(key)
            reader.lookup(
                key,
                reader.human_xyxy[rows] + 1.0,
                reader.object_xyxy[rows],
                reader.object_class[rows],
            )
            cost.append((time.perf_counter_ns() - t) / 1000)
        result = {
            "images": plan.num_images,
            "pairs": plan.num_pairs,
            "embed_dim": args.dim,
            "num_verbs": vocab.num_verbs,
            "shard_rows": args.shard_rows,
            "write_s": t_write,
            "create_plan_s": t_create,
            "disk_mib": disk / 2**20,
            "files": num_files,
            "bytes_per_pair_on_disk": disk / plan.num_pairs,
            "teacher_bytes_per_pair_raw": raw / plan.num_pairs,
            "cold_process_open_s": cold["verb_rows_only"]["open_s"],
            "cold_process_import_s": cold["verb_rows_only"]["import_s"],
            "cold_process_open_with_embeddings_s": cold["with_embeddings"]["open_s"],
            "cold_process_peak_rss_mib": cold["verb_rows_only"]["peak_rss_mib"],
            "cold_process_peak_rss_with_embeddings_mib": cold["with_embeddings"][
                "peak_rss_mib"
            ],
            **checks,
            "warm_lookup_median_us": float(np.median(cost)),
            "warm_lookup_p99_us": float(np.percentile(cost, 99)),
            "pairs_per_image_mean": plan.num_pairs / plan.num_images,
            "date": time.strftime("%Y-%m-%d"),
        }
    print_table(result)
    save_json(result, args.json)


if __name__ == "__main__":
    main()
