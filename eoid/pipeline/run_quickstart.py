"""`eoid quickstart`: the whole pipeline on the built-in world, EoID against a
no-teacher baseline.

Generates the synthetic world, caches the shipped teacher over its training pairs,
trains the tiny student twice with the same budget under the unseen-verb setting (with
distillation, and with the teacher weight set to 0), evaluates both on the test split
and writes OUT/summary.json (Full / Seen / Unseen mAP and their HM per run), a
side-by-side table, loss plots and a few predicted images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eoid.config import CacheConfig, DataConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.devices import World
from eoid.errors import EoidError
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.pipeline.evaluation.ap_arithmetic import harmonic_mean
from eoid.pipeline.training.quickstart_recipe import (
    TEACHER,
    on_world,
    recipe_path,
    require_same_recipe,
    require_settable,
)


def teacher_accuracy(
    reader,
    records: list[ImageRecord],
    vocab: Vocabulary,
    verbs: list[int] | None = None,
) -> float:
    """Share of labelled pairs (one interacting verb) whose cached teacher argmax is
    that verb.
    """
    correct = total = 0
    for rec in records:
        for h, o, v in rec.hois.tolist():
            if v == vocab.no_interaction or (verbs is not None and v not in verbs):
                continue
            probs, hit = reader.lookup(
                rec.key,
                rec.boxes_xyxy_px[[h]],
                rec.boxes_xyxy_px[[o]],
                rec.box_classes[[o]],
            )
            correct += int(hit[0] and probs[0].argmax() == v)
            total += 1
    return correct / total if total else float("nan")


def _train_one(cfg: TrainConfig, threads: int, rows: Any, index: int) -> None:
    """Child-process body of `train_in_parallel`: one CPU training with `threads` torch
    threads.

    Its metrics rows go to the parent over `rows` (the parent draws the progress); a
    graceful stop exits 128 + the signal's number without a traceback, its run saved.
    """
    import torch

    from eoid.errors import Interrupted
    from eoid.pipeline.run_train import run_train
    from eoid.terminal import stop_exit_code

    torch.set_num_threads(threads)
    try:
        run_train(cfg, World(), on_row=lambda row: rows.put((index, row)))
    except Interrupted as stop:
        raise SystemExit(stop_exit_code(stop)) from None


class RunBars:
    """One progress line per run, drawn by the parent from its children's metrics rows."""

    def __init__(self, names: list[str]):
        from tqdm import tqdm

        width = max(len(n) for n in names)
        self.bars = [
            tqdm(
                total=1,
                desc=f"{n:<{width}}",
                position=i,
                leave=True,
                unit="it",
                dynamic_ncols=True,
            )
            for i, n in enumerate(names)
        ]
        self.val_map: list[str] = [""] * len(names)

    def update(self, index: int, row: dict) -> None:
        """Advance run `index` by one metrics row (see run_train's `on_row`)."""
        bar = self.bars[index]
        if "iterations_total" in row:
            bar.total, bar.n = row["iterations_total"], row["iteration"]
        elif "val_map_full" in row:
            self.val_map[index] = f", val mAP {row['val_map_full']:.1f}"
        elif "iteration" in row:
            bar.n = row["iteration"]
            bar.set_postfix_str(
                f"epoch {row['epoch'] + 1}, loss"
                f" {row['loss']:.3f}{self.val_map[index]}",
                refresh=False,
            )
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


def run_threads() -> int:
    """Torch threads of each quickstart run: half the cores, as when its two runs train
    side by side. A run trained alone (a resumed quickstart, parallel=False,
    benchmarks/blend.py) gets as many, so that its numbers are those of the side-by-side
    run: a float sum split over another number of threads rounds differently, and 36
    epochs carry the difference into the mAP (9 points measured on seed 0's student).
    """
    return max(1, (os.cpu_count() or 1) // 2)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_in_parallel(
    configs: list[TrainConfig],
    names: list[str] | None = None,
    threads: int | None = None,
) -> None:
    """Train the runs side by side, one spawned process each, the CPU cores split
    between them.

    The runs are small (one image batch keeps a core busy), so two single-thread runs
    take about the time of one two-thread run. The children draw nothing: this process
    shows one progress line per run (`threads` torch threads each; default: the cores
    split evenly). A failed child raises an EoidError naming its run;
    a stop signal (Ctrl-C reaches every process) stops both at their next batch, saved.
    """
    from queue import Empty

    from eoid.errors import Interrupted
    from eoid.stop import StopFlag

    threads = threads or max(1, (os.cpu_count() or 1) // len(configs))
    ctx = multiprocessing.get_context("spawn")
    rows = ctx.Queue()
    procs = [
        ctx.Process(target=_train_one, args=(cfg, threads, rows, i))
        for i, cfg in enumerate(configs)
    ]
    bars = RunBars(names or [Path(cfg.out).name for cfg in configs])
    with StopFlag() as stop:
        for proc in procs:
            proc.start()
        while any(proc.is_alive() for proc in procs) or not rows.empty():
            try:
                bars.update(*rows.get(timeout=0.2))
            except Empty:
                continue
        for proc in procs:
            proc.join()
    bars.close()
    stopped = [
        cfg.out for cfg, proc in zip(configs, procs) if proc.exitcode in (130, 143)
    ]
    if stop.requested or stopped:
        raise Interrupted(
            f"quickstart stopped by {stop.raised or 'a signal'}; the runs are saved in "
            f"{[str(c.out) for c in configs]}",
            "Run the same command again to resume.",
            stop.raised,
        )
    failed = [cfg.out for cfg, proc in zip(configs, procs) if proc.exitcode != 0]
    if failed:
        raise EoidError(
            f"quickstart training failed in {failed}; see the traceback above. "
            "Rerun `eoid quickstart` with the same --out to resume."
        )


def train_runs(
    configs: list[TrainConfig],
    names: list[str],
    world: World | None = None,
    parallel: bool = True,
) -> None:
    """Train quickstart-recipe runs with run_threads() torch threads each: side by side
    when there are several, `parallel` is on and the machine has 2+ cores, else one
    after the other in this process (on `world`, default the CPU).
    """
    from eoid.pipeline.run_train import run_train

    if len(configs) > 1 and parallel and (os.cpu_count() or 1) > 1:
        train_in_parallel(configs, names, threads=run_threads())
        return
    for cfg in configs:
        with torch_threads(run_threads()):
            run_train(cfg, world or World())


def run_quickstart(
    out: Path,
    seed: int = 0,
    num_images: int = 600,
    epochs: int | None = None,
    overrides: tuple[str, ...] = (),
    predict: bool = True,
    parallel: bool = True,
) -> str:
    """Run it all; returns the printed table.

    `epochs` shortens the runs and `overrides` (`section.key=value`, as `--set`) change
    the recipe of both runs alike (tests); `predict=False` skips the drawn predictions;
    `parallel` trains the two runs side by side in two processes (on a machine with 2+
    cores).
    """
    from eoid.config import PredictConfig
    from eoid.pipeline.run_cache import run_cache
    from eoid.pipeline.run_predict import run_predict
    from eoid.pipeline.run_report import run_report
    from eoid.pipeline.synth.layouts import QUICKSTART
    from eoid.pipeline.synth.world import generate_world
    from eoid.teacher_cache.lookup import CacheReader

    start = time.time()
    require_settable(overrides)
    # the recipe first: a bad --set is refused before anything is written
    recipe = load_config(TrainConfig, recipe_path(), (f"optim.seed={seed}", *overrides))
    out = output_folder(
        Path(out), "the quickstart", owner="quickstart", signs=("summary.json", "world")
    )
    world = World()
    paths = generate_world(out / "world", num_images, seed, layout=QUICKSTART)
    data = DataConfig(
        dataset=str(paths.vocabulary),
        train_annotations=str(paths.train_json),
        train_images=str(paths.image_dir),
        test_annotations=str(paths.test_json),
        test_images=str(paths.image_dir),
        setting="ua",
    )
    cache = run_cache(
        CacheConfig(data=data, teacher=TEACHER, out=str(out / "teacher_cache")), world
    )
    vocab = load_vocabulary(paths.vocabulary)
    train_records = read_annotations(paths.train_json, paths.image_dir, vocab).records
    reader = CacheReader(cache)
    accuracy = teacher_accuracy(reader, train_records, vocab)
    unseen_accuracy = teacher_accuracy(
        reader, train_records, vocab, vocab.unseen_verbs("ua")
    )

    base = on_world(recipe, data)
    if epochs is not None:
        base = dataclasses.replace(
            base, optim=dataclasses.replace(base.optim, epochs=epochs)
        )
    runs = {
        "eoid": dataclasses.replace(
            base, cache=str(cache), out=str(out / "runs" / "eoid")
        ),
        "baseline": dataclasses.replace(
            base,
            cache="",
            out=str(out / "runs" / "baseline"),
            loss=dataclasses.replace(base.loss, distill=0.0),
        ),
    }
    require_same_recipe(runs.values())
    # finished runs are kept; a run with a checkpoint resumes, the others start (no
    # --resume warning for a quickstart's new run folders)
    todo = {
        name: dataclasses.replace(
            cfg, resume=(Path(cfg.out) / "checkpoint.pt").is_file()
        )
        for name, cfg in runs.items()
        if not (Path(cfg.out) / "results.json").exists()
    }
    train_runs(list(todo.values()), list(todo), world, parallel)
    summary: dict = {}
    for name, cfg in runs.items():
        run = Path(cfg.out)
        results = json.loads((run / "results.json").read_text())
        summary[name] = {k: results["mAP"][k] for k in ("full", "seen", "unseen")}
        summary[name]["hm"] = harmonic_mean(
            summary[name]["seen"], summary[name]["unseen"]
        )
        run_report(run)
    test_images = sorted(paths.image_dir.glob("test_*.png"))[: 4 if predict else 0]
    if test_images:
        checkpoint = str(out / "runs" / "eoid" / "checkpoint.pt")
        run_predict(
            PredictConfig(
                augment=base.augment,
                checkpoint=checkpoint,
                out=str(out / "predictions"),
                top_k=5,
            ),
            test_images,
            world,
        )
    summary["teacher_zero_shot_accuracy"] = 100.0 * accuracy
    summary["teacher_zero_shot_accuracy_unseen_verbs"] = 100.0 * unseen_accuracy
    summary["seconds"] = round(time.time() - start, 1)
    write_text_atomic(
        out / "summary.json", json.dumps(summary, indent=1), "the summary"
    )
    return format_summary(summary) + f"\nsummary: {out / 'summary.json'}"


def format_summary(summary: dict) -> str:
    """The side-by-side table the quickstart prints."""

    def cell(x):
        return (
            f"{x:8.2f}"
            if isinstance(x, (int, float)) and np.isfinite(x)
            else f"{'-':>8}"
        )

    lines = [f"{'mAP (%)':<22}{'Full':>8}{'Seen':>8}{'Unseen':>8}{'HM':>8}"]
    for name, label in (
        ("eoid", "EoID (distilled)"),
        ("baseline", "baseline (no teacher)"),
    ):
        # a summary.json written before HM was added: computed from its Seen and Unseen
        hm = summary[name].get(
            "hm", harmonic_mean(summary[name]["seen"], summary[name]["unseen"])
        )
        lines.append(
            f"{label:<22}"
            + "".join(cell(summary[name][k]) for k in ("full", "seen", "unseen"))
            + cell(hm)
        )
    lines.append(
        "teacher zero-shot verb accuracy on training pairs: "
        f"{summary['teacher_zero_shot_accuracy']:.1f}% "
        f"(unseen verbs {summary['teacher_zero_shot_accuracy_unseen_verbs']:.1f}%)"
    )
    lines.append(f"time: {summary['seconds']:.0f} s")
    return "\n".join(lines)
