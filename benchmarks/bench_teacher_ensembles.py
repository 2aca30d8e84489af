"""What teacher ensembles cost and what they change, on the quickstart's synthetic world
(CPU, minutes).

    python benchmarks/bench_teacher_ensembles.py --seeds 0 1 2 3 4

Per world seed (`eoid synth --images 600 --seed S --layout quickstart`, the quickstart's
world): the shipped teacher (eoid-synth-clip, a ViT) and a second one (default
eoid-synth-clip-rn, a small ModifiedResNet) each cache the training pairs
(`cache-teacher`), and `cache merge` combines them (mean and geometric, equal weights).
Every cache is scored on ALL its candidate pairs, by label:
  acc_labelled        labelled interacting pairs: the teacher's top verb is one of the pair's verbs
  mass_true           the same pairs: mean teacher mass on the pair's own verbs
  mass_unseen_true    pairs labelled carry or kick (UA's unseen verbs): mean mass on those labels,
                      what distillation teaches the student
  unseen_on_no_inter  pairs labelled no_interaction: mean mass on carry + kick (wrong mass: the
                      teacher's softmax excludes no_interaction, so it must spread its
                      mass)
  unseen_on_unlabelled candidate pairs without any label (their true verb is
  no_interaction too):
                      mean mass on carry + kick
Costs (seconds, in this process after a warm-up load of both models, model loading
included, one torch thread): each cache-teacher, each merge, and a relabel of the
shipped cache with the 10 templates of configs/prompts/hoi_templates.txt, whose time
ratio to the shipped cache-teacher is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eoid.config import CacheConfig, DataConfig, TeacherConfig
from eoid.devices import World
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.run_cache_merge import run_merge
from eoid.pipeline.run_cache_relabel import run_relabel
from eoid.pipeline.synth.layouts import QUICKSTART
from eoid.pipeline.synth.world import generate_world
from eoid.teacher_cache.lookup import CacheReader

from report import save_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
METRICS = (
    "acc_labelled",
    "mass_true",
    "mass_unseen_true",
    "unseen_on_no_inter",
    "unseen_on_unlabelled",
)


def teacher_quality(reader: CacheReader, records: list, vocab) -> dict[str, float]:
    """The METRICS of one cache over every candidate pair (see the module docstring)."""
    labels = {
        (r.key, int(h), int(o)): set() for r in records for h, o, _ in r.hois.tolist()
    }
    for r in records:
        for h, o, v in r.hois.tolist():
            labels[(r.key, h, o)].add(v)
    unseen = [int(v) for v in vocab.unseen_verbs("ua")]
    out: dict[str, list[float]] = {k: [] for k in METRICS}
    for key in reader.image_keys:
        rows = reader.rows(key)
        for (h, o), probs in zip(
            reader.pair_box_idx[rows].tolist(), reader.verb_probs[rows]
        ):
            verbs = labels.get((key, h, o), set())
            interacting = verbs - {vocab.no_interaction}
            if interacting:
                out["acc_labelled"].append(float(int(probs.argmax()) in interacting))
                out["mass_true"].append(float(probs[sorted(interacting)].sum()))
                if interacting & set(unseen):
                    out["mass_unseen_true"].append(
                        float(probs[sorted(interacting & set(unseen))].sum())
                    )
            elif verbs:
                out["unseen_on_no_inter"].append(float(probs[unseen].sum()))
            else:
                out["unseen_on_unlabelled"].append(float(probs[unseen].sum()))
    result = {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}
    result.update(
        {
            f"n_{k}": len(v)
            for k, v in out.items()
            if k
            in (
                "acc_labelled",
                "mass_unseen_true",
                "unseen_on_no_inter",
                "unseen_on_unlabelled",
            )
        }
    )
    return result


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def one_world(
    root: Path, seed: int, images: int, second: TeacherConfig, templates: Path
) -> dict:
    """Caches, merges and scores of the world of `seed`."""
    paths = generate_world(
        root / "world", images, seed, layout=QUICKSTART, progress=False
    )
    data = DataConfig(
        dataset=str(paths.vocabulary),
        train_annotations=str(paths.train_json),
        train_images=str(paths.image_dir),
    )
    shipped = TeacherConfig(
        model="eoid-synth-clip", weights="bundled", batch_size=128, num_workers=0
    )
    world, seconds, caches = World(), {}, {}
    for name, teacher in (("shipped", shipped), ("second", second)):
        caches[name], seconds[f"cache_teacher_{name}"] = timed(
            run_cache,
            CacheConfig(data=data, teacher=teacher, out=str(root / name)),
            world,
        )
    for rule in ("mean", "geometric"):
        caches[f"merge_{rule}"], seconds[f"merge_{rule}"] = timed(
            run_merge,
            [caches["shipped"], caches["second"]],
            root / f"merge_{rule}",
            None,
            rule,
        )
    caches["shipped_10_templates"], seconds["relabel_10_templates"] = timed(
        run_relabel, caches["shipped"], root / "relabel", templates=templates
    )
    vocab = load_vocabulary(paths.vocabulary)
    records = read_annotations(paths.train_json, paths.image_dir, vocab).records
    quality = {
        name: teacher_quality(CacheReader(path), records, vocab)
        for name, path in caches.items()
    }
    seconds["teacher_phase_sum"] = (
        seconds["cache_teacher_shipped"] + seconds["cache_teacher_second"]
    )
    seconds["relabel_over_cache_teacher"] = (
        seconds["relabel_10_templates"] / seconds["cache_teacher_shipped"]
    )
    return {
        "seed": seed,
        "pairs": CacheReader(caches["shipped"]).fingerprint["num_pairs"],
        "quality": quality,
        "seconds": seconds,
    }


def summary_table(worlds: list[dict]) -> str:
    """Mean ± std over the worlds, one row per cache."""
    names = list(worlds[0]["quality"])
    lines = [f"{'cache':<22}" + "".join(f"{m:>24}" for m in METRICS)]
    for name in names:
        cells = []
        for m in METRICS:
            values = [w["quality"][name][m] for w in worlds]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):>15.3f} ± {std:<6.3f}")
        lines.append(f"{name:<22}" + "".join(cells))
    for key in worlds[0]["seconds"]:
        values = [w["seconds"][key] for w in worlds]
        lines.append(
            f"{key:<28} {statistics.mean(values):8.2f}  (per seed: "
            + ", ".join(f"{v:.2f}" for v in values)
            + ")"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument(
        "--second",
        default="eoid-synth-clip-rn",
        help="second teacher's open_clip model",
    )
    ap.add_argument(
        "--second-weights", default="bundled", help="its weights (a file, or bundled)"
    )
    ap.add_argument(
        "--templates",
        type=Path,
        default=ROOT / "configs" / "prompts" / "hoi_templates.txt",
    )
    ap.add_argument(
        "--json", type=Path, default=RESULTS / "bench_teacher_ensembles.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    second = TeacherConfig(
        model=args.second, weights=args.second_weights, batch_size=128, num_workers=0
    )
    from eoid.teacher_cache.teacher import load_teacher

    for model, weights in (
        ("eoid-synth-clip", "bundled"),
        (args.second, args.second_weights),
    ):
        # warm-up: imports and file caches out of the first timing
        load_teacher(model, weights)
    worlds = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            worlds.append(
                one_world(Path(tmp), seed, args.images, second, args.templates)
            )
        print(f"seed {seed}: {worlds[-1]['pairs']} candidate pairs", flush=True)
    print(summary_table(worlds))
    save_json(
        {
            "second": args.second,
            "second_weights": args.second_weights,
            "images": args.images,
            "torch_threads": 1,
            "date": time.strftime("%Y-%m-%d"),
            "worlds": worlds,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
