"""From configs and a vocabulary to the student's values: model, criterion, masks, augmentation."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from eoid.checkpoint import load_checkpoint, require_fits
from eoid.config import LossConfig, MatcherConfig, OptimConfig, StudentConfig, from_dict, to_dict
from eoid.errors import CheckpointError, ConfigError
from eoid.pipeline.data.vocab import Vocabulary, vocabulary_from_json
from eoid.student.losses import Criterion, build_criterion, loss_weights
from eoid.student.model import CDN, build_student, load_detr_init

log = logging.getLogger(__name__)


def build_model(cfg: StudentConfig, vocab: Vocabulary, device: str) -> CDN:
    """The student for `vocab`, optionally initialised from a local DETR or eoid checkpoint."""
    if cfg.detr_init and cfg.init_from:
        raise ConfigError(f"student.detr_init ({cfg.detr_init}) and student.init_from ({cfg.init_from}) "
                          "both initialise the student; keep one of them.")
    model = build_student(cfg.preset, vocab.num_objects, vocab.num_verbs, cfg.num_queries,
                          cfg.is_head, cfg.detach, cfg.backbone_weights or None,
                          dropout=cfg.dropout if cfg.dropout >= 0 else None)
    if cfg.detr_init:
        load_detr_init(model, cfg.detr_init, vocab.object_ids, cfg.detr_init_interaction)
    if cfg.init_from:
        left = load_init_from(model, Path(cfg.init_from), vocab, cfg)
        log.info("student.init_from %s: loaded; left at their fresh init: %s", cfg.init_from,
                 ", ".join(left) or "none")
    return model.to(device)


def load_init_from(model: CDN, path: Path, vocab: Vocabulary, cfg: StudentConfig) -> list[str]:
    """Copy the weights of eoid checkpoint `path` into `model`; returns the keys left at their init.

    The checkpoint must have this run's vocabulary, preset and number of queries; the IS head
    may differ (an imported CDN checkpoint has none: this run's keeps its fresh init).
    """
    ckpt = load_checkpoint(path)
    require_fits(ckpt, path, vocab.to_json(), to_dict(cfg), fields=("preset", "num_queries"))
    own = model.state_dict()
    theirs = {k: v for k, v in ckpt["model"].items() if not k.startswith("is_embed.")
              or cfg.is_head == (ckpt["config"].get("student") or {}).get("is_head")}
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in theirs.items()
             if k in own and v.shape != own[k].shape]
    if wrong or theirs.keys() - own.keys():
        raise CheckpointError(f"{path}: its weights do not fit this student (student.init_from): "
                              f"shapes {wrong[:3]}, unknown keys {sorted(theirs.keys() - own.keys())[:3]}. "
                              "Start from a checkpoint of the same preset.")
    model.load_state_dict(theirs, strict=False)
    return sorted(own.keys() - theirs.keys())


def unseen_verb_mask(vocab: Vocabulary, setting: str) -> torch.Tensor:
    """(V,) bool: verbs with no seen HOI under `setting`."""
    mask = torch.zeros(vocab.num_verbs, dtype=torch.bool)
    mask[vocab.unseen_verbs(setting)] = True
    return mask


def build_loss(matcher: MatcherConfig, loss: LossConfig, vocab: Vocabulary, setting: str
               ) -> tuple[Criterion, dict[str, float]]:
    """The criterion (matching + loss values) and the weight of each loss term."""
    return (build_criterion(matcher, loss, vocab.num_verbs, unseen_verb_mask(vocab, setting),
                            vocab.no_interaction), loss_weights(loss))


def build_optimizer(model: torch.nn.Module, optim: OptimConfig
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    """AdamW with the backbone at its own learning rate, and the step decay at optim.lr_drop (DETR's)."""
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone") and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": rest, "lr": optim.lr},
                                   {"params": backbone, "lr": optim.lr_backbone}],
                                  weight_decay=optim.weight_decay)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, optim.lr_drop, gamma=0.1)


def apply_optim_config(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.StepLR,
                       optim: OptimConfig) -> None:
    """Give a resumed optimizer and schedule the rates, decay and drop epoch of `optim` (as if they
    had been there from the start: the step decays already passed apply to the new rates too)."""
    scheduler.step_size = optim.lr_drop
    scheduler.base_lrs = [optim.lr, optim.lr_backbone]
    decay = scheduler.gamma ** (scheduler.last_epoch // optim.lr_drop)
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
        group.update(initial_lr=base, lr=base * decay, weight_decay=optim.weight_decay)


def model_from_checkpoint(path: Path, device: str) -> tuple[CDN, Vocabulary, dict]:
    """(model in eval mode, its vocabulary, its resolved config dict) from an eoid checkpoint."""
    ckpt = load_checkpoint(path)
    vocab = vocabulary_from_json(ckpt["vocabulary"], f"{path} (vocabulary)")
    student = from_dict(StudentConfig, ckpt["config"].get("student", {}), f"{path} [student]")
    model = build_model(dataclasses.replace(student, detr_init="", backbone_weights="", init_from=""),
                        vocab, device)
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as err:   # a tensor of another shape
        raise CheckpointError(f"{path}: weights do not fit the {student.preset!r} student it names "
                              f"({str(err).splitlines()[-1].strip()[:200]}). The file is damaged or was "
                              "edited; use the run's checkpoint.pt.") from None
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the {student.preset!r} student it names "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}). The file is "
                              "damaged or was edited; use the run's checkpoint.pt.")
    model.eval()
    return model, vocab, ckpt["config"]
