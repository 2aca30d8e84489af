"""Teacher-phase benchmark: end-to-end cached crops/s vs the bare image encoder, and lookup cost.

    python benchmarks/bench_teacher.py --model tests/data/tiny-clip.json --images 64
    python benchmarks/bench_teacher.py --model RN50 --weights none --images 24 --batch-size 16

The ratio e2e / bare shows whether decoding, cropping or writing hold the encoder back
(1.0 = the encoder is the only cost). Builds a random world (JPEG images, HICO-format JSON)
in a temporary folder; prints a table and writes JSON (--json).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eoid.config import CacheConfig, DataConfig, TeacherConfig
from eoid.pipeline.distributed import World
from eoid.pipeline import run_cache as run_cache_mod
from eoid.pipeline.run_cache import build_plan, read_records, run_cache
from eoid.pipeline.vocab import load_vocabulary
from eoid.teacher_cache.crops import union_crops
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.teacher import load_teacher


def make_world(root: Path, num_images: int, hold_id: int, seed: int = 0) -> tuple[Path, Path]:
    """640x480 JPEGs with 2-6 boxes (first a person) and one HICO-DET label each."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    records = []
    for i in range(num_images):
        w, h = 640, 480
        name = f"img_{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name, quality=85)
        boxes, cats = [], []
        for j in range(int(rng.integers(3, 7))):
            x1, y1 = float(rng.integers(0, w - 100)), float(rng.integers(0, h - 100))
            boxes.append([x1, y1, x1 + float(rng.integers(40, 100)), y1 + float(rng.integers(40, 100))])
            cats.append(1 if j == 0 else 1 if j == 1 else 2)      # person, person, bicycle
        records.append({"file_name": name, "width": w, "height": h,
                        "annotations": [{"bbox": b, "category_id": c} for b, c in zip(boxes, cats)],
                        "hoi_annotation": [{"subject_id": 0, "object_id": 2, "category_id": hold_id}]})
    (root / "train.json").write_text(json.dumps(records))
    return root / "train.json", images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tests/data/tiny-clip.json")
    ap.add_argument("--weights", default="none", help="open_clip weights file, tag, or 'none' (random)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=Path("bench_teacher.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vocab = load_vocabulary("hico-det")
        ann, images = make_world(root, args.images, vocab.verb_ids[vocab.verbs.index("hold")])
        cfg = CacheConfig(data=DataConfig(dataset="hico-det", train_annotations=str(ann),
                                          train_images=str(images)),
                          teacher=TeacherConfig(model=args.model, weights=args.weights,
                                                batch_size=args.batch_size, num_workers=args.workers,
                                                shard_rows=1024),
                          out=str(root / "cache"))
        records, _ = read_records(cfg, vocab)
        plan = build_plan(records, vocab.human)
        t0 = time.perf_counter()
        teacher = load_teacher(args.model, args.weights, args.device)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        teacher.encode_texts(vocab.prompts(cfg.teacher.template))
        t_text = time.perf_counter() - t0

        # the same crops and batches, prepared up front: the bare encoder's rate
        crops = torch.cat([union_crops(Image.open(r.path).convert("RGB"),
                                       plan.human_xyxy[plan.image_offsets[i]:plan.image_offsets[i + 1]],
                                       plan.object_xyxy[plan.image_offsets[i]:plan.image_offsets[i + 1]],
                                       teacher.crop_spec) for i, r in enumerate(records)])
        teacher.encode_images(crops[:args.batch_size])                       # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in range(0, len(crops), args.batch_size):
            teacher.encode_images(crops[b:b + args.batch_size]).cpu()
        t_bare = time.perf_counter() - t0

        # time the crop -> encode -> write loop alone (the run also loads the model and prompts)
        real_compute, timed = run_cache_mod.compute_shards, {}

        def compute_timed(*a, **kw):
            t = time.perf_counter()
            real_compute(*a, **kw)
            timed["s"] = time.perf_counter() - t
        run_cache_mod.compute_shards = compute_timed
        t0 = time.perf_counter()
        run_cache(cfg, World(device=args.device))
        t_e2e = time.perf_counter() - t0
        t_e2e_net = timed["s"]

        t0 = time.perf_counter()
        reader = CacheReader(root / "cache")
        t_open = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        cost = []
        for key in reader.image_keys * 3:
            r = reader.rows(key)
            q_h = reader.human_xyxy[r] + rng.uniform(-2, 2, (r.stop - r.start, 4))
            t0 = time.perf_counter_ns()
            reader.lookup(key, q_h, reader.object_xyxy[r], reader.object_class[r])
            cost.append((time.perf_counter_ns() - t0) / 1000)

    num = plan.num_pairs
    result = {
        "model": args.model, "weights": args.weights, "device": args.device, "images": args.images,
        "pairs": num, "batch_size": args.batch_size, "workers": args.workers,
        "crop_size": teacher.crop_spec.size,
        "bare_encoder_crops_per_s": num / t_bare,
        "end_to_end_crops_per_s": num / t_e2e_net,
        "ratio_e2e_over_bare": t_bare / t_e2e_net,
        "model_load_s": t_load, "text_encode_s": t_text, "end_to_end_total_s": t_e2e,
        "reader_open_s": t_open,
        "lookup_first_us": cost[0], "lookup_warm_median_us": float(np.median(cost[1:])),
        "lookup_warm_p99_us": float(np.percentile(cost[1:], 99)),
        "pairs_per_image_mean": num / args.images,
        "torch_threads": torch.get_num_threads(),
    }
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
