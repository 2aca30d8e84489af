"""From configs and a vocabulary to training's values: criterion, loss weights, masks,
optimizer.

The student itself is built by eoid/pipeline/data/student_models.py (evaluation builds
it too).
"""

from __future__ import annotations

import torch

from eoid.config import LossConfig, MatcherConfig, OptimConfig
from eoid.pipeline.data.vocab import Vocabulary
from eoid.student.loss_terms import loss_weights
from eoid.student.losses import Criterion, build_criterion


def unseen_verb_mask(vocab: Vocabulary, setting: str) -> torch.Tensor:
    """(V,) bool: verbs with no seen HOI under `setting`."""
    mask = torch.zeros(vocab.num_verbs, dtype=torch.bool)
    mask[vocab.unseen_verbs(setting)] = True
    return mask


def build_loss(
    matcher: MatcherConfig, loss: LossConfig, vocab: Vocabulary, setting: str
) -> tuple[Criterion, dict[str, float]]:
    """The criterion (matching + loss values) and the weight of each loss term."""
    return (
        build_criterion(
            matcher,
            loss,
            vocab.num_verbs,
            unseen_verb_mask(vocab, setting),
            vocab.no_interaction,
        ),
        loss_weights(loss),
    )


def build_optimizer(
    model: torch.nn.Module, optim: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    """AdamW with the backbone at its own learning rate, and the step decay at
    optim.lr_drop (DETR's).
    """
    backbone = [
        p
        for n, p in model.named_parameters()
        if n.startswith("backbone") and p.requires_grad
    ]
    rest = [
        p
        for n, p in model.named_parameters()
        if not n.startswith("backbone") and p.requires_grad
    ]
    optimizer = torch.optim.AdamW(
        [
            {"params": rest, "lr": optim.lr},
            {"params": backbone, "lr": optim.lr_backbone},
        ],
        weight_decay=optim.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.StepLR(
        optimizer, optim.lr_drop, gamma=0.1
    )


def apply_optim_config(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.StepLR,
    optim: OptimConfig,
) -> None:
    """Give a resumed optimizer and schedule the rates, decay and drop epoch of
    `optim` (as if they had been there from the start: the step decays already passed
    apply to the new rates too)."""
    scheduler.step_size = optim.lr_drop
    scheduler.base_lrs = [optim.lr, optim.lr_backbone]
    decay = scheduler.gamma ** (scheduler.last_epoch // optim.lr_drop)
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
        group.update(initial_lr=base, lr=base * decay, weight_decay=optim.weight_decay)
