"""The quickstart's EoID run with other teachers: the second synthetic teacher and the
merged cache.

    python benchmarks/quickstart_teachers.py --out runs/quickstart_teachers --seeds 0 1 2 3 4
    python benchmarks/quickstart_teachers.py --out runs/quickstart_teachers --summary

For each seed it does what `eoid quickstart --seed S` does for its EoID run, with only
the cache swapped: the same world (generate_world(600 images, S, quickstart layout): the
same bytes as the quickstart's), the packaged recipe eoid/data/quickstart.toml with
optim.seed = S, the same data and test split. The no-teacher baseline does not depend on
the teacher and is not rerun; the shipped teacher's EoID numbers are the quickstart's
own (`--teachers shipped` reruns them here). Teachers (--teachers):
  second  the cache of the second synthetic teacher (eoid-synth-clip-rn, bundled, or
          --second-weights FILE)
  merged  `eoid cache merge` of the shipped teacher's cache and the second's (mean, equal weights)
  merged_geometric, shipped   the geometric merge; the shipped teacher alone
The runs of one seed train side by side, one process and one torch thread each, as the
quickstart trains its two. Each finished run appends {seed, teacher, full, seen, unseen,
seconds} to OUT/results.jsonl. Rerunning the command skips the runs already there,
resumes a run stopped mid-training from its checkpoint, and reuses the worlds and
caches. --summary prints mean ± std per teacher over the seeds in the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from eoid.config import CacheConfig, DataConfig, TeacherConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.devices import World
from eoid.errors import EoidError
from eoid.files import output_folder
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.run_cache_merge import run_merge
from eoid.pipeline.run_quickstart import train_runs
from eoid.pipeline.synth.layouts import QUICKSTART
from eoid.pipeline.synth.world import generate_world
from eoid.pipeline.training.quickstart_recipe import (
    TEACHER,
    on_world,
    recipe_path,
    require_same_recipe,
)

TEACHERS = ("second", "merged", "merged_geometric", "shipped")


CACHE_FOLDERS = {
    "shipped": "teacher_cache",
    "second": "teacher_cache_second",
    "merged": "teacher_cache_merged",
    "merged_geometric": "teacher_cache_merged_geometric",
}


def seed_paths(folder: Path) -> tuple[DataConfig, dict[str, Path]]:
    """Where the world and data of a seed's `folder` are, and each teacher's cache
    (nothing built).
    """
    root = folder / "world"
    data = DataConfig(
        dataset=str(root / "vocabulary.json"),
        train_annotations=str(root / "train.json"),
        train_images=str(root / "images"),
        test_annotations=str(root / "test.json"),
        test_images=str(root / "images"),
        setting="ua",
    )
    return data, {t: folder / name for t, name in CACHE_FOLDERS.items()}


def build_seed(
    folder: Path, seed: int, second: TeacherConfig, images: int = 600
) -> None:
    """The quickstart's world of `seed` under `folder`, and each teacher's cache
    (resumable).
    """
    data, caches = seed_paths(folder)
    if not Path(data.test_annotations).is_file():  # test.json is written last
        generate_world(
            Path(data.dataset).parent, images, seed, layout=QUICKSTART, progress=False
        )
    shipped = run_cache(
        CacheConfig(data=data, teacher=TEACHER, out=str(caches["shipped"])), World()
    )
    other = run_cache(
        CacheConfig(data=data, teacher=second, out=str(caches["second"])), World()
    )
    run_merge([shipped, other], caches["merged"])
    run_merge([shipped, other], caches["merged_geometric"], rule="geometric")


def eoid_run(
    data: DataConfig,
    seed: int,
    cache: Path,
    teacher: TeacherConfig,
    out: Path,
    extra: tuple[str, ...] = (),
) -> TrainConfig:
    """The quickstart's EoID run (run_quickstart's "eoid" config) with `cache` instead
    of the shipped one.
    """
    base = load_config(TrainConfig, recipe_path(), (f"optim.seed={seed}", *extra))
    base = dataclasses.replace(on_world(base, data, teacher), resume=True)
    return dataclasses.replace(base, cache=str(cache), out=str(out))


def done_runs(jsonl: Path) -> dict[tuple[int, str], dict]:
    rows = (
        [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        if jsonl.is_file()
        else []
    )
    return {(r["seed"], r["teacher"]): r for r in rows}


def run_seed(
    out: Path,
    seed: int,
    teachers: list[str],
    second: TeacherConfig,
    images: int = 600,
    extra: tuple[str, ...] = (),
) -> None:
    """Train (or resume) the EoID runs of `seed` not yet in OUT/results.jsonl, then
    append them.
    """
    jsonl = out / "results.jsonl"
    folder = out / f"seed{seed}"
    data, caches = seed_paths(folder)
    configs = {
        t: eoid_run(
            data,
            seed,
            caches[t],
            second if t == "second" else TEACHER,
            folder / "runs" / f"eoid_{t}",
            extra,
        )
        for t in teachers
    }
    # a run of other values is never reported as this one
    require_same_recipe(configs.values())
    todo = [t for t in teachers if (seed, t) not in done_runs(jsonl)]
    if not todo:
        return
    build_seed(output_folder(folder), seed, second, images)
    configs = {t: configs[t] for t in todo}
    started = time.time()
    pending = [
        c for c in configs.values() if not (Path(c.out) / "results.json").is_file()
    ]
    # the quickstart's threads per run, side by side or alone: its students
    train_runs(pending, [Path(c.out).name for c in pending])
    for teacher, cfg in configs.items():
        mAP = json.loads((Path(cfg.out) / "results.json").read_text())["mAP"]
        row = {
            "seed": seed,
            "teacher": teacher,
            **{k: mAP[k] for k in ("full", "seen", "unseen")},
            "seconds": round(time.time() - started, 1),
            "run": str(cfg.out),
            "cache": str(cfg.cache),
        }
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def summary(out: Path) -> str:
    rows = list(done_runs(out / "results.jsonl").values())
    lines = [
        f"{'teacher':<18}{'runs':>5}{'Full':>16}{'Seen':>16}{'Unseen':>16}   seeds"
    ]
    for teacher in dict.fromkeys(r["teacher"] for r in rows):
        mine = sorted(
            (r for r in rows if r["teacher"] == teacher), key=lambda r: r["seed"]
        )
        cells = []
        for k in ("full", "seen", "unseen"):
            values = [r[k] for r in mine]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):>8.2f} ± {std:<5.2f}")
        lines.append(
            f"{teacher:<18}{len(mine):>5}"
            + "".join(cells)
            + "   "
            + ", ".join(
                f"{r['seed']}: {r['full']:.2f}/{r['seen']:.2f}/{r['unseen']:.2f}"
                for r in mine
            )
        )
    return "\n".join(lines)


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
        "--teachers", nargs="+", choices=TEACHERS, default=["second", "merged"]
    )
    ap.add_argument(
        "--second",
        default="eoid-synth-clip-rn",
        help="the second teacher's open_clip model",
    )
    ap.add_argument(
        "--second-weights", default="bundled", help="its weights: a file, or bundled"
    )
    ap.add_argument(
        "--summary", action="store_true", help="print mean ± std per teacher and stop"
    )
    ap.add_argument(
        "--images",
        type=int,
        default=600,
        help="world size (600: the quickstart's; smoke tests)",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help=(
            "recipe override, e.g. loss.is_positives=matched (docs/results.md's table) "
            "or optim.epochs=1 (smoke tests)"
        ),
    )
    args = ap.parse_args()
    if not args.summary:
        second = TeacherConfig(
            model=args.second,
            weights=args.second_weights,
            batch_size=128,
            num_workers=0,
        )
        try:
            for seed in args.seeds:
                run_seed(
                    output_folder(args.out),
                    seed,
                    args.teachers,
                    second,
                    args.images,
                    tuple(args.overrides),
                )
        except EoidError as err:
            raise SystemExit(f"Error: {err}") from None
    print(summary(args.out))


if __name__ == "__main__":
    main()
