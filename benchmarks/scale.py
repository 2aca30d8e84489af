"""Every phase as the data grows to HICO-DET's size: wall time, CPU time and peak memory per N.

    python benchmarks/hico_shaped.py --out /tmp/hico --train 38118 --test 9658     # once
    nice -n 10 python benchmarks/scale.py --world /tmp/hico --work /tmp/scale \
        [--sizes 1000,4000,16000,38118] [--phases data_check,cache_teacher,...]

For each N the first N training records of the world (and the first N * 9658 / 38118 test
records) are one dataset; the images are shared. Each (phase, N) runs as its own process,
measured from outside with os.wait4 (wall, user+sys CPU and peak RSS of the process and the
children it waited for: DataLoader workers included), and is appended to
benchmarks/results/scale_rows.jsonl as it finishes; a rerun skips the rows already there.
`--report` fits log-log exponents and writes scale.json, scale.md and scale.png.

Phases (in order; later ones read what earlier ones wrote, in --work):
  data_check        eoid data check (decodes every image)
  cache_teacher     eoid cache-teacher with the shipped eoid-synth-clip; s/pair, store size
  teacher_bare      the bare encoder on the crops of the first images: s/pair (for the ratio)
  cache_resume      the same cache-teacher killed (SIGKILL) when its bar passes half, then resumed
  cache_verify      eoid cache verify against the annotations
  cache_relabel     eoid cache relabel with the 10 templates of configs/prompts/hoi_templates.txt
  cache_merge       eoid cache merge of the cache and its relabelled copy (a prompt ensemble)
  loader            the training loader, no model: images/s per worker with and without the lookup
  train             eoid train, CDN-S at 320-352 px, 3 iterations: time to the first iteration
  train_nocache     the same with loss.distill=0 and no cache (start-up where no cache is built)
  evaluate_pred     eoid evaluate --predictions on the whole test split (100 triplets per image)
  evaluate_ckpt     eoid evaluate --checkpoint (the train phase's) on the first 16 test images
  sweep_plan        a study's planning at full size: read, plan, check every run's cache
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ROWS = RESULTS / "scale_rows.jsonl"
SIZES = (1000, 4000, 16000, 38118)
PHASES = (
    "data_check",
    "cache_teacher",
    "teacher_bare",
    "cache_resume",
    "cache_verify",
    "cache_relabel",
    "cache_merge",
    "loader",
    "train",
    "train_nocache",
    "evaluate_pred",
    "evaluate_ckpt",
    "sweep_plan",
)
TEST_PER_TRAIN = 9658 / 38118
CLIP = ["--clip", "eoid-synth-clip", "--clip-weights", "bundled"]
EOID = [sys.executable, "-m", "eoid"]
# train: CDN-S at 320-352 px instead of 800, so that 3 iterations take seconds, not
# minutes, on a shared 2-core CPU (the start-up and memory of the data side do not
# depend on it)
SMALL_AUGMENT = [
    x
    for kv in (
        "augment.scales=[320,352]",
        "augment.max_size=480",
        "augment.crop_scales=[320,352]",
        "augment.crop_min=256",
        "augment.crop_max=352",
        "augment.test_size=352",
    )
    for x in ("--set", kv)
]
# a few CDN-S iterations of the UA recipe at those sizes (the train rows, with or without
# a cache)
SMALL_TRAIN = [
    x
    for kv in (
        "data.dataset=hico-det",
        "student.preset=cdn-s",
        "optim.max_iters=3",
        "optim.batch_size=2",
        "optim.num_workers=2",
        "data.setting=ua",
    )
    for x in ("--set", kv)
] + SMALL_AUGMENT


def progress(log: Path, start: int) -> float:
    """The share done by the last progress bar ('done/total [') written to `log` after
    byte `start`.
    """
    with open(log, "rb") as f:
        f.seek(start)
        found = re.findall(rb"(\d+)/(\d+) \[", f.read())
    return int(found[-1][0]) / max(int(found[-1][1]), 1) if found else 0.0


def measure(
    cmd: list[str], log: Path, kill_at: float = 0.0, watch: Path | None = None
) -> dict:
    """Run `cmd` to its end (or SIGKILL it once its progress bar passes the share
    `kill_at`); wall, CPU and peak RSS of it and its waited-for children. `watch`: a
    metrics.jsonl whose first row's time is the first iteration."""
    t0 = time.time()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        start = out.tell()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if kill_at and not killed and progress(log, start) >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                killed_s = time.time() - t0
            time.sleep(0.5)
    wall = time.time() - t0
    row = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
    }
    if killed:
        row["killed_at_s"] = killed_s
    if watch is not None and watch.is_file():
        times = [
            json.loads(line)["time"]
            for line in watch.read_text().splitlines()
            if '"iteration"' in line
        ]
        if times:
            row["first_iteration_s"] = times[0] - t0
            row["s_per_iteration"] = (
                float(np.median(np.diff(times))) if len(times) > 1 else None
            )
    if row["exit"] != 0 and not killed:
        raise RuntimeError(f"{cmd[:4]} failed (exit {row['exit']}); see {log}")
    return row


def startup_s(row: dict, log: Path) -> dict:
    """The start-up alone: the first iteration's time less that iteration's own
    (tqdm's elapsed time when iteration 1 is done, counted from the loop's start, in
    the log's last command)."""
    last_command = log.read_text(errors="replace").split("\n$ ")[-1]
    found = re.findall(r" 1/\d+ \[(\d+):(\d+)", last_command)
    if "first_iteration_s" not in row or not found:
        return row
    minutes, seconds = found[0]
    return {
        **row,
        "startup_s": row["first_iteration_s"] - (60 * int(minutes) + int(seconds)),
    }


def subset(world: Path, work: Path, n: int) -> tuple[Path, Path]:
    """train.json / test.json of the first n training and n * 9658/38118 test records."""
    work.mkdir(parents=True, exist_ok=True)
    train, test = work / "train.json", work / "test.json"
    if not train.is_file():
        for src, dst, k in (
            (world / "train.json", train, n),
            (world / "test.json", test, max(1, round(n * TEST_PER_TRAIN))),
        ):
            records = json.loads(src.read_text())
            if len(records) < k:
                raise SystemExit(f"{src} has {len(records)} records, fewer than {k}")
            dst.write_text(json.dumps(records[:k]))
    return train, test


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def in_process(code: str, *args: str) -> list[str]:
    """A command that runs one of this file's helpers (below) in a fresh interpreter."""
    return [sys.executable, str(Path(__file__).resolve()), "--helper", code, *args]


def run_phase(phase: str, n: int, world: Path, work: Path) -> dict:
    """Run one phase at size n; the row's numbers."""
    d = work / str(n)
    train, test = subset(world, d, n)
    images = str(world / "images")
    log = d / f"{phase}.log"
    cache, resumed = d / "cache", d / "cache_resumed"
    data = ["--dataset", "hico-det", "--annotations", str(train), "--images", images]
    if phase == "data_check":
        return measure(
            EOID
            + [
                "data",
                "check",
                str(train),
                "--images",
                images,
                "--dataset",
                "hico-det",
            ],
            log,
        )
    if phase == "cache_teacher":
        row = measure(EOID + ["cache-teacher", *data, *CLIP, "--out", str(cache)], log)
        pairs = json.loads((cache / "manifest.json").read_text())["fingerprint"][
            "num_pairs"
        ]
        return {
            **row,
            "pairs": pairs,
            "s_per_pair": row["wall_s"] / pairs,
            "store_mb": du(cache) / 1e6,
        }
    if phase == "teacher_bare":
        row = measure(in_process("bare", str(train), images, str(d / "bare.json")), log)
        return {**row, **json.loads((d / "bare.json").read_text())}
    if phase == "cache_resume":
        full = _row("cache_teacher", n)["wall_s"]
        first = measure(
            EOID + ["cache-teacher", *data, *CLIP, "--out", str(resumed)],
            log,
            kill_at=0.5,
        )
        if "killed_at_s" not in first:
            raise RuntimeError(
                f"cache-teacher finished before half its pairs were seen; see {log}"
            )
        row = measure(
            EOID
            + ["cache-teacher", *data, *CLIP, "--out", str(resumed), "--break-lock"],
            log,
        )
        return {**row, "killed_at_s": first.get("killed_at_s"), "full_run_s": full}
    if phase == "cache_verify":
        return measure(
            EOID + ["cache", "verify", str(cache), "--annotations", str(train)], log
        )
    if phase == "cache_merge":
        sources = [str(cache), str(d / "cache_relabel")]
        return measure(
            EOID + ["cache", "merge", *sources, "--out", str(d / "cache_merged")], log
        )
    if phase == "cache_relabel":
        out = d / "cache_relabel"
        return measure(
            EOID
            + [
                "cache",
                "relabel",
                str(cache),
                "--out",
                str(out),
                "--templates",
                str(ROOT / "configs" / "prompts" / "hoi_templates.txt"),
            ],
            log,
        )
    if phase == "loader":
        row = measure(
            in_process(
                "loader", str(train), images, str(cache), str(d / "loader.json")
            ),
            log,
        )
        return {**row, **json.loads((d / "loader.json").read_text())}
    # a run folder left by a killed try is started over
    if phase in ("train", "train_nocache"):
        shutil.rmtree(
            d / ("run" if phase == "train" else "run_nocache"), ignore_errors=True
        )
    if phase == "train":
        run = d / "run"
        return startup_s(
            measure(
                EOID
                + [
                    "train",
                    *data[2:],
                    "--cache",
                    str(cache),
                    "--out",
                    str(run),
                    *SMALL_TRAIN,
                ],
                log,
                watch=run / "metrics.jsonl",
            ),
            log,
        )
    # the same without a teacher: start-up at sizes without a cache
    if phase == "train_nocache":
        run = d / "run_nocache"
        return startup_s(
            measure(
                EOID
                + [
                    "train",
                    *data[2:],
                    "--out",
                    str(run),
                    "--set",
                    "loss.distill=0",
                    *SMALL_TRAIN,
                ],
                log,
                watch=run / "metrics.jsonl",
            ),
            log,
        )
    if phase == "evaluate_pred":
        preds = d / "predictions.json"
        if not preds.is_file():
            write_predictions(test, preds)
        return measure(
            EOID
            + [
                "evaluate",
                "--predictions",
                str(preds),
                "--annotations",
                str(test),
                "--vocabulary",
                "hico-det",
                "--setting",
                "ua",
                "--out",
                str(d / "eval_pred"),
            ],
            log,
        )
    if phase == "evaluate_ckpt":
        sliced = d / "test_slice.json"
        sliced.write_text(json.dumps(json.loads(test.read_text())[:16]))
        return measure(
            EOID
            + [
                "evaluate",
                "--checkpoint",
                str(d / "run" / "checkpoint.pt"),
                "--annotations",
                str(sliced),
                "--images",
                images,
                "--setting",
                "ua",
                "--out",
                str(d / "eval_ckpt"),
            ],
            log,
        )
    if phase == "sweep_plan":
        return measure(
            in_process("plan", str(train), images, str(cache), str(d / "study")), log
        )
    raise SystemExit(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")


def write_predictions(test: Path, out: Path, per_image: int = 100) -> None:
    """100 triplets per test image: its labelled pairs jittered, then random boxes and
    verbs.
    """
    from eoid.pipeline.data.vocab import load_vocabulary

    vocab = load_vocabulary("hico-det")
    obj_index = {c: i for i, c in enumerate(vocab.object_ids)}
    rng = np.random.default_rng(0)
    rows = []
    for rec in json.loads(test.read_text()):
        boxes = [a["bbox"] for a in rec["annotations"]]
        triplets = []
        for k in range(per_image):
            labels = rec["hoi_annotation"]
            h = labels[k % len(labels)] if labels else None
            hb = np.asarray(
                boxes[h["subject_id"]] if h else [0, 0, 50, 50], float
            ) + rng.normal(0, 4, 4)
            ob = np.asarray(
                boxes[h["object_id"]] if h else [10, 10, 60, 60], float
            ) + rng.normal(0, 4, 4)
            obj = (
                obj_index[rec["annotations"][h["object_id"]]["category_id"]] if h else 1
            )
            verb = (
                int(vocab.verb_ids.index(h["category_id"]))
                if h and k < len(labels)
                else int(rng.integers(vocab.num_verbs))
            )
            triplets.append(
                {
                    "human_box": np.sort(hb.reshape(2, 2), axis=0).ravel().tolist(),
                    "object_box": np.sort(ob.reshape(2, 2), axis=0).ravel().tolist(),
                    "object": obj,
                    "verb": verb,
                    "score": float(rng.random()),
                }
            )
        rows.append({"file_name": rec["file_name"], "triplets": triplets})
    out.write_text(json.dumps(rows))


def _row(phase: str, n: int) -> dict:
    for r in read_rows():
        if (r["phase"], r["n"]) == (phase, n):
            return r
    raise SystemExit(
        f"{phase} at N={n} has not run yet; run it first (--phases {phase})"
    )


def read_rows() -> list[dict]:
    return (
        [json.loads(line) for line in ROWS.read_text().splitlines()]
        if ROWS.is_file()
        else []
    )


# --- helpers run in their own process (measured from outside like the eoid commands)
# ---


def helper_bare(train: str, images: str, out: str, max_pairs: int = 3000) -> None:
    """Seconds per pair of the bare image encoder on the union crops of the first
    images.
    """
    import torch
    from PIL import Image

    from eoid.pipeline.data.readers import read_annotations
    from eoid.pipeline.data.vocab import load_vocabulary
    from eoid.teacher_cache.crops import union_crops
    from eoid.teacher_cache.plan import build_plan
    from eoid.teacher_cache.teacher import load_teacher, resolve_precision

    vocab = load_vocabulary("hico-det")
    records = read_annotations(Path(train), Path(images), vocab).records
    plan = build_plan(records, vocab.human)
    teacher = load_teacher(
        "eoid-synth-clip",
        "bundled",
        torch.device("cpu"),
        resolve_precision("auto", "cpu"),
    )
    crops, o = [], plan.image_offsets
    t0 = time.perf_counter()
    for i, r in enumerate(records):
        if o[i] >= max_pairs:
            break
        crops.append(
            union_crops(
                Image.open(r.path).convert("RGB"),
                plan.human_xyxy[o[i] : o[i + 1]],
                plan.object_xyxy[o[i] : o[i + 1]],
                teacher.crop_spec,
            )
        )
    crops = torch.cat(crops)
    # decoding and cutting on one core: what one DataLoader worker supplies
    crop_s = (time.perf_counter() - t0) / len(crops)
    teacher.encode_images(crops[:128])  # warm-up
    t0 = time.perf_counter()
    for b in range(0, len(crops), 128):
        teacher.encode_images(crops[b : b + 128])
    wall = time.perf_counter() - t0
    Path(out).write_text(
        json.dumps(
            {
                "bare_pairs": len(crops),
                "bare_s_per_pair": wall / len(crops),
                "crop_s_per_pair": crop_s,
                "cores": os.cpu_count(),
            }
        )
    )


def helper_loader(
    train: str, images: str, cache: str, out: str, count: int = 48
) -> None:
    """The training loader without a model: images/s of one worker with and without
    the lookup, and the lookup's own time per image (timed inside the worker)."""
    import torch

    from eoid.config import AugmentConfig, DataConfig
    from eoid.pipeline.data.transforms import augment_params
    from eoid.pipeline.data.vocab import load_vocabulary
    from eoid.pipeline.training.dataset import TrainDataset, collate
    from eoid.pipeline.training.teacher_source import open_cache_for_dataset
    from eoid.pipeline.training.training_set import prepare_training_set

    vocab = load_vocabulary("hico-det")
    t0 = time.perf_counter()
    ts = prepare_training_set(
        DataConfig(
            dataset="hico-det",
            train_annotations=train,
            train_images=images,
            setting="ua",
        ),
        vocab,
    )
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    reader = open_cache_for_dataset(Path(cache), vocab, Path(train), 0.5)
    t_open = time.perf_counter() - t0

    class Timed:
        spent = 0.0

        def lookup(self, *a):
            t = time.perf_counter()
            res = reader.lookup(*a)
            Timed.spent += time.perf_counter() - t
            return res

    aug = augment_params(AugmentConfig())
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ts.records), size=min(count, len(ts.records)), replace=False)
    records = [ts.records[i] for i in pick]
    result = {"read_annotations_s": t_read, "open_cache_s": t_open}
    for name, teacher in (("no_lookup", None), ("lookup", Timed())):
        ds = TrainDataset(
            records,
            vocab.num_verbs,
            vocab.human,
            vocab.no_interaction,
            aug,
            "all",
            teacher,
            seed=0,
            annotated_pairs=ts.annotated_pairs,
        )
        loader = torch.utils.data.DataLoader(
            ds, batch_size=1, num_workers=0, collate_fn=collate
        )
        t0 = time.perf_counter()
        for _ in loader:
            pass
        wall = time.perf_counter() - t0
        result[f"{name}_images_per_s"] = len(records) / wall
        if teacher is not None:
            result["lookup_s_per_image"] = Timed.spent / len(records)
            result["lookup_share"] = Timed.spent / wall
    Path(out).write_text(json.dumps(result))


def helper_plan(train: str, images: str, cache: str, folder: str) -> None:
    """What `eoid sweep` does before training: read the study, plan every run, check
    each cache.
    """
    from eoid.pipeline.run_sweep import check_cache_fits
    from eoid.pipeline.study import read_study
    from eoid.pipeline.study_plan import check_same_config, plan_study

    folder_p = Path(folder)
    folder_p.mkdir(parents=True, exist_ok=True)
    recipe = folder_p / "recipe.toml"
    recipe.write_text(
        f'cache = "{cache}"\nout = "{folder_p / "unused"}"\n[data]\ndataset ='
        f' "hico-det"\ntrain_annotations = "{train}"\ntrain_images ='
        f' "{images}"\ntest_annotations ='
        f' "{Path(train).parent / "test.json"}"\ntest_images = "{images}"\nsetting ='
        ' "ua"\n'
    )
    study = folder_p / "study.toml"
    study.write_text(
        f'about = "scale"\nbase = "{recipe}"\nseeds = [0, 1, 2]\nmetrics = ["full"]\n'
        f'[caches.c]\npath = "{cache}"\n'
        '[[variants]]\nname = "eoid"\ncache = "c"\n'
        '[[variants]]\nname = "topk5"\ncache = "c"\nset = ["matcher.topk=5"]\n'
    )
    runs = plan_study(read_study(study), folder_p / "runs")
    check_cache_fits(runs)
    for r in runs:
        check_same_config(r)


# --- the report: exponents, table and plot ---


def fit_exponent(ns: list[int], values: list[float]) -> float | None:
    """Slope of log(value) against log(N) (least squares), None with fewer than 2 usable
    points.
    """
    pts = [(n, v) for n, v in zip(ns, values) if v and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def targets(summary: dict) -> list[str]:
    """The issue's targets against the rows: a markdown table (figure, target,
    measured)."""

    def at(phase: str, n: int | None = None) -> dict | None:
        rs = summary.get(phase, {}).get("rows", [])
        rs = [r for r in rs if n is None or r["n"] == n]
        return rs[-1] if rs else None

    top = max((r["n"] for s in summary.values() for r in s["rows"]), default=0)
    out = ["| figure | target | measured |", "|---|---|---|"]
    for key, what in (("time_exponent", "wall"), ("cpu_exponent", "CPU")):
        fitted = [(s[key], p) for p, s in summary.items() if s[key] is not None]
        if fitted:
            worst, phase = max(fitted)
            over = [p for e, p in fitted if e > 1.1]
            out.append(
                f"| largest {what} exponent | <= 1.1 | {worst:.2f} ({phase}); "
                f"over 1.1: {', '.join(over) or 'none'} |"
            )
    for phase in ("train", "train_nocache"):
        r = at(phase, top)
        if r and r.get("startup_s") is not None:
            out.append(
                f"| `{phase}` start-up at {top} | <= 30 s | {r['startup_s']:.1f} s |"
            )
    shares = [r["lookup_share"] for r in summary.get("loader", {}).get("rows", [])]
    if shares:
        out.append(
            f"| lookup share of the loader's time per image | <= 2% | "
            f"{100 * max(shares):.2f}% at most |"
        )
    ratios = []
    cache = summary.get("cache_teacher", {}).get("rows", [])
    for r in cache:
        bare = at("teacher_bare", r["n"])
        if bare:
            ratios.append(f"{bare['bare_s_per_pair'] / r['s_per_pair']:.2f} ({r['n']})")
    bare = at("teacher_bare", cache[-1]["n"]) if cache else None
    if ratios and bare and len(cache) > 1:
        # the cost of one more pair, start-up (imports, the model, the plan) excluded
        a, b = cache[-2], cache[-1]
        steady = (b["wall_s"] - a["wall_s"]) / (b["pairs"] - a["pairs"])
        cores = bare.get("cores", os.cpu_count())
        bound = bare["bare_s_per_pair"] / (
            bare["bare_s_per_pair"] + bare["crop_s_per_pair"] / cores
        )
        ratios.append(
            f"{bare['bare_s_per_pair'] / steady:.2f} per added pair "
            f"({a['n']} -> {b['n']}); at most {bound:.2f} on {cores} cores "
            f"(encoder {1e3 * bare['bare_s_per_pair']:.2f} ms per pair, decode and "
            f"cut {1e3 * bare['crop_s_per_pair']:.2f} ms of one core)"
        )
    if ratios:
        out.append(f"| cache-teacher / bare encoder | >= 0.9 | {'; '.join(ratios)} |")
    peaks = [
        (r["peak_rss_mb"], p)
        for p, s in summary.items()
        for r in s["rows"]
        if r["n"] == top
    ]
    if peaks:
        mb, phase = max(peaks)
        out.append(
            f"| peak memory at {top} | <= 4 GiB | {mb / 1024:.2f} GiB ({phase}) |"
        )
    return out


def report(rows: list[dict], tag: str = "scale") -> None:
    """scale.json, scale.md and scale.png in benchmarks/results/ from the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_phase: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["n"]):
        by_phase.setdefault(r["phase"], []).append(r)
    summary = {}
    for phase in [p for p in PHASES if p in by_phase]:
        rs = by_phase[phase]
        ns = [r["n"] for r in rs]
        summary[phase] = {
            "time_exponent": fit_exponent(ns, [r["wall_s"] for r in rs]),
            "cpu_exponent": fit_exponent(ns, [r["cpu_s"] for r in rs]),
            "memory_exponent": fit_exponent(ns, [r["peak_rss_mb"] for r in rs]),
            "rows": rs,
        }
    (RESULTS / f"{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        "| phase | N | wall s | CPU s | peak RSS MB | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    skip = {"phase", "n", "wall_s", "cpu_s", "peak_rss_mb", "exit", "date", "commit"}
    for phase, s in summary.items():
        for r in s["rows"]:
            notes = ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in r.items()
                if k not in skip
            )
            lines.append(
                f"| {phase} | {r['n']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                f"{r['peak_rss_mb']:.0f} | {notes} |"
            )
    lines += [
        "",
        "| phase | time exponent | CPU exponent | memory exponent |",
        "|---|---:|---:|---:|",
    ]
    for phase, s in summary.items():
        fmt = [
            f"{s[k]:.2f}" if s[k] is not None else "-"
            for k in ("time_exponent", "cpu_exponent", "memory_exponent")
        ]
        lines.append(f"| {phase} | {' | '.join(fmt)} |")
    lines += ["", *targets(summary)]
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    colors = plt.get_cmap("tab20").colors
    # 13 phases: 20 colours, 3 markers
    for k, (phase, s) in enumerate(summary.items()):
        ns = [r["n"] for r in s["rows"]]
        style = {"color": colors[k % 20], "marker": "osD"[k % 3], "label": phase}
        ax_t.plot(ns, [r["wall_s"] for r in s["rows"]], "-", **style)
        ax_m.plot(ns, [r["peak_rss_mb"] for r in s["rows"]], "-", **style)
    for ax, what in ((ax_t, "wall time (s)"), (ax_m, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training images N")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{tag}.png", dpi=90)
    print((RESULTS / f"{tag}.md").read_text())


def main() -> None:
    global ROWS
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--world",
        type=Path,
        help="a folder written by benchmarks/hico_shaped.py (full size)",
    )
    ap.add_argument(
        "--work", type=Path, help="scratch folder for the subsets, caches and runs"
    )
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument(
        "--rows", type=Path, default=RESULTS / "scale_rows.jsonl", help="the rows file"
    )
    ap.add_argument(
        "--report",
        action="store_true",
        help="only write the table and plot from the rows",
    )
    ap.add_argument("--helper", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.helper:
        {"bare": helper_bare, "loader": helper_loader, "plan": helper_plan}[
            args.helper[0]
        ](*args.helper[1:])
        return
    ROWS = args.rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.report:
        if args.world is None or args.work is None:
            raise SystemExit(
                "give --world (benchmarks/hico_shaped.py's folder) and --work"
            )
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for n in map(int, args.sizes.split(",")):
            for phase in args.phases.split(","):
                if any((r["phase"], r["n"]) == (phase, n) for r in read_rows()):
                    continue
                print(f"{time.strftime('%H:%M:%S')} {phase} N={n} ...", flush=True)
                row = {
                    "phase": phase,
                    "n": n,
                    **run_phase(phase, n, args.world, args.work),
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                    "commit": commit,
                }
                with open(ROWS, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  {json.dumps(row)}", flush=True)
    report(read_rows())


if __name__ == "__main__":
    main()
