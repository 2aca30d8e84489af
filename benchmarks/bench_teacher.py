"""Teacher-phase benchmark: end-to-end `cache-teacher` crops/s vs the bare image encoder.

    python benchmarks/bench_teacher.py --model tests/data/tiny-clip.json --images 48
    python benchmarks/bench_teacher.py --model RN50 --images 30 --batch-size 32 --rounds 2
    python benchmarks/bench_teacher.py --model RN50x16 --device cuda --images 400 --batch-size 64
    python benchmarks/bench_teacher.py --model ViT-L-14-336 --device cuda --tower-only --crops 512
    python benchmarks/bench_teacher.py --model RN50x16 --device cuda --rounds 1 --workers 12 \
        --world-annotations W/train.json --world-images W/images --bare-crops 1024

The ratio e2e / bare shows whether decoding, cropping or writing hold the encoder back
(1.0 = the encoder is the only cost). Bare and end-to-end passes alternate for --rounds rounds
on the same crops and batch size, so load from other processes hits both alike; the ratio is
the median of the per-round ratios of crops/s. The world is a generated one of random 640x480
JPEGs, or an existing one (--world-annotations, e.g. benchmarks/hico_shaped.py's); the bare
passes then hold its first --bare-crops crops. `prep_ceiling` = bare / (bare + single-process
crop preparation time): the ratio reachable when preparation and encoder share the same busy
cores (a CPU with no spare core), 1.0 when preparation runs on spare cores.

Also reported: the model's FLOPs per crop (torch.utils.flop_counter, multiply-add = 2 FLOPs),
the achieved TFLOP/s of each encoder variant, its fraction of the card's dense peak
(--peak-tflops, else benchmarks/gpu_peaks.py's entry for the card's name; both printed), and
(on CUDA) fp32 / bf16 / fp16 autocast with and without channels_last, and fp16w: float16
weights, what teacher.precision "fp16" (the GPU default, the original's) runs; the end-to-end
passes run at the default precision. --tower-only times the variants alone, on random crops
held on the device. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eoid.config import CacheConfig, DataConfig, TeacherConfig
from eoid.devices import World
from eoid.pipeline import run_cache as run_cache_mod
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_cache import run_cache
from eoid.teacher_cache.crops import union_crops
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.plan import build_plan
from eoid.teacher_cache.teacher import Teacher, load_teacher, resolve_precision

from gpu_peaks import card_peak
from report import print_table, save_json

RESULTS = Path(__file__).parent / "results"


def make_world(
    root: Path, num_images: int, hold_id: int, seed: int = 0
) -> tuple[Path, Path]:
    """640x480 JPEGs with 3-6 boxes (two people, then bicycles) and one HICO-DET label
    each.
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    records = []
    for i in range(num_images):
        w, h = 640, 480
        name = f"img_{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            images / name, quality=85
        )
        boxes, cats = [], []
        for j in range(int(rng.integers(3, 7))):
            x1, y1 = float(rng.integers(0, w - 100)), float(rng.integers(0, h - 100))
            boxes.append(
                [
                    x1,
                    y1,
                    x1 + float(rng.integers(40, 100)),
                    y1 + float(rng.integers(40, 100)),
                ]
            )
            cats.append(1 if j < 2 else 2)  # person, person, bicycle...
        records.append(
            {
                "file_name": name,
                "width": w,
                "height": h,
                "annotations": [
                    {"bbox": b, "category_id": c} for b, c in zip(boxes, cats)
                ],
                "hoi_annotation": [
                    {"subject_id": 0, "object_id": 2, "category_id": hold_id}
                ],
            }
        )
    (root / "train.json").write_text(json.dumps(records))
    return root / "train.json", images


def flops_per_crop(teacher: Teacher) -> float:
    """Forward FLOPs of the image encoder for one crop (multiply-add counted as 2).

    Attention is counted through its plain matmuls: nn.MultiheadAttention's inference
    fast path (one fused op) and the fused scaled-dot-product kernels of the CPU are
    invisible to the counter, which would leave out the Q/K/V/output projections and the
    scores (~39% of ViT-L/14's FLOPs).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(
        1,
        3,
        teacher.crop_spec.size,
        teacher.crop_spec.size,
        device=teacher.device,
        dtype=teacher.input_dtype,
    )
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with (
            FlopCounterMode(display=False) as counter,
            torch.inference_mode(),
            sdpa_kernel(SDPBackend.MATH),
        ):
            teacher.model.encode_image(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (DataLoader
    workers).
    """
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def bare_pass(
    teacher: Teacher, crops: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """(wall s, CPU s) to encode `crops` in batches (host tensors in, host embeddings
    out).
    """
    sync(teacher.device)
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = [
        teacher.encode_images(crops[b : b + batch_size])
        for b in range(0, len(crops), batch_size)
    ]
    torch.cat(out).cpu()
    return time.perf_counter() - t0, cpu_seconds() - c0


def variant(teacher: Teacher, name: str, fp16_weights: Teacher) -> Teacher:
    """fp32 | bf16 | fp16 autocast over `teacher` (float32 weights), or fp16w
    (`fp16_weights`, no autocast); '-cl' for channels_last (autocast only takes
    effect on CUDA)."""
    precision, _, cl = name.partition("-")
    if precision == "fp16w":
        teacher, precision = fp16_weights, "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    teacher.model.to(
        memory_format=torch.channels_last if cl else torch.contiguous_format
    )
    return dataclasses.replace(
        teacher,
        autocast_dtype=dtype if teacher.device.type == "cuda" else None,
        channels_last=bool(cl),
    )


def precision_peak(
    name: str, device: torch.device, args: argparse.Namespace
) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from) for variant `name`: --peak-tflops[-fp32],
    else the card table.
    """
    given = args.peak_tflops_fp32 if name.startswith("fp32") else args.peak_tflops
    if given:
        return given, (
            "--peak-tflops-fp32" if name.startswith("fp32") else "--peak-tflops"
        )
    if device.type != "cuda":
        return None, "no peak for a CPU"
    peak = card_peak(torch.cuda.get_device_name(device))
    if peak is None:
        return (
            None,
            f"{torch.cuda.get_device_name(device)} is not in benchmarks/gpu_peaks.py",
        )
    value = peak.for_precision(name.partition("-")[0])
    return value, (
        f"{peak.card}: {peak.source}" if value else f"{peak.card} has no {name} units"
    )


def time_variants(
    teacher: Teacher,
    args: argparse.Namespace,
    device: torch.device,
    crops: torch.Tensor,
    cpu_fp32_s: float | None = None,
) -> tuple[float, dict]:
    """(FLOPs per crop, {variant: crops/s, TFLOP/s, fraction of peak}) of the bare
    encoder on `crops`.

    The variants start from float32 weights (autocast) or float16 weights (fp16w, a
    second model). cpu_fp32_s: the rounds' own fp32 time on a CPU, reused instead of a
    new pass.
    """
    flops = flops_per_crop(teacher)
    names = [
        v
        for v in (
            args.variants
            or (
                "fp32"
                if device.type == "cpu"
                else "fp32,fp32-cl,bf16,bf16-cl,fp16-cl,fp16w-cl"
            )
        ).split(",")
        if v
    ]
    by_precision = {
        p: (
            teacher
            if teacher.input_dtype == dtype
            else load_teacher(args.model, args.weights, device, p)
        )
        for p, dtype in (("fp32", torch.float32), ("fp16", torch.float16))
        if any(n.startswith(p) for n in names) or p == "fp32"
    }
    variants = {}
    for name in names:
        if name == "fp32" and cpu_fp32_s is not None:
            secs = cpu_fp32_s
        else:
            t = variant(by_precision["fp32"], name, by_precision.get("fp16", teacher))
            bare_pass(t, crops[: args.batch_size], args.batch_size)
            secs = bare_pass(t, crops, args.batch_size)[0]
        tflops = flops * len(crops) / secs / 1e12
        peak, source = precision_peak(name, device, args)
        variants[name] = {
            "crops_per_s": len(crops) / secs,
            "achieved_tflops": tflops,
            "peak_tflops": peak,
            "peak_source": source,
            "fraction_of_peak": tflops / peak if peak else None,
        }
    by_precision.clear()
    return flops, variants


def device_facts(device: torch.device) -> dict:
    """The card's (or CPU's) name and, on CUDA, whether float32 may run as TF32."""
    if device.type != "cuda":
        return {
            "device_name": (
                f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"
            )
        }
    return {
        "device_name": torch.cuda.get_device_name(device),
        "tf32_convolutions": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def tower_only(args: argparse.Namespace, device: torch.device) -> dict:
    """The image tower alone: every variant on --crops random crops held on the device."""
    t0 = time.perf_counter()
    teacher = load_teacher(args.model, args.weights, device, "fp32")
    t_load = time.perf_counter() - t0
    size = teacher.crop_spec.size
    crops = torch.randn(
        args.crops, 3, size, size, generator=torch.Generator().manual_seed(0)
    ).to(device)
    flops, variants = time_variants(teacher, args, device, crops)
    return {
        "model": args.model,
        "weights": args.weights,
        "device": str(device),
        **device_facts(device),
        "crops": args.crops,
        "batch_size": args.batch_size,
        "crop_size": size,
        "gflops_per_crop": flops / 1e9,
        "variants": variants,
        "model_load_s": t_load,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def end_to_end(args: argparse.Namespace, device: torch.device) -> dict:
    """`cache-teacher` (run_cache) against the bare encoder on the same crops, then the
    variants.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = args.vocabulary
        if dataset == "synth":
            from eoid.pipeline.synth.scenes import synth_vocabulary_json

            dataset = str(root / "vocabulary.json")
            Path(dataset).write_text(json.dumps(synth_vocabulary_json()))
        vocab = load_vocabulary(dataset)
        if args.world_annotations:
            ann, images = Path(args.world_annotations), Path(args.world_images)
        else:
            # COCO id 2 in both vocabularies
            bicycle = vocab.object_ids.index(2)
            hoi = int(np.flatnonzero(vocab.hoi_to_object == bicycle)[0])
            ann, images = make_world(
                root, args.images, vocab.verb_ids[vocab.hoi_to_verb[hoi]]
            )
        cfg = CacheConfig(
            data=DataConfig(
                dataset=dataset, train_annotations=str(ann), train_images=str(images)
            ),
            teacher=TeacherConfig(
                model=args.model,
                weights=args.weights,
                batch_size=args.batch_size,
                num_workers=args.workers,
                shard_rows=1024,
            ),
        )
        records = read_annotations(ann, images, vocab).records
        plan = build_plan(records, vocab.human)
        t0 = time.perf_counter()
        teacher = load_teacher(
            args.model, args.weights, device, resolve_precision("auto", str(device))
        )
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        text_emb = teacher.encode_texts(vocab.prompts(cfg.teacher.template))
        t_text = time.perf_counter() - t0
        # the run reuses this teacher and its text embeddings (model load and the 600
        # prompts are paid once per run, not per crop; they are reported apart)
        real_encode_texts = teacher.encode_texts
        teacher.encode_texts = lambda prompts, **kw: (
            text_emb
            if len(prompts) == len(text_emb)
            else real_encode_texts(prompts, **kw)
        )
        real_load, real_compute, timed = (
            run_cache_mod.load_teacher,
            run_cache_mod.compute_shards,
            {},
        )

        # the same crops (the first --bare-crops of them, 0 = all), prepared up front in
        # this process: the bare encoder's input. Its crops/s does not depend on which
        # crops.
        t0 = time.perf_counter()
        crops, held = [], 0
        for i, r in enumerate(records):
            lo, hi = plan.image_offsets[i], plan.image_offsets[i + 1]
            if hi > lo:
                crops.append(
                    union_crops(
                        Image.open(r.path).convert("RGB"),
                        plan.human_xyxy[lo:hi],
                        plan.object_xyxy[lo:hi],
                        teacher.crop_spec,
                    )
                )
                held += hi - lo
            if args.bare_crops and held >= args.bare_crops:
                break
        crops = torch.cat(crops)[: args.bare_crops or None]
        t_prep = time.perf_counter() - t0
        bare_pass(teacher, crops[: args.batch_size], args.batch_size)  # warm-up

        def compute_timed(*a, **kw):  # the crop -> encode -> write loop alone
            sync(device)
            t, c = time.perf_counter(), cpu_seconds()
            # its DataLoader workers have exited when it returns
            real_compute(*a, **kw)
            sync(device)
            timed["s"], timed["cpu"] = time.perf_counter() - t, cpu_seconds() - c

        run_cache_mod.load_teacher = lambda *a, **kw: teacher
        run_cache_mod.compute_shards = compute_timed
        num, rounds = plan.num_pairs, []
        try:
            for r in range(args.rounds):
                t_bare, cpu_bare = bare_pass(teacher, crops, args.batch_size)
                run_cache(
                    dataclasses.replace(cfg, out=str(root / f"cache{r}")),
                    World(device=str(device)),
                )
                bare_rate, e2e_rate = len(crops) / t_bare, num / timed["s"]
                rounds.append(
                    {
                        "bare_s": t_bare,
                        "e2e_s": timed["s"],
                        "ratio": e2e_rate / bare_rate,
                        "bare_cpu_s": cpu_bare,
                        "e2e_cpu_s": timed["cpu"],
                        "cpu_ratio": (cpu_bare / len(crops)) / (timed["cpu"] / num),
                    }
                )
                print(
                    f"round {r}: bare {bare_rate:.2f} crops/s, end-to-end"
                    f" {e2e_rate:.2f} crops/s, ratio {rounds[-1]['ratio']:.3f}"
                    f" (CPU-time ratio {rounds[-1]['cpu_ratio']:.3f})",
                    flush=True,
                )
        finally:
            run_cache_mod.load_teacher, run_cache_mod.compute_shards = (
                real_load,
                real_compute,
            )

        reader_t0 = time.perf_counter()
        reader = CacheReader(root / "cache0")
        t_open = time.perf_counter() - reader_t0
        rng = np.random.default_rng(0)
        cost = []
        for key in reader.image_keys[:2000] * 3:
            rows = reader.rows(key)
            q_h = reader.human_xyxy[rows] + rng.uniform(
                -2, 2, (rows.stop - rows.start, 4)
            )
            t0 = time.perf_counter_ns()
            reader.lookup(key, q_h, reader.object_xyxy[rows], reader.object_class[rows])
            cost.append((time.perf_counter_ns() - t0) / 1000)
        store_mib = (
            sum(f.stat().st_size for f in (root / "cache0").rglob("*") if f.is_file())
            / 2**20
        )
        fp32_s = statistics.median(r["bare_s"] for r in rounds)
        flops, variants = time_variants(
            teacher, args, device, crops, fp32_s if device.type == "cpu" else None
        )

    bare_s = statistics.median(r["bare_s"] for r in rounds)
    e2e_s = statistics.median(r["e2e_s"] for r in rounds)
    return {
        "model": args.model,
        "weights": args.weights,
        "vocabulary": args.vocabulary,
        "world": args.world_annotations or "random 640x480 JPEGs",
        "device": str(device),
        **device_facts(device),
        "teacher_precision": resolve_precision("auto", str(device)),
        "images": len(records),
        "pairs": num,
        "bare_crops": len(crops),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "crop_size": teacher.crop_spec.size,
        "rounds": rounds,
        "bare_encoder_crops_per_s": len(crops) / bare_s,
        "end_to_end_crops_per_s": num / e2e_s,
        "ratio_e2e_over_bare": statistics.median(r["ratio"] for r in rounds),
        "ratio_best_round": max(r["ratio"] for r in rounds),
        "cpu_ratio_e2e_over_bare": statistics.median(r["cpu_ratio"] for r in rounds),
        "prep_ms_per_crop_single_process": 1000 * t_prep / len(crops),
        # both over the bare passes' crops
        "prep_ceiling": bare_s / (bare_s + t_prep),
        "gflops_per_crop": flops / 1e9,
        "variants": variants,
        "model_load_s": t_load,
        "text_encode_s": t_text,
        "store_mib": store_mib,
        "reader_open_s": t_open,
        "lookup_first_us": cost[0],
        "lookup_warm_median_us": float(np.median(cost[1:])),
        "lookup_warm_p99_us": float(np.percentile(cost[1:], 99)),
        "pairs_per_image_mean": num / len(records),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tests/data/tiny-clip.json")
    ap.add_argument(
        "--weights",
        default="none",
        help="open_clip weights file, tag, or 'none' (random)",
    )
    ap.add_argument(
        "--vocabulary",
        default="hico-det",
        help=(
            "hico-det (600 prompts) or synth (the built-in world's 20: a shorter text"
            " pass, the same crops/s), or a vocabulary JSON"
        ),
    )
    ap.add_argument(
        "--images", type=int, default=48, help="images of the generated random world"
    )
    ap.add_argument(
        "--world-annotations",
        default="",
        help=(
            "an existing world's training annotations (e.g."
            " benchmarks/hico_shaped.py's) instead of the random world; --vocabulary"
            " names its dataset"
        ),
    )
    ap.add_argument(
        "--world-images", default="", help="the folder of --world-annotations' images"
    )
    ap.add_argument(
        "--bare-crops",
        type=int,
        default=0,
        help=(
            "crops held for the bare passes: the plan's first N (0 = all; a 2k-image"
            " world's 17k crops at 384 px would need 30 GB)"
        ),
    )
    ap.add_argument(
        "--tower-only",
        action="store_true",
        help=(
            "time the image tower's variants alone, "
            "on --crops random crops on the device (no world, no end-to-end pass)"
        ),
    )
    ap.add_argument(
        "--crops", type=int, default=256, help="random crops of --tower-only"
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating bare / end-to-end passes"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--variants",
        default="",
        help=(
            "encoder variants to time bare, comma-separated (fp32, bf16, fp16, fp16w,"
            " with -cl for channels_last); default: fp32 on CPU, all on CUDA"
        ),
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help=(
            "the device's dense bf16/fp16 matrix "
            "peak, TFLOP/s (default: benchmarks/gpu_peaks.py's entry for the card)"
        ),
    )
    ap.add_argument(
        "--peak-tflops-fp32", type=float, default=0.0, help="dense fp32 (TF32 off) peak"
    )
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark of `argv` (the command line if None), print it, save its JSON,
    return it.
    """
    args = parse_args(argv)
    device = torch.device(args.device)
    tag = Path(args.model).stem.replace("-", "_").lower()
    kind = "tower" if args.tower_only else ""
    out_json = args.json or RESULTS / f"bench_teacher_{kind}{tag}_{device.type}.json"
    result = tower_only(args, device) if args.tower_only else end_to_end(args, device)
    print_table(result, [k for k in result if k not in ("rounds", "variants")])
    print(f"{'variant':<10} {'crops/s':>9} {'TFLOP/s':>9} {'of peak':>8}")
    for name, v in result["variants"].items():
        frac = (
            f"{v['fraction_of_peak']:.1%}" if v["fraction_of_peak"] is not None else "-"
        )
        print(
            f"{name:<10} {v['crops_per_s']:>9.2f} {v['achieved_tflops']:>9.4f}"
            f" {frac:>8}"
        )
    save_json(result, out_json)
    return result


if __name__ == "__main__":
    main()
