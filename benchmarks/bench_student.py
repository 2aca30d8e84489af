"""Training and inference speed (images/s) and peak memory of a student preset (default CDN-S).

    python benchmarks/bench_student.py                       # CPU, 512x512, batch 2
    python benchmarks/bench_student.py --height 800 --width 1066 --batch 1 --repeats 2 \
        --out benchmarks/results/bench_student_800.json  # the paper's scale (640x480 -> 800x1066)
    python benchmarks/bench_student.py --device cuda --batch 4 --height 800 --width 1333 --amp

Training images/s = batch / (forward + losses + backward) and inference images/s = batch /
(forward under inference_mode, eval mode) are both reported; --amp runs the forward in bf16
autocast on CUDA, as `optim.amp` does in training.

One step = forward, two-stage matching + all losses (final + aux layers) on synthetic targets
(4 labelled + 6 unknown pairs per image, teacher rows present), backward. No optimizer step.
CPU peak memory is the process's peak resident set (getrusage), before and after the steps;
CUDA peak memory is torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from eoid.student.losses import compute_losses
from eoid.student.model import build_student
from eoid.student.targets import PairTargets

from report import print_table, save_json

NUM_OBJECTS, NUM_VERBS = 80, 117


def synthetic_targets(
    num_labelled: int, num_unknown: int, gen: torch.Generator
) -> PairTargets:
    p = num_labelled + num_unknown

    def boxes() -> torch.Tensor:
        return torch.cat(
            [
                torch.rand(p, 2, generator=gen) * 0.5 + 0.25,
                torch.rand(p, 2, generator=gen) * 0.3 + 0.1,
            ],
            1,
        )

    labelled = torch.arange(p) < num_labelled
    verbs = (torch.rand(p, NUM_VERBS, generator=gen) < 0.02).float()
    verbs[~labelled] = 0
    verbs[labelled, 0] = 1
    teacher = torch.rand(p, NUM_VERBS, generator=gen).softmax(1)
    return PairTargets(
        boxes(),
        boxes(),
        torch.randint(0, NUM_OBJECTS, (p,), generator=gen),
        verbs,
        labelled,
        labelled.clone(),
        teacher,
        torch.ones(p, dtype=torch.bool),
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cdn-s")
    ap.add_argument("--size", type=int, default=512, help="square input side, px")
    ap.add_argument(
        "--height", type=int, default=0, help="input height, px (default --size)"
    )
    ap.add_argument(
        "--width", type=int, default=0, help="input width, px (default --size)"
    )
    ap.add_argument(
        "--amp", action="store_true", help="bf16 autocast forward (CUDA only)"
    )
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed steps after one warm-up step"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "bench_student.json",
    )
    args = ap.parse_args()

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    rss_start = peak_rss_mib()
    model = build_student(args.preset, NUM_OBJECTS, NUM_VERBS).to(device).train()
    rss_model = peak_rss_mib()
    height, width = args.height or args.size, args.width or args.size
    images = torch.randn(args.batch, 3, height, width, generator=gen).to(device)
    mask = torch.zeros(args.batch, height, width, dtype=torch.bool, device=device)
    amp = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda"
    )
    targets = [synthetic_targets(4, 6, gen).to(device) for _ in range(args.batch)]
    all_verbs = torch.ones(NUM_VERBS, dtype=torch.bool)

    def step() -> dict[str, float]:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        with amp:
            out = model(images, mask)
        out = type(out)(*(o.float() if torch.is_tensor(o) else o for o in out))
        sync()
        t1 = time.perf_counter()
        terms, _ = compute_losses(out, targets, all_verbs)
        total = sum(terms.values())
        sync()
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        total.backward()
        sync()
        t3 = time.perf_counter()
        return {
            "forward_s": t1 - t0,
            "losses_s": t2 - t1,
            "backward_s": t3 - t2,
            "step_s": t3 - t0,
        }

    step()  # warm-up (allocator, oneDNN / cuDNN kernel selection)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runs = [step() for _ in range(args.repeats)]
    model.eval()

    def infer() -> float:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode(), amp:
            model(images, mask)
        sync()
        return time.perf_counter() - t0

    infer()
    infer_s = statistics.median(infer() for _ in range(args.repeats))
    result = {
        "preset": args.preset,
        "size": f"{height}x{width}",
        "batch": args.batch,
        "device": str(device),
        "amp_bf16": bool(args.amp and device.type == "cuda"),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "params_total_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "params_trainable_m": (
            sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
        ),
        **{f"median_{k}": statistics.median(r[k] for r in runs) for k in runs[0]},
        "train_images_per_s": args.batch / statistics.median(r["step_s"] for r in runs),
        "median_inference_s": infer_s,
        "inference_images_per_s": args.batch / infer_s,
        "date": time.strftime("%Y-%m-%d"),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_model_mib": rss_start,
        "rss_after_model_mib": rss_model,
    }
    if device.type == "cuda":
        result["cuda_peak_allocated_mib"] = (
            torch.cuda.max_memory_allocated(device) / 2**20
        )
    print_table(result, float_format=".3f")
    save_json(result, args.out)


if __name__ == "__main__":
    main()
