"""Phase 2: `eoid train` — the CDN student against the teacher cache (or the online teacher).

Launch on several GPUs with `torchrun --nproc_per_node=N -m eoid train ...`; each rank takes a
contiguous slice of every global batch, so N processes x B images equal 1 process x N*B images.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eoid.config import TrainConfig, dumps_toml, to_dict
from eoid.errors import ConfigError, Interrupted, TrainingDiverged
from eoid.pipeline.training.checkpoint import load_checkpoint, require_fits, save_checkpoint
from eoid.pipeline.training.distributed import World, average_over_ranks, barrier
from eoid.pipeline.training.builders import augment_params, build_loss, build_model
from eoid.pipeline.training.teacher_source import open_teacher_for_training
from eoid.pipeline.training.dataset import TrainDataset, collate
from eoid.pipeline.training.training_set import prepare_training_set
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.student.losses import weighted_sum
from eoid.teacher_cache.lock import FolderLock

log = logging.getLogger(__name__)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This rank's share of each global batch; the order depends on (seed, epoch) only."""

    def __init__(self, num_items: int, batch_size: int, world: World, seed: int):
        self.num_items, self.batch_size, self.world, self.seed = num_items, batch_size, world, seed
        self.epoch = 0
        self.skip = 0   # batches of this epoch already trained (resume after a mid-epoch stop)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def global_batches(self) -> int:
        return math.ceil(self.num_items / (self.batch_size * self.world.world_size))

    def __len__(self) -> int:
        return self.global_batches()

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        per_global = self.batch_size * self.world.world_size
        order = np.resize(order, self.global_batches() * per_global)  # wrap to fill the last batch
        for k in range(self.skip, self.global_batches()):
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
        if self.raised:  # a second Ctrl-C: stop now, the last checkpoint stays as it is
            raise KeyboardInterrupt
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _workers_ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops at a safe point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
        if data.num_problems:
            (out / "bad_records.json").write_text(json.dumps(data.bad_report, indent=1))
            log.warning("skipped %d bad record(s) (%d problem(s)); listed in %s", data.num_skipped,
                        data.num_problems, out / "bad_records.json")

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
    skip_batches, rng_state = 0, None
    if cfg.resume and last.exists():
        ckpt = load_checkpoint(last)
        require_fits(ckpt, last, vocab.to_json(), to_dict(cfg.student))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, iteration = ckpt["epoch"], ckpt["iteration"]
        best = ckpt["extra"].get("best", best)
        skip_batches = int(ckpt["extra"].get("batches_done", 0))
        rng_state = ckpt["extra"].get("torch_rng") if world.is_main else None
        log.info("resuming %s at epoch %d (iteration %d)", out, start_epoch, iteration)
    if world.is_main:  # also a fresh start: drop rows of a run killed before its first checkpoint
        _truncate_metrics(out / "metrics.jsonl", iteration, start_epoch)
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
                                         worker_init_fn=_workers_ignore_stop_signals)
    use_amp = cfg.optim.amp and world.device.startswith("cuda")
    metrics = open(out / "metrics.jsonl", "a") if world.is_main else None
    with StopFlag() as stop:
        for epoch in range(start_epoch, cfg.optim.epochs):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, skip_batches if epoch == start_epoch else 0)
            batch_in_epoch = sampler.skip
            torch.manual_seed(cfg.optim.seed * 1000 + epoch * 17 + world.rank)  # dropout, resumable
            ddp.train()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=not world.is_main,
                       leave=False, dynamic_ncols=True)
            for images, masks, targets, metas in bar:
                if cfg.optim.max_iters and iteration >= cfg.optim.max_iters:
                    break
                if rng_state is not None:  # dropout continues where a mid-epoch stop left it
                    torch.set_rng_state(rng_state)
                    rng_state = None
                images, masks = images.to(world.device), masks.to(world.device)
                targets = [t.to(world.device) for t in targets]
                if online is not None:
                    targets = online.fill(targets, metas)
                with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
                    outputs = ddp(images, masks)
                outputs = _float32(outputs)
                if _nonfinite_fields(outputs):  # checked before matching: scipy refuses NaN costs
                    raise TrainingDiverged(_diverged(f"model outputs {_nonfinite_fields(outputs)}", epoch,
                                                     iteration, metas, last))
                # every loss count averaged over ranks: N processes x B images = 1 x N*B images
                terms, stats = criterion(outputs, targets,
                                         average_counts=lambda c: average_over_ranks(c, world))
                total = weighted_sum(terms, weights)
                if not torch.isfinite(total):
                    bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                    raise TrainingDiverged(_diverged(f"loss (terms {bad})", epoch, iteration, metas, last))
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if cfg.optim.clip_max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_max_norm)
                optimizer.step()
                iteration += 1
                batch_in_epoch += 1
                # the logged numbers are means over ranks (sums for the counters)
                logged = average_over_ranks({"loss": float(total.detach()),
                                             **{k: float(v.detach()) for k, v in terms.items()},
                                             **{k: float(v) for k, v in stats.items()},
                                             "teacher_misses": sum(m.teacher_misses for m in metas),
                                             "candidate_pairs": sum(m.num_pairs for m in metas)}, world)
                if metrics is not None:
                    row = {"iteration": iteration, "epoch": epoch, **logged,
                           "teacher_miss_rate": logged["teacher_misses"] / max(logged["candidate_pairs"], 1),
                           "lr": optimizer.param_groups[0]["lr"], "time": time.time()}
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                bar.set_postfix(loss=f"{float(total.detach()):.3f}")
                if average_over_ranks({"stop": float(bool(stop.raised))}, world)["stop"] > 0:
                    break  # every rank stops after the same batch
            # a stop mid-epoch saves the position in the epoch: --resume redoes nothing and skips nothing
            mid_epoch = bool(stop.raised) and batch_in_epoch < len(sampler)
            if not mid_epoch:
                scheduler.step()
            if world.is_main:
                if not mid_epoch and cfg.data.val_images and ((epoch + 1) % cfg.optim.eval_every == 0
                                                              or epoch + 1 == cfg.optim.epochs):
                    best = _validate(cfg, model, vocab, data.val_records, epoch, best, out, metrics, world)
                position = {"batches_done": batch_in_epoch, "torch_rng": torch.get_rng_state()} \
                    if mid_epoch else {}
                save_checkpoint(last, model=model.state_dict(), config=to_dict(cfg),
                                vocabulary=vocab.to_json(), epoch=epoch + (0 if mid_epoch else 1),
                                iteration=iteration, optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), extra={"best": best, **position})
            barrier(world)
            if stop.raised:
                where = f"epoch {epoch + 1}, batch {batch_in_epoch}/{len(sampler)}" if mid_epoch \
                    else f"epoch {epoch + 1}"
                raise Interrupted(f"stopped by {stop.raised} after {where} (iteration {iteration}); "
                                  f"progress saved in {last}. Resume with the same command and --resume.")
            if cfg.optim.max_iters and iteration >= cfg.optim.max_iters:
                break
    if metrics is not None:
        metrics.close()
    if world.is_main:
        _finish(cfg, out, vocab)
    return out


def _truncate_metrics(path: Path, iteration: int, epoch: int) -> None:
    """Drop the rows a killed run wrote after its last checkpoint (they are about to be redone)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        # training rows up to the checkpoint's iteration (it may stop mid-epoch); validation rows
        # of the epochs it completed
        if (row["iteration"] <= iteration) if "iteration" in row else row.get("epoch", 0) < epoch:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)


def _nonfinite_fields(outputs) -> list[str]:
    """Names of the model outputs holding a NaN or an infinity (auxiliary layers included)."""
    bad = []
    for name, value in zip(outputs._fields, outputs):
        tensors = [value] if torch.is_tensor(value) else [t for aux in value for t in aux if torch.is_tensor(t)]
        if any(not bool(torch.isfinite(t).all()) for t in tensors):
            bad.append(name)
    return bad


def _diverged(what: str, epoch: int, iteration: int, metas, last: Path) -> str:
    return (f"{what} became non-finite at epoch {epoch + 1}, iteration {iteration} on images "
            f"{[m.key for m in metas]}. The last good checkpoint {last} is kept; lower optim.lr or "
            "check those images, then --resume.")


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
