"""Phase 2: `eoid train` — the CDN student against the teacher cache (or the online
teacher).

Launch on several GPUs with `torchrun --nproc_per_node=N -m eoid train ...`; each rank
takes a contiguous slice of every global batch, so N processes x B images equal 1
process x N*B images. Reads like DETR's main.py: build everything, then per epoch
`train_one_epoch`, validation and a checkpoint; at the end the selected checkpoint is
scored on the test set once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

from eoid.checkpoint import load_state, save_checkpoint
from eoid.config import TrainConfig, to_dict
from eoid.devices import World
from eoid.errors import ConfigError, Interrupted
from eoid.files import output_folder
from eoid.loaders import WorkerLoader
from eoid.locks import FolderLock
from eoid.pipeline.data.student_models import build_model
from eoid.pipeline.data.transforms import augment_params
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.pipeline.evaluation.scoring import evaluate_model_on_records
from eoid.pipeline.evaluation.training_results import finish, percent
from eoid.pipeline.training.builders import (
    apply_optim_config,
    build_loss,
    build_optimizer,
)
from eoid.pipeline.training.dataset import TrainDataset, collate
from eoid.pipeline.training.distributed import barrier
from eoid.pipeline.training.loop import (
    EpochData,
    GlobalBatchSampler,
    Optimization,
    RunContext,
    StudentAndLoss,
    TrainState,
    train_one_epoch,
)
from eoid.pipeline.training.memory import (
    OutOfMemory,
    is_out_of_memory,
    out_of_memory_message,
    require_memory,
)
from eoid.pipeline.training.metrics import (
    MetricsLog,
    tensorboard_available,
    truncate_metrics,
)
from eoid.pipeline.training.resume import (
    batches_done,
    finished_run,
    resume_point,
    start_run_folder,
)
from eoid.pipeline.training.step_out_of_memory import step_out_of_memory
from eoid.pipeline.training.teacher_source import open_teacher_for_training
from eoid.pipeline.training.training_set import TrainingSet, prepare_training_set
from eoid.stop import StopFlag

log = logging.getLogger(__name__)
# files only train writes: a run folder made before folders carried their owner
# (eoid.files)
RUN_SIGNS = ("checkpoint.pt", "metrics.jsonl")


def run_train(
    cfg: TrainConfig, world: World, on_row: Callable[[dict], None] | None = None
) -> Path:
    """Train the student; returns the run folder (checkpoints, metrics.jsonl,
    results.json).

    `on_row`: also receives every metrics row (and a first row with "iterations_total"),
    and the progress bars stay off: a parent process draws the progress of several runs
    (the quickstart).
    """
    if not cfg.out:
        raise ConfigError("no run folder given: pass --out runs/NAME.")
    if cfg.student.is_head == "none":
        raise ConfigError(
            "student.is_head = 'none' has no interactive-score head, which EoID's "
            "matching and loss train; use 'interaction' (with student.init_from = an "
            "imported CDN checkpoint, that head starts fresh and the rest from CDN)."
        )
    finished = finished_run(cfg, Path(cfg.out))
    if finished is not None:
        log.info(
            "%s is finished (epoch %d of %d, iteration %d): nothing to train, no file"
            " changed.",
            cfg.out,
            finished["epoch"],
            cfg.optim.epochs,
            finished["iteration"],
        )
        return Path(cfg.out)
    require_memory(cfg, world.device)  # before the run folder is created
    inputs = [p for p in (cfg.cache, cfg.data.train_images) if p]
    out = output_folder(
        Path(cfg.out), "the run folder", inputs=inputs, owner="train", signs=RUN_SIGNS
    )
    lock = (
        FolderLock(out / ".lock", break_lock=cfg.break_lock)
        if world.is_main
        else nullcontext()
    )
    with lock:
        try:
            return _train(cfg, world, out, on_row)
        # out of memory outside a training step (validation, test, ...)
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
            kept = (
                f"The last checkpoint {out / 'checkpoint.pt'}, if any, is kept; rerun"
                " with --resume."
            )
            raise OutOfMemory(
                out_of_memory_message(cfg, world.device, "", None, kept)
            ) from None


def _train(
    cfg: TrainConfig, world: World, out: Path, on_row: Callable[[dict], None] | None
) -> Path:
    vocab = load_vocabulary(cfg.data.dataset)
    data = prepare_training_set(cfg.data, vocab, seed=cfg.optim.seed)
    if not data.records:
        raise ConfigError(
            f"{cfg.data.train_annotations}: no training images left; check the file "
            "and the zero-shot setting."
        )
    log.info(
        "training on %d images (data.fraction = %s)",
        len(data.records),
        cfg.data.fraction,
    )
    teacher, online = open_teacher_for_training(cfg, vocab, world, data.records)
    last = out / "checkpoint.pt"
    ckpt, changes = resume_point(cfg, out, vocab)
    start_run_folder(cfg, out, data, world, ckpt, changes)

    torch.manual_seed(cfg.optim.seed)  # same initial weights on every rank
    model = build_model(cfg.student, vocab, world.device)
    criterion, weights = build_loss(cfg.matcher, cfg.loss, vocab, cfg.data.setting)
    criterion = dataclasses.replace(
        criterion, distill_verb_mask=criterion.distill_verb_mask.to(world.device)
    )
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    start_epoch, state, best = 0, TrainState(), {"score": -1.0, "epoch": -1}
    skip_batches = 0
    if ckpt is not None:
        load_state(model, ckpt["model"], last, "model weights")
        load_state(optimizer, ckpt.get("optimizer"), last, "optimizer state")
        load_state(scheduler, ckpt.get("scheduler"), last, "learning-rate schedule")
        # changed rates, decay or schedule apply from here on, over the loaded state
        if changes:
            apply_optim_config(optimizer, scheduler, cfg.optim)
        start_epoch, state.iteration = ckpt["epoch"], ckpt["iteration"]
        extra = ckpt.get("extra") or {}
        best = extra.get("best", best)
        skip_batches = batches_done(ckpt, cfg.optim.batch_size)
        state.rng_state = extra.get("torch_rng") if world.is_main else None
        log.info(
            "resuming %s at epoch %d (iteration %d)", out, start_epoch, state.iteration
        )
    # also a fresh start: drop rows of a run killed before its first checkpoint
    if world.is_main:
        truncate_metrics(out / "metrics.jsonl", state.iteration, start_epoch)
    ddp = model
    if world.distributed:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[world.local_rank] if world.device.startswith("cuda") else None,
            find_unused_parameters=True,
        )

    dataset = TrainDataset(
        data.records,
        vocab.num_verbs,
        vocab.human,
        vocab.no_interaction,
        augment_params(cfg.augment),
        cfg.data.unknown_pairs,
        teacher,
        cfg.optim.seed,
        data.annotated_pairs,
        train=True,
    )
    sampler = GlobalBatchSampler(
        len(dataset), cfg.optim.batch_size, world, cfg.optim.seed
    )
    loader = WorkerLoader(
        dataset,
        stop_signals_to_main=True,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.optim.num_workers,
        pin_memory=world.device.startswith("cuda"),
        persistent_workers=False,
    )
    metrics = (
        MetricsLog(
            out / "metrics.jsonl",
            out / "tensorboard" if tensorboard_available() else None,
            state.iteration,
        )
        if world.is_main
        else None
    )
    log_row = _row_sinks(metrics, on_row)
    if on_row is not None:
        total = cfg.optim.epochs * len(sampler)
        on_row(
            {
                "iterations_total": min(total, cfg.optim.max_iters or total),
                "iteration": state.iteration,
            }
        )
    student = StudentAndLoss(ddp, criterion, weights)
    optimization = Optimization(optimizer, cfg.optim)
    epoch_data = EpochData(loader, online)
    with StopFlag() as stop, loader:
        run = RunContext(world, stop, last, log_row, show_bar=on_row is None)
        for epoch in range(start_epoch, cfg.optim.epochs):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, skip_batches if epoch == start_epoch else 0)
            state.batch_in_epoch = sampler.skip
            # dropout, resumable
            torch.manual_seed(cfg.optim.seed * 1000 + epoch * 17 + world.rank)
            ddp.train()
            train_one_epoch(student, optimization, epoch_data, run, epoch, state)
            # a stop (or a step out of memory) mid-epoch saves the position in the
            # epoch: --resume redoes nothing and skips nothing
            halted = stop.requested or state.out_of_memory is not None
            mid_epoch = halted and state.batch_in_epoch < len(sampler)
            if not mid_epoch:
                scheduler.step()
            if world.is_main and not (state.out_of_memory and state.iteration == 0):
                if (
                    not mid_epoch
                    and data.val_records
                    and (
                        (epoch + 1) % cfg.optim.eval_every == 0
                        or epoch + 1 == cfg.optim.epochs
                    )
                ):
                    best = _validate(
                        cfg, model, vocab, data, epoch, best, out, log_row, world
                    )
                position = (
                    {
                        "batches_done": state.batch_in_epoch,
                        "torch_rng": torch.get_rng_state(),
                    }
                    if mid_epoch
                    else {}
                )
                save_checkpoint(
                    last,
                    model=model.state_dict(),
                    config=to_dict(cfg),
                    vocabulary=vocab.to_json(),
                    epoch=epoch + (0 if mid_epoch else 1),
                    iteration=state.iteration,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    extra={"best": best, "train_images": len(data.records), **position},
                )
            barrier(world)
            if state.out_of_memory is not None:
                raise OutOfMemory(
                    step_out_of_memory(cfg, world, out, state, epoch, len(sampler))
                )
            if stop.requested:
                where = (
                    f"epoch {epoch + 1}, batch {state.batch_in_epoch}/{len(sampler)}"
                    if mid_epoch
                    else f"epoch {epoch + 1}"
                )
                raise Interrupted(
                    f"stopped by {stop.raised} after {where} (iteration"
                    f" {state.iteration}); the run is saved in {last}",
                    "Resume with the same command and --resume.",
                    stop.raised,
                )
            if cfg.optim.max_iters and state.iteration >= cfg.optim.max_iters:
                break
    if metrics is not None:
        metrics.close()
    if world.is_main:
        finish(cfg, out, world, len(data.records), progress=on_row is None)
    return out


def _row_sinks(
    metrics: MetricsLog | None, on_row: Callable[[dict], None] | None
) -> Callable[[dict], None] | None:
    """One callable that hands a metrics row to metrics.jsonl (rank 0) and to `on_row`."""
    sinks = [
        f
        for f in (metrics.write if metrics is not None else None, on_row)
        if f is not None
    ]
    if not sinks:
        return None

    def write(row: dict) -> None:
        for sink in sinks:
            sink(row)

    return write


def _validate(
    cfg: TrainConfig,
    model: torch.nn.Module,
    vocab: Vocabulary,
    data: TrainingSet,
    epoch: int,
    best: dict,
    out: Path,
    log_row: Callable[[dict], None] | None,
    world: World,
) -> dict:
    """Full mAP on the validation split (seen labels of training images); keeps the best
    checkpoint.
    """
    result = evaluate_model_on_records(
        model,
        data.val_records,
        vocab,
        cfg.augment,
        cfg.post,
        world.device,
        setting="",
        batch_size=cfg.optim.batch_size,
    )
    score = result["mAP"]["full"]
    if log_row is not None:
        log_row({"epoch": epoch, "val_map_full": score, "time": time.time()})
    if score > best["score"]:
        best = {"score": score, "epoch": epoch + 1}
        save_checkpoint(
            out / "checkpoint_best.pt",
            model=model.state_dict(),
            config=to_dict(cfg),
            vocabulary=vocab.to_json(),
            epoch=epoch + 1,
            iteration=0,
            extra={"best": best, "train_images": len(data.records)},
        )
    log.info(
        "epoch %d/%d: validation mAP (Full) %s %%, best %s %% at epoch %d",
        epoch + 1,
        cfg.optim.epochs,
        percent(score),
        percent(best["score"]),
        best["epoch"],
    )
    return best
