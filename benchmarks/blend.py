"""The quickstart's EoID students scored alone, with CLIP's verb scores, and with the
blend of both.

    python benchmarks/blend.py --out runs/blend --seeds 0 1 2 3 4
    python benchmarks/blend.py --out runs/blend --train-only --seeds 0 1 2 3 4   (students only)
    python benchmarks/blend.py --out runs/blend --summary    (the table from what is done)
    python benchmarks/blend.py --out runs/blend --score-only --unfinished --test-limit 200
        (score the students as they are now, still training, on the first 200 test
        images: a look)

For each seed it trains what `eoid quickstart --seed S` trains for its EoID run and
nothing else (the same world: generate_world(600 images, S, quickstart layout), the
shipped teacher's cache, the packaged recipe eoid/data/quickstart.toml with optim.seed =
S; no baseline, no predictions), two seeds side by side with the quickstart's torch
threads per run (run_quickstart.run_threads: the thread count changes the student). Each
student is then scored as tests/pipeline/test_run_quickstart.py scores it: on the test
split (600 images) of a held-out world that no student saw (`eoid synth --images 2000
--seed 1234 --layout quickstart`), under the unseen-verb setting (ua), once per verb
classifier: the student alone, CLIP (the shipped teacher) alone, and the blend at each
--weights value, each with Full / Seen / Unseen / HM mAP and the inference cost in ms
per image. Resumable: each finished score appends one row to OUT/results.jsonl and a
rerun skips the rows there; a student stopped mid-training resumes from its checkpoint;
worlds and caches are reused. The table (mean ± std over the seeds done) goes to
benchmarks/results/blend.md (--summary: only that). --unfinished also scores a student
still training, from a copy of its latest checkpoint; its rows carry the epochs it had,
and a later score of the finished run supersedes them in the table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from eoid.checkpoint import evaluation_recipe, load_checkpoint
from eoid.config import CacheConfig, DataConfig, EvalConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.devices import World
from eoid.errors import EoidError
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.evaluation.clip_verbs import (
    batch_triplets,
    clip_verb_batches,
    load_clip_verbs,
    verb_scored,
)
from eoid.pipeline.evaluation.scoring import score
from eoid.pipeline.evaluation.speed import StageClock, per_image_ms
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.run_quickstart import train_runs
from eoid.pipeline.synth.layouts import QUICKSTART
from eoid.pipeline.synth.world import generate_world
from eoid.pipeline.training.quickstart_recipe import (
    TEACHER,
    on_world,
    recipe_path,
    require_same_recipe,
)

# images and seed of the held-out world, as the quickstart test
HELD_OUT = (2000, 1234)
GROUPS = ("full", "seen", "unseen", "hm")
TABLE = Path(__file__).resolve().parent / "results" / "blend.md"


def world_data(root: Path) -> DataConfig:
    """The DataConfig of a generated world under `root` (train and test split of its one
    folder).
    """
    return DataConfig(
        dataset=str(root / "vocabulary.json"),
        train_annotations=str(root / "train.json"),
        train_images=str(root / "images"),
        test_annotations=str(root / "test.json"),
        test_images=str(root / "images"),
        setting="ua",
    )


def make_world(root: Path, images: int, seed: int) -> DataConfig:
    """Generate the quickstart-layout world once (test.json is written last, so it marks
    done).
    """
    data = world_data(root)
    if not Path(data.test_annotations).is_file():
        generate_world(root, images, seed, layout=QUICKSTART, progress=False)
    return data


def eoid_config(
    data: DataConfig, seed: int, cache: Path, out: Path, extra: tuple[str, ...]
) -> TrainConfig:
    """run_quickstart's "eoid" run: the packaged recipe, optim.seed = seed, the world's
    paths.
    """
    base = load_config(TrainConfig, recipe_path(), (f"optim.seed={seed}", *extra))
    base = dataclasses.replace(on_world(base, data), resume=True)
    return dataclasses.replace(base, cache=str(cache), out=str(out))


def student_config(
    out: Path, seed: int, images: int, extra: tuple[str, ...]
) -> TrainConfig:
    """Seed's EoID run, its world and teacher cache made (or reused) first."""
    folder = output_folder(out / f"seed{seed}")
    data = make_world(folder / "world", images, seed)
    cfg = eoid_config(
        data, seed, folder / "teacher_cache", folder / "runs" / "eoid", extra
    )
    require_same_recipe([cfg])  # a run of other values is never reported as this one
    run_cache(CacheConfig(data=data, teacher=TEACHER, out=cfg.cache), World())
    return cfg


def train_students(
    out: Path, seeds: list[int], images: int, extra: tuple[str, ...]
) -> None:
    """Train (or resume) the seeds' EoID students not finished yet, two side by side
    with the quickstart's thread count (run_threads), as `eoid quickstart` trains its
    two runs: so each student is the one `eoid quickstart --seed S` trains.
    """
    configs = [student_config(out, seed, images, extra) for seed in seeds]
    todo = [
        (seed, c)
        for seed, c in zip(seeds, configs)
        if not (Path(c.out) / "results.json").is_file()
    ]
    for k in range(0, len(todo), 2):
        pair = todo[k : k + 2]
        started = time.time()
        train_runs([c for _, c in pair], [f"seed {seed}" for seed, _ in pair])
        names = ", ".join(str(seed) for seed, _ in pair)
        print(f"seeds {names}: trained in {time.time() - started:.0f} s", flush=True)


def snapshot(
    out: Path, seed: int, unfinished: bool, external: Path | None = None
) -> tuple[Path, float, int] | None:
    """(checkpoint to score, epochs trained, epochs of the recipe) of seed's student;
    None when it is not trained yet (or still training and `unfinished` is off).
    Epochs trained: finished epochs, plus batches done / 1000 when the run was
    stopped mid-epoch (2.030: 2 epochs and 30 batches). A run still training is
    scored from a copy of its latest checkpoint, so that its writer is never raced.
    `external`: the checkpoint.pt of a run trained elsewhere (e.g. by `eoid
    quickstart`), scored in place of OUT's own."""
    path = external or out / f"seed{seed}" / "runs" / "eoid" / "checkpoint.pt"
    if not path.is_file():
        if external:
            raise EoidError(
                f"{external}: no such checkpoint (--checkpoint {seed}=...). "
                "Pass a run's checkpoint.pt."
            )
        return None
    copy = out / f"seed{seed}" / "snapshot.pt"
    output_folder(copy.parent)
    shutil.copyfile(path, copy)
    ckpt = load_checkpoint(copy, mmap=True)
    epochs = ckpt["config"]["optim"]["epochs"]
    # "epoch" counts the finished epochs; a run stopped mid-epoch also saved its batches
    # done
    done = float(ckpt["epoch"]) + ckpt.get("extra", {}).get("batches_done", 0) / 1000.0
    if done < epochs and not unfinished:
        return None
    return copy, done, epochs


def mode_name(weight: float | None, clip: bool) -> str:
    return (
        "student" if not clip else ("clip" if weight is None else f"blend w={weight:g}")
    )


def score_student(
    checkpoint: Path,
    held: DataConfig,
    weights: list[float],
    batch_size: int,
    limit: int = 0,
) -> list[dict]:
    """Every mode's row for one checkpoint: one pass of the student and CLIP over the
    held-out test images (timed), then each mode post-processed (timed) and scored
    from the kept outputs. `limit` > 0: only the first `limit` test images (a quick
    look; the rows say how many)."""
    device = "cpu"
    model, vocab, _ = model_from_checkpoint(checkpoint, device)
    ev = load_config(EvalConfig, None, (), under=evaluation_recipe(checkpoint))
    records = read_annotations(
        Path(held.test_annotations), Path(held.test_images), vocab
    ).records
    records = records[:limit] if limit > 0 else records
    clip = load_clip_verbs(TEACHER, vocab, device, prior=True)
    clock = StageClock(device)
    batches = []
    for outputs, probs, sizes, keys in clip_verb_batches(
        model,
        clip,
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        ev.augment,
        device,
        batch_size,
        TEACHER.batch_size,
        clock,
    ):
        batches.append((outputs, probs, sizes, keys))
        clock.end_batch(len(keys))
    shared = per_image_ms(clock.seconds, clock.images)
    if shared is None:
        raise EoidError(
            f"{len(records)} test image(s) fill only the warm-up batch, so nothing was"
            " timed: score more images (--test-limit 0 or above --batch-size)."
        )
    rows = []
    for weight, with_clip in [
        (None, False),
        (None, True),
        *((w, True) for w in weights),
    ]:
        post_clock = StageClock(device)
        triplets = {}
        for outputs, probs, sizes, keys in batches:
            with post_clock.stage("postprocess"):
                scored = verb_scored(outputs, probs, weight) if with_clip else outputs
                triplets.update(batch_triplets(scored, sizes, keys, vocab, ev.post))
            post_clock.end_batch(len(keys))
        mAP = score(triplets, records, vocab, "ua")["mAP"]
        ms = {
            "student": shared["student"],
            **({"clip": shared["clip"]} if with_clip else {}),
            "postprocess": per_image_ms(post_clock.seconds, post_clock.images)[
                "postprocess"
            ],
        }
        ms["total"] = sum(ms.values())
        rows.append(
            {
                "mode": mode_name(weight, with_clip),
                **{g: mAP[g] for g in GROUPS},
                "ms_per_image": ms,
                "images": len(records),
                "held_out": str(Path(held.test_annotations).parent),
                "images_timed": clock.images,
                "batch_size": batch_size,
                "threads": torch.get_num_threads(),
            }
        )
    return rows


def done_rows(jsonl: Path) -> list[dict]:
    return (
        [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        if jsonl.is_file()
        else []
    )


def score_seeds(
    out: Path,
    seeds: list[int],
    weights: list[float],
    unfinished: bool,
    batch_size: int,
    held_images: int = HELD_OUT[0],
    limit: int = 0,
    external: dict[int, Path] | None = None,
) -> None:
    """Score each trained seed not yet in OUT/results.jsonl (at its current epoch) and
    append its rows.
    """
    held = make_world(out / "held_out", held_images, HELD_OUT[1])
    jsonl = out / "results.jsonl"
    for seed in seeds:
        found = snapshot(out, seed, unfinished, (external or {}).get(seed))
        if found is None:
            print(f"seed {seed}: not trained yet, not scored", flush=True)
            continue
        checkpoint, epochs, of = found
        modes = {
            mode_name(None, False),
            mode_name(None, True),
            *(mode_name(w, True) for w in weights),
        }
        done = {
            r["mode"]
            for r in done_rows(jsonl)
            if r["seed"] == seed
            and r["epochs"] == epochs
            and r.get("limit", 0) == limit
        }
        if modes <= done:
            continue
        started = time.time()
        rows = score_student(checkpoint, held, weights, batch_size, limit)
        with open(jsonl, "a") as f:
            for row in rows:
                row.update(
                    seed=seed,
                    epochs=epochs,
                    of_epochs=of,
                    checkpoint=str(checkpoint),
                    limit=limit,
                )
                f.write(json.dumps(row) + "\n")
        print(
            f"seed {seed} (epoch {epochs:g} of {of}): scored in"
            f" {time.time() - started:.0f} s",
            flush=True,
        )


def mean_std(values: list[float | None]) -> str:
    if not values or any(v is None for v in values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(out: Path) -> str:
    """The Markdown table: per mode, mean ± std (sample std) over the seeds at their
    latest epoch.
    """
    # per seed: the most trained, then most images
    latest: dict[int, tuple[float, int]] = {}
    for r in done_rows(out / "results.jsonl"):
        latest[r["seed"]] = max(
            latest.get(r["seed"], (0.0, 0)), (r["epochs"], r["images"])
        )
    rows = [
        r
        for r in done_rows(out / "results.jsonl")
        if (r["epochs"], r["images"]) == latest[r["seed"]]
    ]
    by_mode: dict[str, dict[int, dict]] = {}
    for r in rows:
        # the last row of a (seed, mode) wins
        by_mode.setdefault(r["mode"], {})[r["seed"]] = r
    seeds = sorted(latest)
    of = {r["seed"]: r["of_epochs"] for r in rows}
    state = ", ".join(f"seed {s}: epoch {latest[s][0]:g} of {of[s]}" for s in seeds)
    lines = [
        (
            f"Held-out world ({rows[0]['held_out'] if rows else '-'}:"
            f" generate_world(images, seed {HELD_OUT[1]}, quickstart layout)),"
            f" {rows[0]['images'] if rows else 0} of its test images, setting ua; mAP"
            f" %, mean ± std over seeds ({state}); ms per image:"
            f" {rows[0]['images_timed'] if rows else 0} images after a warm-up batch,"
            f" CPU float32, batch {rows[0]['batch_size'] if rows else '-'},"
            f" {rows[0]['threads'] if rows else '-'} threads."
        ),
        "",
        (
            "| verbs | seeds | Full | Seen | Unseen | HM | student ms | CLIP ms | post"
            " ms | total ms |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, per_seed in by_mode.items():
        rs = list(per_seed.values())
        ms = [
            (
                mean_std([r["ms_per_image"].get(k) for r in rs])
                if all(k in r["ms_per_image"] for r in rs)
                else "-"
            )
            for k in ("student", "clip", "postprocess", "total")
        ]
        lines.append(
            f"| {mode} | {len(rs)} | "
            + " | ".join(mean_std([r[g] for r in rs]) for g in GROUPS)
            + " | "
            + " | ".join(ms)
            + " |"
        )
    lines.append("")
    lines.append(
        "Per seed (Full / Seen / Unseen / HM): "
        + "; ".join(
            f"{mode} "
            + ", ".join(
                f"s{s} {r['full']:.2f}/{r['seen']:.2f}/{r['unseen']:.2f}/"
                f"{(r['hm'] if r['hm'] is not None else float('nan')):.2f}"
                for s, r in sorted(per_seed.items())
            )
            for mode, per_seed in by_mode.items()
        )
    )
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's machine type."""
    try:
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.machine()


def write_table(out: Path, command: str) -> str:
    """benchmarks/results/blend.md: the table, with the machine, the date and the
    command.
    """
    now = datetime.now(timezone.utc)
    text = (
        "# CLIP at inference: student alone, CLIP, blend"
        f" (benchmarks/blend.py)\n\nMachine: {cpu_name()}, {torch.get_num_threads()}"
        f" torch threads, shared and loaded; date: {now:%Y-%m-%d %H:%M} UTC; command:"
        f" `{command}`\n\n" + table(out) + "\n"
    )
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(TABLE, text, "the benchmark table")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder of the worlds, caches, runs and results",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument(
        "--train-only", action="store_true", help="train the students, score nothing"
    )
    ap.add_argument(
        "--score-only",
        action="store_true",
        help="score the students trained so far, train none",
    )
    ap.add_argument(
        "--unfinished",
        action="store_true",
        help=(
            "also score a student still training, from its latest checkpoint "
            "(marked by its epoch)"
        ),
    )
    ap.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75],
        help="blend weights w",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=2,
        help="test images per forward (eoid evaluate's 2)",
    )
    ap.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="SEED=PATH",
        help=(
            "score PATH as seed SEED's student instead of training one, e.g."
            " 0=qs/runs/eoid/checkpoint.pt of `eoid quickstart --out qs --seed 0`"
            " (repeatable)"
        ),
    )
    ap.add_argument(
        "--test-limit",
        type=int,
        default=0,
        help="score only the first N held-out test images (0: all 600; a quick look)",
    )
    ap.add_argument(
        "--summary",
        action="store_true",
        help="write and print the table of what is done",
    )
    ap.add_argument(
        "--images",
        type=int,
        default=600,
        help="world size (600: the quickstart's; smoke tests)",
    )
    ap.add_argument(
        "--held-out-images",
        type=int,
        default=HELD_OUT[0],
        help=(
            "held-out world size (2000, 600 test images: the quickstart test's; smoke"
            " tests)"
        ),
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default)"
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="recipe override, e.g. optim.epochs=1 (smoke tests only)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/blend.py " + " ".join(sys.argv[1:])
    external = {int(k): Path(v) for k, v in (c.split("=", 1) for c in args.checkpoint)}
    try:
        if not (args.summary or args.score_only):
            train_students(
                args.out,
                [seed for seed in args.seeds if seed not in external],
                args.images,
                tuple(args.overrides),
            )
        if not (args.summary or args.train_only):
            score_seeds(
                args.out,
                args.seeds,
                args.weights,
                args.unfinished,
                args.batch_size,
                args.held_out_images,
                args.test_limit,
                external,
            )
    except EoidError as err:
        raise SystemExit(f"Error: {err}") from None
    if not args.train_only:
        print(write_table(args.out, command))


if __name__ == "__main__":
    main()
