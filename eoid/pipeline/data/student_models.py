"""The student for a vocabulary: built from its config, initialised from DETR or an eoid
checkpoint, or loaded whole from an eoid checkpoint for evaluation, prediction and
export.

It sits in pipeline/data, the lowest floor that may import both student/ and the
vocabulary, so training, evaluation and the runners all build the student the same way
without one room reaching into another.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from eoid.checkpoint import load_checkpoint, require_fits
from eoid.config import StudentConfig, to_dict
from eoid.config_loading import from_dict
from eoid.errors import CheckpointError, ConfigError
from eoid.pipeline.data.vocab import Vocabulary, vocabulary_from_json
from eoid.student.model import CDN, build_student, load_detr_init

log = logging.getLogger(__name__)


def build_model(cfg: StudentConfig, vocab: Vocabulary, device: str) -> CDN:
    """The student for `vocab`, optionally initialised from a local DETR or eoid
    checkpoint.
    """
    if cfg.detr_init and cfg.init_from:
        raise ConfigError(
            f"student.detr_init ({cfg.detr_init}) and student.init_from"
            f" ({cfg.init_from}) both initialise the student; keep one of them."
        )
    model = build_student(
        cfg.preset,
        vocab.num_objects,
        vocab.num_verbs,
        cfg.num_queries,
        cfg.is_head,
        cfg.detach,
        cfg.backbone_weights or None,
        dropout=cfg.dropout if cfg.dropout >= 0 else None,
    )
    if cfg.detr_init:
        load_detr_init(
            model, cfg.detr_init, vocab.object_ids, cfg.detr_init_interaction
        )
    if cfg.init_from:
        left = load_init_from(model, Path(cfg.init_from), vocab, cfg)
        log.info(
            "student.init_from %s: loaded; left at their fresh init: %s",
            cfg.init_from,
            ", ".join(left) or "none",
        )
    return model.to(device)


def load_init_from(
    model: CDN, path: Path, vocab: Vocabulary, cfg: StudentConfig
) -> list[str]:
    """Copy the weights of eoid checkpoint `path` into `model`; returns the keys left at
    their init.

    The checkpoint must have this run's vocabulary, preset and number of queries; the IS
    head may differ (an imported CDN checkpoint has none: this run's keeps its fresh
    init).
    """
    ckpt = load_checkpoint(path)
    require_fits(
        ckpt, path, vocab.to_json(), to_dict(cfg), fields=("preset", "num_queries")
    )
    own = model.state_dict()
    theirs = {
        k: v
        for k, v in ckpt["model"].items()
        if not k.startswith("is_embed.")
        or cfg.is_head == (ckpt["config"].get("student") or {}).get("is_head")
    }
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in theirs.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong or theirs.keys() - own.keys():
        raise CheckpointError(
            f"{path}: its weights do not fit this student (student.init_from): shapes"
            f" {wrong[:3]}, unknown keys {sorted(theirs.keys() - own.keys())[:3]}."
            " Start from a checkpoint of the same preset."
        )
    model.load_state_dict(theirs, strict=False)
    return sorted(own.keys() - theirs.keys())


def model_from_checkpoint(path: Path, device: str) -> tuple[CDN, Vocabulary, dict]:
    """(model in eval mode, its vocabulary, its resolved config dict) from an eoid
    checkpoint.
    """
    ckpt = load_checkpoint(path)
    vocab = vocabulary_from_json(ckpt["vocabulary"], f"{path} (vocabulary)")
    student = from_dict(
        StudentConfig, ckpt["config"].get("student", {}), f"{path} [student]"
    )
    model = build_model(
        dataclasses.replace(student, detr_init="", backbone_weights="", init_from=""),
        vocab,
        device,
    )
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise CheckpointError(
            f"{path}: weights do not fit the {student.preset!r} student it names "
            f"({str(err).splitlines()[-1].strip()[:200]}). The file is damaged or was "
            "edited; use the run's checkpoint.pt."
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the {student.preset!r} student it names "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}). The file is "
            "damaged or was edited; use the run's checkpoint.pt."
        )
    model.eval()
    return model, vocab, ckpt["config"]
