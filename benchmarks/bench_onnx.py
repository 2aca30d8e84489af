"""Inference images/s of a student (default CDN-S): torch vs its `eoid export` graph in
onnxruntime.

    python benchmarks/bench_onnx.py                              # CDN-S, 512x512, batch 1, 5 rounds
    python benchmarks/bench_onnx.py --threads 1 --out benchmarks/results/bench_onnx_1thread.json
    python benchmarks/bench_onnx.py --device cuda --amp --batch 8 --height 800 --width 1066

Both run the same random-weight student on the same input, in one process, alternating
one torch and one onnxruntime forward per round, so the load of other jobs hits both
alike; the ratio is reported per round and as the median. torch runs in eval mode under
inference_mode (--amp: also a bf16-autocast forward, on CUDA), onnxruntime with full
graph optimisation on the device's provider (CPUExecutionProvider, or
CUDAExecutionProvider for --device cuda: its inputs come from host memory, as `eoid
predict --onnx` passes them); both with their default threads (torch: one per core;
onnxruntime: one per physical core) or --threads N each. Without onnxruntime, or without
the provider, the onnxruntime part is skipped and the result says why
(`onnxruntime_skipped`). The export extra: pip install 'eoid[export]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.evaluation.onnx_student import (
    OnnxStudent,
    export_onnx,
    max_difference,
    onnx_metadata,
)
from eoid.student.model import build_student

from report import print_table, save_json


def onnx_unavailable(provider: str) -> str:
    """Why onnxruntime cannot run `provider` here ('' when it can)."""
    missing = [
        p for p in ("onnx", "onnxruntime") if importlib.util.find_spec(p) is None
    ]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install 'eoid[export]')"
    import onnxruntime

    if provider not in onnxruntime.get_available_providers():
        return (
            f"onnxruntime {onnxruntime.__version__} has no {provider} (its providers:"
            f" {onnxruntime.get_available_providers()}; the CUDA one comes with"
            " onnxruntime-gpu)"
        )
    return ""


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark of `argv` (the command line if None), print it, save its JSON,
    return it.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cdn-s")
    ap.add_argument("--height", type=int, default=512, help="input height, px")
    ap.add_argument("--width", type=int, default=512, help="input width, px")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="timed rounds (one forward each) after a warm-up",
    )
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads of each runtime (0 = their defaults)",
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda (torch's device; onnxruntime's provider)",
    )
    ap.add_argument(
        "--amp",
        action="store_true",
        help="also time torch with bf16 autocast (CUDA only)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "bench_onnx.json",
    )
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    provider = (
        "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    )
    skipped = onnx_unavailable(provider)
    torch.manual_seed(0)
    # 80 objects, 117 verbs: the student's output sizes
    vocab = load_vocabulary("hico-det")
    model = build_student(args.preset, vocab.num_objects, vocab.num_verbs).eval()
    images = torch.randn(args.batch, 3, args.height, args.width)
    mask = torch.zeros(args.batch, args.height, args.width, dtype=torch.bool)
    graph, facts = None, {}
    if not skipped:
        import onnxruntime

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "student.onnx"
            t0 = time.perf_counter()
            # the metadata `eoid export` writes (OnnxStudent refuses a graph without its
            # vocabulary)
            meta = onnx_metadata(
                vocab.to_json(), {"student": {"preset": args.preset}}, Path("random")
            )
            export_onnx(model, path, args.opset, meta)
            facts["export_s"] = time.perf_counter() - t0
            facts["onnx_mib"] = path.stat().st_size / 2**20
            # holds the graph in memory: the file may go
            graph = OnnxStudent(path, provider=provider, threads=args.threads)
        # against the CPU torch model (also the warm-up of both), on one image
        facts["max_abs_difference"] = max_difference(model, graph, images[:1], mask[:1])
        facts["onnxruntime"], facts["onnxruntime_provider"] = (
            onnxruntime.__version__,
            provider,
        )
    else:
        print(f"onnxruntime skipped: {skipped}")
    model = model.to(device)
    on_device = images.to(device), mask.to(device)

    def timed(run) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    def torch_forward(amp: bool = False) -> None:
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp),
        ):
            model(*on_device)

    runs = {"torch": torch_forward}
    if args.amp and device.type == "cuda":
        runs["torch_bf16"] = lambda: torch_forward(amp=True)
    if graph is not None:
        runs["onnxruntime"] = lambda: graph(images, mask)
    for run in runs.values():  # warm-up (cuDNN / allocator / provider set-up)
        run()
    rounds = [
        {name: timed(run) for name, run in runs.items()} for _ in range(args.rounds)
    ]
    median = {name: statistics.median(r[name] for r in rounds) for name in runs}
    result = {
        "preset": args.preset,
        "size": f"{args.height}x{args.width}",
        "batch": args.batch,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": args.threads or "default",
        "torch": torch.__version__,
        "opset": args.opset,
        **facts,
        **{f"median_{name}_s": s for name, s in median.items()},
        **{f"{name}_images_per_s": args.batch / s for name, s in median.items()},
        "date": time.strftime("%Y-%m-%d"),
    }
    if graph is not None:
        result["speedup_median"] = median["torch"] / median["onnxruntime"]
        result["speedup_per_round"] = [
            round(r["torch"] / r["onnxruntime"], 3) for r in rounds
        ]
    else:
        result["onnxruntime_skipped"] = skipped
    print_table(result, float_format=".3f")
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
