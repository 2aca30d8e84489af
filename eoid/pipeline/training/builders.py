"""From configs and a vocabulary to the student's values: model, criterion, masks, augmentation."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from eoid.config import LossConfig, MatcherConfig, OptimConfig, StudentConfig, from_dict
from eoid.errors import CheckpointError
from eoid.pipeline.data.vocab import Vocabulary, vocabulary_from_json
from eoid.pipeline.training.checkpoint import load_checkpoint
from eoid.student.losses import Criterion, build_criterion, loss_weights
from eoid.student.model import CDN, build_student, load_detr_init


def build_model(cfg: StudentConfig, vocab: Vocabulary, device: str) -> CDN:
    """The student for `vocab`, optionally initialised from a local DETR checkpoint."""
    model = build_student(cfg.preset, vocab.num_objects, vocab.num_verbs, cfg.num_queries,
                          cfg.is_head, cfg.detach, cfg.backbone_weights or None,
                          dropout=cfg.dropout if cfg.dropout >= 0 else None)
    if cfg.detr_init:
        load_detr_init(model, cfg.detr_init, vocab.object_ids, cfg.detr_init_interaction)
    return model.to(device)


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


def model_from_checkpoint(path: Path, device: str) -> tuple[CDN, Vocabulary, dict]:
    """(model in eval mode, its vocabulary, its resolved config dict) from an eoid checkpoint."""
    ckpt = load_checkpoint(path)
    vocab = vocabulary_from_json(ckpt["vocabulary"], f"{path} (vocabulary)")
    student = from_dict(StudentConfig, ckpt["config"].get("student", {}), f"{path} [student]")
    model = build_model(dataclasses.replace(student, detr_init="", backbone_weights=""), vocab, device)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the {student.preset!r} student it names "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}). The file is "
                              "damaged or was edited; use the run's checkpoint.pt.")
    model.eval()
    return model, vocab, ckpt["config"]
