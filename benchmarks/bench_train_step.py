"""One training step with the teacher cache vs the online teacher (same student, batch and matches).

    python benchmarks/bench_train_step.py --student tiny --batch 4 --size 160
    python benchmarks/bench_train_step.py --student cdn-s --batch 2 --size 512 --rounds 2
    python benchmarks/bench_train_step.py --student cdn-s --batch 4 --size 800 --device cuda --amp \
        --skip-online --teacher eoid-synth-clip-rn       # step (a) on a GPU, bf16 autocast

Three ways to get the teacher's verb rows into one step (forward, matching, losses, backward,
AdamW step) on the same batch of the synthetic world:
  (a) cache:    rows looked up in a teacher cache by the loader (eoid's default); the step
                itself never sees the teacher;
  (b) original: as EoID's code runs it: per decoder output (final + each aux: 3 for CDN-S), the
                layer's matching, then one teacher call on that layer's matched ground-truth
                pairs, crops cut in the training process from the original images (decoded once
                per step), then that layer's losses;
  (c) cheapest: one teacher call per step, after matching, on the union of the pairs matched
                at any decoder layer (each distinct pair cropped and encoded once);
  (d) all pairs: one teacher call per step before the forward pass, on every candidate pair
                of the batch (eoid's `--online-teacher`, OnlineTeacher.fill).
  (a') merged:  as (a), reading a merged cache (`eoid cache merge` of the cache and a relabel of it
                with another template) instead: with --merged. The step reads rows of the same
                shape either way, so the ratio a'/a should be 1 within the rounds' noise.
They alternate for --rounds rounds after one warm-up each; medians are reported. --skip-online
leaves out (b)-(d) (the merged comparison needs no teacher in the step). --device cuda runs
step (a) on the GPU (with --skip-online: the online steps run their teacher on the CPU), --amp
its forward in bf16 autocast as `optim.amp` does in training; `train_images_per_s` = batch /
step (a).
The cache's own cost is measured where it is paid, in the loader: the time of the dataset's
teacher lookup (TrainDataset -> CacheReader.lookup, which builds the rows) per batch, as a
share of step (a). The cache is built first by `cache-teacher` with the same teacher.

The teacher is a real-size CLIP with random weights (weights "none"): RN50 (224 px) by
default; RN50x16 (384 px) runs ~10x slower per crop on a CPU. `extrapolated_rn50x16_*`
replaces the measured RN50 encoder time of (b) and (c) by their crop counts at
--rn50x16-crops-per-s (0.73 on this 2-core CPU, ENVIRONMENT_FACTS); it is an estimate, not a run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eoid.config import (
    CacheConfig,
    DataConfig,
    LossConfig,
    MatcherConfig,
    TeacherConfig,
    TrainConfig,
)
from eoid.devices import World
from eoid.pipeline import run_cache as run_cache_mod
from eoid.pipeline.data.transforms import AugmentParams
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.synth.world import generate_world
from eoid.pipeline.training.builders import build_loss
from eoid.pipeline.training.dataset import TrainDataset, collate, load_rgb
from eoid.pipeline.training.loop import as_float32
from eoid.pipeline.training.teacher_source import OnlineTeacher
from eoid.pipeline.training.training_set import prepare_training_set
from eoid.student.losses import compute_losses, decoder_layers, weighted_sum
from eoid.student.model import build_student
from eoid.teacher_cache import teacher as teacher_mod
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.online import online_teacher

from report import print_table, save_json

RESULTS = Path(__file__).parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedLookup:
    """The cache reader, with the time spent in its lookups (the loader's whole teacher
    part).
    """

    def __init__(self, reader: CacheReader):
        self.reader, self.seconds = reader, 0.0

    def lookup(self, *args):
        t0 = time.perf_counter()
        try:
            return self.reader.lookup(*args)
        finally:
            self.seconds += time.perf_counter() - t0


class TimedEncoder:
    """Counts crops and seconds of the teacher's image encoder."""

    def __init__(self, teacher):
        self.teacher, self.real = teacher, teacher.encode_images
        self.crops, self.seconds = 0, 0.0
        teacher.encode_images = self

    def __call__(self, crops):
        t0 = time.perf_counter()
        out = self.real(crops)
        self.seconds += time.perf_counter() - t0
        self.crops += len(crops)
        return out

    def reset(self) -> None:
        self.crops, self.seconds = 0, 0.0


def merged_cache(root: Path) -> Path:
    """root/merged: `eoid cache merge` of root/cache and its relabel with another
    template.
    """
    from eoid.pipeline.run_cache_merge import run_merge
    from eoid.pipeline.run_cache_relabel import run_relabel

    relabelled = run_relabel(
        root / "cache",
        root / "relabelled",
        template="a photo of a person {verb_ing} a {object}",
    )
    return run_merge([root / "cache", relabelled], root / "merged")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark of `argv` (the command line if None), print it, save its JSON,
    return it.
    """
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--student", default="tiny", help="student preset (tiny, cdn-s, ...)"
    )
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--size", type=int, default=160, help="shorter side of the student's input, px"
    )
    ap.add_argument(
        "--teacher", default="RN50", help="open_clip model (random weights)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rn50x16-crops-per-s", type=float, default=0.73)
    ap.add_argument(
        "--merged", action="store_true", help="also step (a') on a merged cache"
    )
    ap.add_argument(
        "--skip-online", action="store_true", help="leave out the online steps (b)-(d)"
    )
    ap.add_argument(
        "--device", default="cpu", help="where step (a) runs (cuda needs --skip-online)"
    )
    ap.add_argument(
        "--amp",
        action="store_true",
        help="bf16 autocast forward (CUDA only), as optim.amp",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out_json = (
        args.json or RESULTS / f"bench_train_step_{args.student.replace('-', '')}.json"
    )
    device = torch.device(args.device)
    if device.type != "cpu" and not args.skip_online:
        ap.error("--device cuda times step (a) only: add --skip-online")
    use_amp = args.amp and device.type == "cuda"
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = generate_world(
            root / "world",
            args.batch + 1,
            seed=0,
            image_size=160,
            test_fraction=1 / (args.batch + 1),
        )
        vocab = load_vocabulary(paths.vocabulary)
        data = DataConfig(
            dataset=str(paths.vocabulary),
            train_annotations=str(paths.train_json),
            train_images=str(paths.image_dir),
        )
        teacher = teacher_mod.load_teacher(args.teacher, "none", "cpu")
        teacher_mod.load_teacher = run_cache_mod.load_teacher = lambda *a, **kw: teacher
        t0 = time.perf_counter()
        run_cache(
            CacheConfig(
                data=data,
                teacher=TeacherConfig(
                    model=args.teacher, weights="none", num_workers=0, shard_rows=1024
                ),
                out=str(root / "cache"),
            ),
            World(),
        )
        t_cache = time.perf_counter() - t0
        reader = TimedLookup(CacheReader(root / "cache"))
        ts = prepare_training_set(data, vocab)
        aug = AugmentParams(
            False,
            (args.size,),
            1333,
            (args.size,),
            args.size,
            args.size,
            args.size,
            0.0,
        )
        dataset = TrainDataset(
            ts.records,
            vocab.num_verbs,
            vocab.human,
            vocab.no_interaction,
            aug,
            "all",
            reader,
            0,
            ts.annotated_pairs,
            train=True,
        )
        nocache = TrainDataset(
            ts.records,
            vocab.num_verbs,
            vocab.human,
            vocab.no_interaction,
            aug,
            "all",
            None,
            0,
            ts.annotated_pairs,
            train=True,
        )
        index = list(range(args.batch))
        images, masks, targets, metas = collate([dataset[i] for i in index])
        images, masks = images.to(device), masks.to(device)
        targets = [t.to(device) for t in targets]
        merged_reader = (
            TimedLookup(CacheReader(merged_cache(root))) if args.merged else None
        )
        if merged_reader is not None:
            merged_set = TrainDataset(
                ts.records,
                vocab.num_verbs,
                vocab.human,
                vocab.no_interaction,
                aug,
                "all",
                merged_reader,
                0,
                ts.annotated_pairs,
                train=True,
            )
            merged_targets = [
                t.to(device) for t in collate([merged_set[i] for i in index])[2]
            ]
        online = OnlineTeacher(
            TrainConfig(
                data=data, teacher=TeacherConfig(model=args.teacher, weights="none")
            ),
            vocab,
            ts.records,
            "cpu",
        )
        records = {r.key: r for r in ts.records}
        encoder = TimedEncoder(teacher)

        model = (
            build_student(args.student, vocab.num_objects, vocab.num_verbs)
            .to(device)
            .train()
        )
        criterion, weights = build_loss(MatcherConfig(), LossConfig(), vocab, "")
        optim = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-6
        )
        matched = {}

        def finish(total):
            optim.zero_grad(set_to_none=True)
            total.backward()
            optim.step()

        def step_cache(rows=targets, key="a"):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = as_float32(model(images, masks))
            matches = criterion.match(out, rows)
            terms, _ = criterion(out, rows, matches=matches)
            matched[key] = [sum(len(m.query_idx) for m in layer) for layer in matches]
            finish(weighted_sum(terms, weights))

        def step_all_pairs():
            # decode + crop + one teacher call, all candidates
            filled = online.fill(targets, metas)
            out = model(images, masks)
            matches = criterion.match(out, filled)
            terms, _ = criterion(out, filled, matches=matches)
            matched["d"] = [sum(len(m.query_idx) for m in layer) for layer in matches]
            finish(weighted_sum(terms, weights))

        def teacher_rows(rows: list[torch.Tensor], pil: list) -> list:
            """Targets whose teacher rows are filled (by one teacher call) for `rows` of
            each image only.
            """
            recs = [records[m.key] for m in metas]
            idx = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
            box = [
                metas[i].pair_box_idx[r.numpy()].reshape(-1, 2)
                for i, r in enumerate(rows)
            ]
            h = np.concatenate(
                [rec.boxes_xyxy_px[b[:, 0]] for rec, b in zip(recs, box)]
            ).reshape(-1, 4)
            o = np.concatenate(
                [rec.boxes_xyxy_px[b[:, 1]] for rec, b in zip(recs, box)]
            ).reshape(-1, 4)
            cls = np.concatenate(
                [rec.box_classes[b[:, 1]] for rec, b in zip(recs, box)]
            ).astype(np.int64)
            probs = online_teacher(
                teacher,
                pil,
                idx,
                h,
                o,
                cls,
                online.text_emb,
                online.valid,
                online.hoi_to_verb,
                vocab.num_verbs,
                online.gamma,
            )
            filled = []
            for t, r, p in zip(targets, rows, probs.split([len(r) for r in rows])):
                rows_v = torch.zeros_like(t.teacher_verb_probs)
                rows_v[r] = p
                hit = torch.zeros_like(t.teacher_hit)
                hit[r] = True
                filled.append(t._replace(teacher_verb_probs=rows_v, teacher_hit=hit))
            return filled

        def originals() -> list:
            # decoded in the step
            return [load_rgb(records[m.key].path, m.key) for m in metas]

        def step_cheapest():
            out = model(images, masks)
            matches = criterion.match(out, targets)
            rows = [
                torch.cat([layer[i].target_idx for layer in matches]).unique()
                for i in range(len(targets))
            ]
            filled = teacher_rows(rows, originals())
            terms, _ = criterion(out, filled, matches=matches)
            matched["c"] = [sum(len(m.query_idx) for m in layer) for layer in matches]
            finish(weighted_sum(terms, weights))

        def step_original():
            out = model(images, masks)
            matches = criterion.match(out, targets)
            # once per step, shared by the layers
            pil = originals()
            total, counts = None, []
            for (_, layer_out), layer_matches in zip(decoder_layers(out), matches):
                layer_targets = teacher_rows(
                    [m.target_idx.unique() for m in layer_matches], pil
                )
                terms, _ = compute_losses(
                    layer_out._replace(aux=()),
                    layer_targets,
                    criterion.distill_verb_mask,
                    criterion.match_params,
                    criterion.loss_params,
                    matches=[layer_matches],
                )
                counts.append(sum(len(m.query_idx) for m in layer_matches))
                part = weighted_sum(terms, weights)
                total = part if total is None else total + part
            matched["b"] = counts
            finish(total)

        steps = {
            "a_cache": step_cache,
            "b_online_original": step_original,
            "c_online_cheapest": step_cheapest,
            "d_online_all_pairs": step_all_pairs,
        }
        if args.skip_online:
            steps = {"a_cache": step_cache}
        if merged_reader is not None:
            steps["a_merged_cache"] = lambda: step_cache(merged_targets, "a_merged")
        for fn in steps.values():  # warm-up
            fn()
        times = {k: [] for k in steps}
        enc = {k: [] for k in steps}
        for r in range(args.rounds):
            for name, fn in steps.items():
                encoder.reset()
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                times[name].append(time.perf_counter() - t0)
                enc[name].append((encoder.crops, encoder.seconds))
            print(
                f"round {r}: "
                + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()),
                flush=True,
            )

        # the loader's teacher part, per batch (lookup + building the rows), and the
        # whole item time
        lookup_s, item_with, item_without, merged_lookup_s = [], [], [], []
        for _ in range(max(args.rounds, 3) * 3):
            reader.seconds = 0.0
            t0 = time.perf_counter()
            for i in index:
                dataset[i]
            item_with.append(time.perf_counter() - t0)
            lookup_s.append(reader.seconds)
            if merged_reader is not None:
                merged_reader.seconds = 0.0
                for i in index:
                    merged_set[i]
                merged_lookup_s.append(merged_reader.seconds)
            t0 = time.perf_counter()
            for i in index:
                nocache[i]
            item_without.append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    crops = {k: enc[k][-1][0] for k in steps}
    enc_s = {k: statistics.median(s for _, s in enc[k]) for k in steps}
    lookup = statistics.median(lookup_s)
    result = {
        "student": args.student,
        "batch": args.batch,
        "input_size": f"{args.size}x{args.size}",
        "teacher": args.teacher,
        "teacher_crop_px": teacher.crop_spec.size,
        "amp_bf16": use_amp,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"
        ),
        "candidate_pairs": int(sum(len(t.labelled) for t in targets)),
        "matched_pairs_per_layer": matched,
        "step_s": med,
        "teacher_crops_per_step": crops,
        "teacher_encode_s": enc_s,
        "cache_lookup_s_per_batch": lookup,
        "cache_share_of_step_a": lookup / med["a_cache"],
        "train_images_per_s": args.batch / med["a_cache"],
        "loader_items_s_with_cache": statistics.median(item_with),
        "loader_items_s_without_teacher": statistics.median(item_without),
        "cache_build_s": t_cache,
        "rounds": times,
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
    }
    if "b_online_original" in med:
        result.update(
            {
                f"ratio_{k[0]}_over_a": med[k] / med["a_cache"]
                for k in (
                    "b_online_original",
                    "c_online_cheapest",
                    "d_online_all_pairs",
                )
            }
        )
        result["ratio_b_over_c"] = med["b_online_original"] / med["c_online_cheapest"]
    if merged_reader is not None:
        per_round = [m / a for m, a in zip(times["a_merged_cache"], times["a_cache"])]
        result.update(
            {
                "ratio_merged_over_cache": med["a_merged_cache"] / med["a_cache"],
                "ratio_merged_over_cache_per_round": per_round,
                "merged_cache_lookup_s_per_batch": statistics.median(merged_lookup_s),
            }
        )
    for k in [
        k
        for k in ("b_online_original", "c_online_cheapest", "d_online_all_pairs")
        if k in med
    ]:
        est = med[k] - enc_s[k] + crops[k] / args.rn50x16_crops_per_s
        result[f"extrapolated_rn50x16_step_s_{k}"] = est
        result[f"extrapolated_rn50x16_ratio_{k[0]}_over_a"] = est / med["a_cache"]
    print(f"{'step':<20} {'s':>8} {'/ cache':>8} {'crops':>6} {'encode s':>9}")
    for k in steps:
        print(
            f"{k:<20} {med[k]:>8.3f} {med[k] / med['a_cache']:>8.2f} {crops[k]:>6}"
            f" {enc_s[k]:>9.3f}"
        )
    print_table(
        result,
        [
            k
            for k in result
            if k.startswith(
                (
                    "cache_",
                    "extrapolated",
                    "loader",
                    "matched",
                    "candidate",
                    "ratio_merged",
                    "merged",
                    "train_",
                )
            )
        ],
    )
    save_json(result, out_json)
    return result


if __name__ == "__main__":
    main()
