"""Phase 2: `eoid train` — the CDN student against the teacher cache (or the online teacher).

Launch on several GPUs with `torchrun --nproc_per_node=N -m eoid train ...`; each rank takes a
contiguous slice of every global batch, so N processes x B images equal 1 process x N*B images.
Reads like DETR's main.py: build everything, then per epoch `train_one_epoch`, validation and a
checkpoint; at the end the selected checkpoint is scored on the test set once.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from eoid.config import TrainConfig, dumps_toml, to_dict
from eoid.errors import ConfigError, Interrupted
from eoid.files import FolderLock
from eoid.pipeline.data.transforms import augment_params
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.pipeline.evaluation.scoring import evaluate_checkpoint, evaluate_model_on_records
from eoid.pipeline.training.builders import build_loss, build_model, build_optimizer
from eoid.pipeline.training.checkpoint import load_checkpoint, require_fits, save_checkpoint
from eoid.pipeline.training.dataset import TrainDataset, collate
from eoid.pipeline.training.distributed import World, barrier
from eoid.pipeline.training.loop import GlobalBatchSampler, TrainState, train_one_epoch
from eoid.pipeline.training.metrics import MetricsLog, truncate_metrics
from eoid.pipeline.training.stop import StopFlag, workers_ignore_stop_signals
from eoid.pipeline.training.teacher_source import open_teacher_for_training
from eoid.pipeline.training.training_set import TrainingSet, prepare_training_set

log = logging.getLogger(__name__)


def run_train(cfg: TrainConfig, world: World) -> Path:
    """Train the student; returns the run folder (checkpoints, metrics.jsonl, results.json)."""
    if not cfg.out:
        raise ConfigError("no run folder given: pass --out runs/NAME.")
    if cfg.student.is_head == "none":
        raise ConfigError("student.is_head = 'none' has no interactive-score head, which EoID's "
                          "matching and loss train; use 'interaction' (with student.init_from = an "
                          "imported CDN checkpoint, that head starts fresh and the rest from CDN).")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out / ".lock", break_lock=cfg.break_lock) if world.is_main else nullcontext()
    with lock:
        return _train(cfg, world, out)


def _start_run_folder(cfg: TrainConfig, out: Path, data: TrainingSet, world: World) -> None:
    """Refuse a folder that holds another run; write the resolved config and the skipped records."""
    if (out / "checkpoint.pt").exists() and not cfg.resume:
        raise ConfigError(f"{out} already holds a run (checkpoint.pt). Pass --resume to continue it, "
                          "or choose another --out.")
    if world.is_main:
        (out / "config.toml").write_text(dumps_toml(cfg))
        if data.num_problems:
            (out / "bad_records.json").write_text(json.dumps(data.bad_report, indent=1))
            log.warning("skipped %d bad record(s) (%d problem(s)); listed in %s", data.num_skipped,
                        data.num_problems, out / "bad_records.json")


def _train(cfg: TrainConfig, world: World, out: Path) -> Path:
    vocab = load_vocabulary(cfg.data.dataset)
    data = prepare_training_set(cfg.data, vocab)
    if not data.records:
        raise ConfigError(f"{cfg.data.train_annotations}: no training images left; check the file "
                          "and the zero-shot setting.")
    teacher, online = open_teacher_for_training(cfg, vocab, world, data.records)
    last = out / "checkpoint.pt"
    _start_run_folder(cfg, out, data, world)

    torch.manual_seed(cfg.optim.seed)  # same initial weights on every rank
    model = build_model(cfg.student, vocab, world.device)
    criterion, weights = build_loss(cfg.matcher, cfg.loss, vocab, cfg.data.setting)
    criterion = dataclasses.replace(criterion,
                                    distill_verb_mask=criterion.distill_verb_mask.to(world.device))
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    start_epoch, state, best = 0, TrainState(), {"score": -1.0, "epoch": -1}
    skip_batches = 0
    if cfg.resume and last.exists():
        ckpt = load_checkpoint(last)
        require_fits(ckpt, last, vocab.to_json(), to_dict(cfg.student))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, state.iteration = ckpt["epoch"], ckpt["iteration"]
        best = ckpt["extra"].get("best", best)
        skip_batches = int(ckpt["extra"].get("batches_done", 0))
        state.rng_state = ckpt["extra"].get("torch_rng") if world.is_main else None
        log.info("resuming %s at epoch %d (iteration %d)", out, start_epoch, state.iteration)
    if world.is_main:  # also a fresh start: drop rows of a run killed before its first checkpoint
        truncate_metrics(out / "metrics.jsonl", state.iteration, start_epoch)
    ddp = model
    if world.distributed:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.startswith("cuda") else None,
            find_unused_parameters=True)

    dataset = TrainDataset(data.records, vocab.num_verbs, vocab.human, vocab.no_interaction,
                           augment_params(cfg.augment), cfg.data.unknown_pairs, teacher,
                           cfg.optim.seed, data.annotated_pairs, train=True)
    sampler = GlobalBatchSampler(len(dataset), cfg.optim.batch_size, world, cfg.optim.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                         num_workers=cfg.optim.num_workers,
                                         pin_memory=world.device.startswith("cuda"),
                                         persistent_workers=False,
                                         worker_init_fn=workers_ignore_stop_signals)
    metrics = MetricsLog(out / "metrics.jsonl") if world.is_main else None
    with StopFlag() as stop:
        for epoch in range(start_epoch, cfg.optim.epochs):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, skip_batches if epoch == start_epoch else 0)
            state.batch_in_epoch = sampler.skip
            torch.manual_seed(cfg.optim.seed * 1000 + epoch * 17 + world.rank)  # dropout, resumable
            ddp.train()
            train_one_epoch(ddp, criterion, weights, optimizer, loader, world, epoch, cfg.optim, state,
                            stop, last, metrics.write if metrics is not None else None, online)
            # a stop mid-epoch saves the position in the epoch: --resume redoes nothing and skips nothing
            mid_epoch = stop.requested and state.batch_in_epoch < len(sampler)
            if not mid_epoch:
                scheduler.step()
            if world.is_main:
                if not mid_epoch and cfg.data.val_images and ((epoch + 1) % cfg.optim.eval_every == 0
                                                              or epoch + 1 == cfg.optim.epochs):
                    best = _validate(cfg, model, vocab, data, epoch, best, out, metrics, world)
                position = {"batches_done": state.batch_in_epoch, "torch_rng": torch.get_rng_state()} \
                    if mid_epoch else {}
                save_checkpoint(last, model=model.state_dict(), config=to_dict(cfg),
                                vocabulary=vocab.to_json(), epoch=epoch + (0 if mid_epoch else 1),
                                iteration=state.iteration, optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), extra={"best": best, **position})
            barrier(world)
            if stop.requested:
                where = f"epoch {epoch + 1}, batch {state.batch_in_epoch}/{len(sampler)}" if mid_epoch \
                    else f"epoch {epoch + 1}"
                raise Interrupted(f"stopped by {stop.raised} after {where} (iteration {state.iteration}); "
                                  f"progress saved in {last}. Resume with the same command and --resume.")
            if cfg.optim.max_iters and state.iteration >= cfg.optim.max_iters:
                break
    if metrics is not None:
        metrics.close()
    if world.is_main:
        _finish(cfg, out, world)
    return out


def _validate(cfg: TrainConfig, model: torch.nn.Module, vocab: Vocabulary, data: TrainingSet, epoch: int,
              best: dict, out: Path, metrics: MetricsLog | None, world: World) -> dict:
    """Full mAP on the validation split (seen labels of training images); keeps the best checkpoint."""
    result = evaluate_model_on_records(model, data.val_records, vocab, cfg.augment, cfg.post, world.device,
                                       setting="", batch_size=cfg.optim.batch_size)
    score = result["mAP"]["full"]
    if metrics is not None:
        metrics.write({"epoch": epoch, "val_map_full": score, "time": time.time()})
    if score > best["score"]:
        best = {"score": score, "epoch": epoch + 1}
        save_checkpoint(out / "checkpoint_best.pt", model=model.state_dict(), config=to_dict(cfg),
                        vocabulary=vocab.to_json(), epoch=epoch + 1, iteration=0, extra={"best": best})
    return best


def _finish(cfg: TrainConfig, out: Path, world: World) -> None:
    """Evaluate the selected checkpoint on the test set, once, at the end."""
    if not cfg.data.test_annotations:
        return
    chosen = out / "checkpoint_best.pt" if (out / "checkpoint_best.pt").exists() else out / "checkpoint.pt"
    evaluate_checkpoint(chosen, cfg.data, cfg.augment, cfg.post, out, world.device)
