"""Inference images/s of a student (default CDN-S): torch on CPU vs its `eoid export` graph in onnxruntime.

    python benchmarks/bench_onnx.py                              # CDN-S, 512x512, batch 1, 5 rounds
    python benchmarks/bench_onnx.py --threads 1 --out benchmarks/results/bench_onnx_1thread.json

Both run the same random-weight student on the same input, in one process, alternating one
torch and one onnxruntime forward per round, so the load of other jobs hits both alike; the
ratio is reported per round and as the median. torch runs in eval mode under inference_mode,
onnxruntime on its CPU provider with full graph optimisation; both with their default threads
(torch: one per core; onnxruntime: one per physical core) or --threads N each. Needs the export
extra: pip install 'eoid[export]'.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

from eoid.pipeline.evaluation.onnx_student import OnnxStudent, export_onnx, max_difference
from eoid.student.model import build_student

from report import print_table, save_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cdn-s")
    ap.add_argument("--height", type=int, default=512, help="input height, px")
    ap.add_argument("--width", type=int, default=512, help="input width, px")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (one forward each) after a warm-up")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--threads", type=int, default=0, help="threads of each runtime (0 = their defaults)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_onnx.json")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_student(args.preset, 80, 117).eval()
    images = torch.randn(args.batch, 3, args.height, args.width)
    mask = torch.zeros(args.batch, args.height, args.width, dtype=torch.bool)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.onnx"
        t0 = time.perf_counter()
        export_onnx(model, path, args.opset, {})
        export_s = time.perf_counter() - t0
        size_mib = path.stat().st_size / 2**20
        graph = OnnxStudent(path, threads=args.threads)   # holds the graph in memory: the file may go

    def timed(run) -> float:
        t = time.perf_counter()
        run()
        return time.perf_counter() - t

    def torch_forward() -> None:
        with torch.inference_mode():
            model(images, mask)

    def onnx_forward() -> None:
        graph(images, mask)

    diff = max_difference(model, graph, images, mask)   # also the warm-up of both
    rounds = [(timed(torch_forward), timed(onnx_forward)) for _ in range(args.rounds)]
    torch_s = statistics.median(r[0] for r in rounds)
    onnx_s = statistics.median(r[1] for r in rounds)
    result = {
        "preset": args.preset, "size": f"{args.height}x{args.width}", "batch": args.batch,
        "device_name": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": args.threads or "default",
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "opset": args.opset,
        "export_s": export_s, "onnx_mib": size_mib, "max_abs_difference": diff,
        "median_torch_s": torch_s, "median_onnxruntime_s": onnx_s,
        "torch_images_per_s": args.batch / torch_s, "onnxruntime_images_per_s": args.batch / onnx_s,
        "speedup_median": torch_s / onnx_s,
        "speedup_per_round": [round(t / o, 3) for t, o in rounds],
        "date": time.strftime("%Y-%m-%d"),
    }
    print_table(result, float_format=".3f")
    save_json(result, args.out)


if __name__ == "__main__":
    main()
