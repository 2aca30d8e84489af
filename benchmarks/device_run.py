"""Every GPU row of the benchmark documentation, in one process: run by
benchmarks/device_run.sh.

    python benchmarks/device_run.py --out DIR              # on a GPU: real sizes (< 8 min, H100)
    python benchmarks/device_run.py --out DIR --dry-run    # the same code on the CPU, tiny sizes

The steps call the benchmarks of this folder in-process (one import of torch and
open_clip):
  tower     bench_teacher --tower-only: RN50x16 at 384 px and ViT-L/14 at 336 px (random
            weights), crops/s of fp32 / bf16 / fp16 autocast / float16 weights, each
            with and without channels_last; FLOPs per crop from the model; fraction of
            the card's peak
  e2e       bench_teacher on a 2,000-image HICO-DET-shaped world (hico_shaped.py): `cache-teacher`
            (RN50x16, the GPU default precision) against the bare encoder on the same
            crops
  train     bench_train_step step (a): CDN-S training images/s, bf16 autocast and fp32, and the
            loader's cache lookup as a share of a step
  infer     bench_onnx: CDN-S inference images/s, torch fp32 and bf16 autocast, onnxruntime's
            CUDA provider when it is installed (else the row says why it was skipped)
  tests     `pytest -m cuda`: the tests of eoid's CUDA paths
--dry-run swaps in the tiny models (eoid-synth-clip-rn for RN50x16,
tests/data/tiny-clip.json for ViT-L/14, the tiny student), a 20-image world and one
round each, on the CPU, so that CI keeps the script working. Every row is written to
DIR/rows.json as it finishes (a run killed at its time limit keeps what it had) and
printed as a table at the end; the exit status is 1 when any row failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

import bench_onnx
import bench_teacher
import bench_train_step

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the real (GPU) sizes, or the dry run's."""

    device: str
    # (row name, open_clip model) of the tower rows
    towers: tuple[tuple[str, str], ...]
    variants: str  # bench_teacher --variants of the tower rows
    tower_crops: int
    tower_batch: int
    world_train: int  # images of the HICO-shaped world
    e2e_model: str
    e2e_bare_crops: int
    e2e_batch: int
    e2e_workers: int
    student: str
    train_batch: int
    train_size: int  # shorter side of the training input, px
    train_rounds: int
    infer_batch: int
    infer_hw: tuple[int, int]
    infer_rounds: int
    test_paths: tuple[str, ...]  # where `pytest -m cuda` looks


# fp32 / bf16 autocast / fp16 autocast / float16 weights (fp16w, the GPU default), each
# with and without channels_last (-cl); the dry run keeps one of each kind, every branch
# of variant()
VARIANTS = "fp32,fp32-cl,bf16,bf16-cl,fp16,fp16-cl,fp16w,fp16w-cl"
WORKERS = max(1, min(14, (os.cpu_count() or 2) - 2))
GPU = Sizes(
    device="cuda",
    towers=(("RN50x16 384px", "RN50x16"), ("ViT-L/14 336px", "ViT-L-14-336")),
    variants=VARIANTS,
    tower_crops=512,
    tower_batch=64,
    world_train=2000,
    e2e_model="RN50x16",
    e2e_bare_crops=1024,
    e2e_batch=64,
    e2e_workers=WORKERS,
    student="cdn-s",
    train_batch=4,
    train_size=800,
    train_rounds=5,
    infer_batch=8,
    infer_hw=(800, 1066),
    infer_rounds=5,
    test_paths=("tests",),
)
DRY = Sizes(
    device="cpu",
    towers=(
        ("RN50x16 384px", "eoid-synth-clip-rn"),
        ("ViT-L/14 336px", str(ROOT / "tests" / "data" / "tiny-clip.json")),
    ),
    variants="fp32,bf16-cl,fp16,fp16w-cl",
    tower_crops=4,
    tower_batch=4,
    world_train=20,
    e2e_model="eoid-synth-clip-rn",
    e2e_bare_crops=16,
    e2e_batch=8,
    e2e_workers=1,
    student="tiny",
    train_batch=2,
    train_size=64,
    train_rounds=1,
    infer_batch=1,
    infer_hw=(64, 64),
    infer_rounds=1,
    test_paths=("tests/cuda",),
)


@dataclass
class Row:
    """One printed line: what it measures, its value, and whether it came out."""

    step: str
    name: str
    value: float | None = None
    unit: str = ""
    detail: str = ""
    # ok | skipped (detail says why) | failed (detail says how)
    status: str = "ok"
    extra: dict = field(default_factory=dict)


class Run:
    """The rows so far, rewritten to DIR/rows.json after every step."""

    def __init__(self, out: Path, sizes: Sizes, dry_run: bool):
        self.out, self.sizes, self.dry_run = out, sizes, dry_run
        self.rows: list[Row] = []
        self.results: dict[str, dict] = {}
        self.t0 = time.perf_counter()
        self.scratch = Path(tempfile.mkdtemp(prefix="eoid-device-run-"))

    def step(self, name: str, fn: Callable[["Run"], list[Row]]) -> None:
        """Run one step; an exception becomes its failed row, and the next step still
        runs.
        """
        print(
            f"\n=== {name} ({time.perf_counter() - self.t0:.0f} s into the run)",
            flush=True,
        )
        t0 = time.perf_counter()
        try:
            rows = fn(self)
        except Exception as err:  # one failed row, not a lost run
            traceback.print_exc()
            rows = [
                Row(
                    name,
                    f"{name}: step",
                    status="failed",
                    detail=f"{type(err).__name__}: {err}"[:300],
                )
            ]
        for row in rows:
            row.extra.setdefault("step_s", round(time.perf_counter() - t0, 1))
        self.rows += rows
        if self.sizes.device == "cuda":
            torch.cuda.empty_cache()
        self.save()

    def bench(
        self,
        key: str,
        main: Callable[[list[str]], dict],
        argv: list[str],
        flag: str = "--json",
    ) -> dict:
        """One benchmark's main() on `argv`, its JSON in the scratch folder, its result
        kept by `key`.
        """
        result = main([*argv, flag, str(self.scratch / f"{key}.json")])
        self.results[key] = result
        return result

    def save(self) -> None:
        card = (
            torch.cuda.get_device_name(0)
            if self.sizes.device == "cuda"
            else platform.machine() + " CPU"
        )
        doc = {
            "dry_run": self.dry_run,
            "device": card,
            "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__,
            "wall_s": round(time.perf_counter() - self.t0, 1),
            "rows": [asdict(r) for r in self.rows],
            "results": self.results,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "rows.json.part"
        tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        os.replace(tmp, self.out / "rows.json")


def tower_rows(run: Run) -> list[Row]:
    """crops/s, TFLOP/s and fraction of peak of each precision variant of both image
    towers.
    """
    s, rows = run.sizes, []
    for row_name, model in s.towers:
        key = "tower_" + row_name.split()[0].replace("/", "").lower()
        r = run.bench(
            key,
            bench_teacher.main,
            [
                "--model",
                model,
                "--tower-only",
                "--crops",
                str(s.tower_crops),
                "--batch-size",
                str(s.tower_batch),
                "--device",
                s.device,
                "--variants",
                s.variants,
            ],
        )
        for name, v in r["variants"].items():
            frac = v["fraction_of_peak"]
            detail = (
                f"{r['gflops_per_crop']:.3g} GFLOP/crop, {v['achieved_tflops']:.3g}"
                " TFLOP/s"
                + (
                    f" = {frac:.1%} of {v['peak_tflops']:g}"
                    if frac is not None
                    else f", no peak ({v['peak_source']})"
                )
            )
            extra = {
                "model": model,
                "peak_source": v["peak_source"],
                "fraction_of_peak": frac,
                "gflops_per_crop": r["gflops_per_crop"],
            }
            rows.append(
                Row(
                    "tower",
                    f"teacher tower {row_name} {name}",
                    v["crops_per_s"],
                    "crops/s",
                    detail,
                    extra=extra,
                )
            )
    return rows


def hico_world(run: Run) -> tuple[Path, Path, str, str]:
    """(annotations, images, dataset, what it is) of the HICO-shaped world, written once
    per run.
    """
    out = run.scratch / "world"
    from hico_shaped import write_hico_shaped

    t0 = time.perf_counter()
    write_hico_shaped(
        out, run.sizes.world_train, max(run.sizes.world_train // 4, 1), 0, WORKERS
    )
    print(
        f"HICO-shaped world of {run.sizes.world_train} training images in"
        f" {time.perf_counter() - t0:.1f} s"
    )
    return (
        out / "train.json",
        out / "images",
        "hico-det",
        "HICO-shaped (hico_shaped.py)",
    )


def e2e_rows(run: Run) -> list[Row]:
    """`cache-teacher` end to end against the bare encoder on the same crops."""
    s = run.sizes
    ann, images, dataset, what = hico_world(run)
    r = run.bench(
        "e2e",
        bench_teacher.main,
        [
            "--model",
            s.e2e_model,
            "--vocabulary",
            dataset,
            "--world-annotations",
            str(ann),
            "--world-images",
            str(images),
            "--bare-crops",
            str(s.e2e_bare_crops),
            "--rounds",
            "1",
            "--batch-size",
            str(s.e2e_batch),
            "--workers",
            str(s.e2e_workers),
            "--device",
            s.device,
            "--variants",
            "fp16w-cl" if s.device == "cuda" else "fp32",
        ],
    )
    world = f"{r['images']} images, {r['pairs']} pairs, {what}"
    return [
        Row(
            "e2e",
            "cache-teacher end to end",
            r["end_to_end_crops_per_s"],
            "crops/s",
            f"{s.e2e_model} {r['teacher_precision']}, {s.e2e_workers} workers, {world}",
        ),
        Row(
            "e2e",
            "bare encoder, same crops",
            r["bare_encoder_crops_per_s"],
            "crops/s",
            f"first {r['bare_crops']} crops, batch {s.e2e_batch}",
        ),
        Row(
            "e2e",
            "cache-teacher / bare encoder",
            r["ratio_e2e_over_bare"],
            "ratio",
            f"store {r['store_mib']:.1f} MiB, prep"
            f" {r['prep_ms_per_crop_single_process']:.2f} ms/crop (one process)",
        ),
    ]


def train_rows(run: Run) -> list[Row]:
    """CDN-S training images/s with bf16 autocast and with fp32; the cache lookup's
    share of a step.
    """
    s, rows = run.sizes, []
    for label, amp in (("bf16 autocast", ["--amp"]), ("fp32", [])):
        r = run.bench(
            f"train_{label.split()[0]}",
            bench_train_step.main,
            [
                "--student",
                s.student,
                "--batch",
                str(s.train_batch),
                "--size",
                str(s.train_size),
                "--rounds",
                str(s.train_rounds),
                "--skip-online",
                "--teacher",
                "eoid-synth-clip-rn",
                "--device",
                s.device,
                *amp,
            ],
        )
        shape = f"batch {s.train_batch}, {r['input_size']}, amp_bf16={r['amp_bf16']}"
        rows += [
            Row(
                "train",
                f"{s.student} training {label}",
                r["train_images_per_s"],
                "images/s",
                f"{shape}, step {r['step_s']['a_cache']:.3f} s",
            ),
            Row(
                "train",
                f"cache lookup share of a {label} step",
                r["cache_share_of_step_a"],
                "fraction",
                f"{1000 * r['cache_lookup_s_per_batch']:.2f} ms per batch, in the"
                " loader",
            ),
        ]
    return rows


def infer_rows(run: Run) -> list[Row]:
    """CDN-S inference images/s: torch fp32 and bf16 autocast, onnxruntime on the
    device's provider.
    """
    s = run.sizes
    h, w = s.infer_hw
    r = run.bench(
        "infer",
        bench_onnx.main,
        [
            "--preset",
            s.student,
            "--device",
            s.device,
            "--amp",
            "--batch",
            str(s.infer_batch),
            "--height",
            str(h),
            "--width",
            str(w),
            "--rounds",
            str(s.infer_rounds),
        ],
        flag="--out",
    )
    shape = f"batch {s.infer_batch}, {h}x{w}"
    rows = [
        Row(
            "infer",
            f"{s.student} inference torch fp32",
            r["torch_images_per_s"],
            "images/s",
            shape,
        )
    ]
    if "torch_bf16_images_per_s" in r:
        rows.append(
            Row(
                "infer",
                f"{s.student} inference torch bf16 autocast",
                r["torch_bf16_images_per_s"],
                "images/s",
                shape,
            )
        )
    else:
        rows.append(
            Row(
                "infer",
                f"{s.student} inference torch bf16 autocast",
                status="skipped",
                detail="bf16 autocast runs on CUDA only",
            )
        )
    name = (
        f"{s.student} inference onnxruntime {'CUDA' if s.device == 'cuda' else 'CPU'}"
        " provider"
    )
    if "onnxruntime_skipped" in r:
        rows.append(
            Row("infer", name, status="skipped", detail=r["onnxruntime_skipped"])
        )
    else:
        rows.append(
            Row(
                "infer",
                name,
                r["onnxruntime_images_per_s"],
                "images/s",
                f"{shape}, max |diff| {r['max_abs_difference']:.1e} vs torch CPU",
            )
        )
    return rows


def test_rows(run: Run) -> list[Row]:
    """`pytest -m cuda`: passed, skipped (with reasons, printed by -rs) and failed
    tests.
    """
    xml = run.out / "cuda_tests.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-rs",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={xml}",
        *run.sizes.test_paths,
    ]
    print(" ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    suite = ElementTree.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {
        k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")
    }
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    detail = (
        f"{passed} passed, {counts['skipped']} skipped, {counts['failures']} failed, "
        f"{counts['errors']} errors (pytest exit {code})"
    )
    status = "ok"
    if counts["failures"] or counts["errors"] or counts["tests"] == 0:
        status = "failed"
    elif run.sizes.device == "cuda" and passed == 0:
        status, detail = (
            "failed",
            detail + ": every CUDA test skipped on a CUDA machine",
        )
    elif passed == 0:
        status = "skipped"
    return [
        Row("tests", "pytest -m cuda", passed, "passed", detail, status, extra=counts)
    ]


STEPS: dict[str, Callable[[Run], list[Row]]] = {
    "tower": tower_rows,
    "e2e": e2e_rows,
    "train": train_rows,
    "infer": infer_rows,
    "tests": test_rows,
}


def print_rows(rows: list[Row]) -> None:
    """The table every run ends with."""
    width = max(len(r.name) for r in rows)
    print(f"\n{'row':<{width}}  {'value':>10}  {'unit':<9} {'status':<7} detail")
    for r in rows:
        value = f"{r.value:10.4g}" if r.value is not None else f"{'-':>10}"
        print(f"{r.name:<{width}}  {value}  {r.unit:<9} {r.status:<7} {r.detail}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="folder of rows.json and cuda_tests.xml"
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI)")
    ap.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated subset of {list(STEPS)}",
    )
    args = ap.parse_args()
    sizes = DRY if args.dry_run else GPU
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "device_run: no CUDA device here (torch.cuda.is_available() is False); "
            "use --dry-run on a CPU",
            file=sys.stderr,
        )
        return 2
    unknown = set(args.steps.split(",")) - set(STEPS)
    if unknown:
        ap.error(f"--steps: unknown {sorted(unknown)}; choose from {list(STEPS)}")
    run = Run(args.out, sizes, args.dry_run)
    print(
        "device_run:"
        f" {'dry run on the CPU' if args.dry_run else torch.cuda.get_device_name(0)},"
        f" torch {torch.__version__}, results in {args.out}",
        flush=True,
    )
    try:
        for name in args.steps.split(","):
            run.step(name, STEPS[name])
    finally:
        # the world and the step JSONs
        shutil.rmtree(run.scratch, ignore_errors=True)
    print_rows(run.rows)
    failed = [r.name for r in run.rows if r.status == "failed"]
    print(
        f"\n{len(run.rows)} rows in {time.perf_counter() - run.t0:.0f} s;"
        f" {'FAILED: ' + ', '.join(failed) if failed else 'none failed'};"
        f" {args.out / 'rows.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
