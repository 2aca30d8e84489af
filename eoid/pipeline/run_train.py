"""Phase 2: `eoid train` — the CDN student against the teacher cache (or the online teacher).

Launch on several GPUs with `torchrun --nproc_per_node=N -m eoid train ...`; each rank takes a
contiguous slice of every global batch, so N processes x B images equal 1 process x N*B images.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eoid.config import TrainConfig, dumps_toml, to_dict
from eoid.errors import ConfigError, Interrupted, TrainingDiverged
from eoid.pipeline.checkpoint import load_checkpoint, save_checkpoint
from eoid.pipeline.distributed import World, all_reduce_sum, barrier
from eoid.pipeline.student_setup import augment_params, build_loss, build_model
from eoid.pipeline.teacher_setup import open_teacher_for_training
from eoid.pipeline.train_data import TrainDataset, collate
from eoid.pipeline.training_set import prepare_training_set
from eoid.pipeline.vocab import load_vocabulary
from eoid.student.losses import count_pairs, weighted_sum
from eoid.teacher_cache.lock import FolderLock

log = logging.getLogger(__name__)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This rank's share of each global batch; the order depends on (seed, epoch) only."""

    def __init__(self, num_items: int, batch_size: int, world: World, seed: int):
        self.num_items, self.batch_size, self.world, self.seed = num_items, batch_size, world, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> int:
        return math.ceil(self.num_items / (self.batch_size * self.world.world_size))

    def __len__(self) -> int:
        return self.global_batches()

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        per_global = self.batch_size * self.world.world_size
        order = np.resize(order, self.global_batches() * per_global)  # wrap to fill the last batch
        for k in range(self.global_batches()):
            start = k * per_global + self.world.rank * self.batch_size
            yield order[start: start + self.batch_size].tolist()


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop stops at the next safe point and saves."""

    def __init__(self):
        self.raised: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_train(cfg: TrainConfig, world: World) -> Path:
    """Train the student; returns the run folder (checkpoints, metrics.jsonl, results.json)."""
    if not cfg.out:
        raise ConfigError("no run folder given: pass --out runs/NAME.")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out / ".lock", break_lock=cfg.break_lock) if world.is_main else nullcontext()
    with lock:
        return _train(cfg, world, out)


def _train(cfg: TrainConfig, world: World, out: Path) -> Path:
    vocab = load_vocabulary(cfg.data.dataset)
    data = prepare_training_set(cfg.data, vocab)
    if not data.records:
        raise ConfigError(f"{cfg.data.train_annotations}: no training images left; check the file "
                          "and the zero-shot setting.")
    teacher, online = open_teacher_for_training(cfg, vocab, world, data.records)
    last = out / "checkpoint.pt"
    if last.exists() and not cfg.resume:
        raise ConfigError(f"{out} already holds a run (checkpoint.pt). Pass --resume to continue it, "
                          "or choose another --out.")
    if world.is_main:
        (out / "config.toml").write_text(dumps_toml(cfg))
        if data.num_bad:
            (out / "bad_records.json").write_text(json.dumps(data.bad_report, indent=1))

    torch.manual_seed(cfg.optim.seed)  # same initial weights on every rank
    model = build_model(cfg.student, vocab, world.device)
    criterion, weights = build_loss(cfg.matcher, cfg.loss, vocab, cfg.data.setting)
    criterion = dataclasses.replace(criterion,
                                    distill_verb_mask=criterion.distill_verb_mask.to(world.device))
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone") and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": rest, "lr": cfg.optim.lr},
                                   {"params": backbone, "lr": cfg.optim.lr_backbone}],
                                  weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.optim.lr_drop, gamma=0.1)
    start_epoch, iteration, best = 0, 0, {"score": -1.0, "epoch": -1}
    if cfg.resume and last.exists():
        ckpt = load_checkpoint(last)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, iteration = ckpt["epoch"], ckpt["iteration"]
        best = ckpt["extra"].get("best", best)
        log.info("resuming %s at epoch %d (iteration %d)", out, start_epoch, iteration)
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
                                         persistent_workers=False)
    use_amp = cfg.optim.amp and world.device.startswith("cuda")
    metrics = open(out / "metrics.jsonl", "a") if world.is_main else None
    with StopFlag() as stop:
        for epoch in range(start_epoch, cfg.optim.epochs):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            torch.manual_seed(cfg.optim.seed * 1000 + epoch * 17 + world.rank)  # dropout, resumable
            ddp.train()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=not world.is_main,
                       leave=False, dynamic_ncols=True)
            for images, masks, targets, metas in bar:
                if cfg.optim.max_iters and iteration >= cfg.optim.max_iters:
                    break
                images, masks = images.to(world.device), masks.to(world.device)
                targets = [t.to(world.device) for t in targets]
                if online is not None:
                    targets = online.fill(targets, metas)
                with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
                    outputs = ddp(images, masks)
                outputs = _float32(outputs)
                matches = criterion.match(outputs, targets)
                # matched pairs per rank, averaged over ranks (DETR's normaliser; DDP then averages)
                num_pairs = all_reduce_sum(count_pairs(matches), world) / world.world_size
                terms, stats = criterion(outputs, targets, matches, num_pairs_global=max(num_pairs, 1.0))
                total = weighted_sum(terms, weights)
                if not torch.isfinite(total):
                    bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                    raise TrainingDiverged(
                        f"loss became non-finite at epoch {epoch + 1}, iteration {iteration} "
                        f"(terms {bad}) on images {[m.key for m in metas]}. The last good checkpoint "
                        f"{last} is kept; lower optim.lr or check those images, then --resume.")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if cfg.optim.clip_max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_max_norm)
                optimizer.step()
                iteration += 1
                misses = sum(m.teacher_misses for m in metas)
                pairs = sum(m.num_pairs for m in metas)
                if metrics is not None:
                    row = {"iteration": iteration, "epoch": epoch, "loss": float(total.detach()),
                           **{k: float(v.detach()) for k, v in terms.items()},
                           **{k: float(v) for k, v in stats.items()},
                           "teacher_miss_rate": misses / max(pairs, 1),
                           "lr": optimizer.param_groups[0]["lr"], "time": time.time()}
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                bar.set_postfix(loss=f"{float(total.detach()):.3f}")
                if stop.raised:
                    break
            scheduler.step()
            finished_epoch = not stop.raised and not (cfg.optim.max_iters and iteration >= cfg.optim.max_iters
                                                      and epoch + 1 < cfg.optim.epochs)
            if world.is_main:
                if cfg.data.val_images and ((epoch + 1) % cfg.optim.eval_every == 0
                                            or epoch + 1 == cfg.optim.epochs):
                    best = _validate(cfg, model, vocab, data.val_records, epoch, best, out, metrics, world)
                save_checkpoint(last, model=model.state_dict(), config=to_dict(cfg),
                                vocabulary=vocab.to_json(), epoch=epoch + 1, iteration=iteration,
                                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                extra={"best": best})
            barrier(world)
            if stop.raised:
                raise Interrupted(f"stopped by {stop.raised} after epoch {epoch + 1}; progress saved in "
                                  f"{last}. Resume with the same command and --resume.")
            if cfg.optim.max_iters and iteration >= cfg.optim.max_iters:
                break
    if metrics is not None:
        metrics.close()
    if world.is_main:
        _finish(cfg, out, vocab)
    return out


def _float32(outputs):
    """Model outputs in float32 for matching and losses (autocast may give bf16)."""
    return type(outputs)(*(o.float() if torch.is_tensor(o) else tuple(_float32(a) for a in o)
                           for o in outputs))


def _validate(cfg, model, vocab, val_records, epoch, best, out, metrics, world):
    """Full mAP on the validation split (seen labels of training images); keeps the best checkpoint."""
    from eoid.pipeline.run_evaluate import evaluate_model_on_records
    result = evaluate_model_on_records(model, val_records, vocab, cfg.augment, cfg.post, world.device,
                                       setting="", batch_size=cfg.optim.batch_size)
    score = result["mAP"]["full"]
    if metrics is not None:
        metrics.write(json.dumps({"epoch": epoch, "val_map_full": score, "time": time.time()}) + "\n")
        metrics.flush()
    if score > best["score"]:
        best = {"score": score, "epoch": epoch + 1}
        save_checkpoint(out / "checkpoint_best.pt", model=model.state_dict(), config=to_dict(cfg),
                        vocabulary=vocab.to_json(), epoch=epoch + 1, iteration=0, extra={"best": best})
    return best


def _finish(cfg: TrainConfig, out: Path, vocab) -> None:
    """Evaluate the selected checkpoint on the test set, once, at the end."""
    if not cfg.data.test_annotations:
        return
    from eoid.pipeline.run_evaluate import evaluate_checkpoint
    chosen = out / "checkpoint_best.pt" if (out / "checkpoint_best.pt").exists() else out / "checkpoint.pt"
    evaluate_checkpoint(chosen, cfg.data, cfg.augment, cfg.post, out, device="cpu"
                        if not torch.cuda.is_available() else "cuda")
