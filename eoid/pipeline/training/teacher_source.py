"""The teacher as phase 2 sees it: a cache reader (default) or the online teacher
(comparison mode).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eoid.config import TrainConfig
from eoid.devices import World
from eoid.errors import ConfigError
from eoid.files import file_sha256
from eoid.pipeline.data.images import load_rgb
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.training.dataset import SampleMeta
from eoid.student.targets import PairTargets
from eoid.teacher_cache.lookup import CacheReader

log = logging.getLogger(__name__)


def open_cache_for_dataset(
    cache: Path, vocab: Vocabulary, annotations: Path, min_iou: float
) -> CacheReader:
    """A cache reader, refused (CacheMismatchError) unless it was built for this
    vocabulary and file.
    """
    reader = CacheReader(cache, min_iou)
    expected = {
        "vocabulary": vocab.fingerprint(),
        "annotations_sha256": file_sha256(annotations),
    }
    reader.require(
        expected,
        fix=(
            f"Build a cache for {annotations} with `eoid cache-teacher`, or pass "
            "the --cache that was built from it."
        ),
        ignore=tuple(k for k in reader.fingerprint if k not in expected),
    )
    return reader


class OnlineTeacher:
    """CLIP inside the training process, as the original code runs it (for comparison).

    One teacher call per iteration over every candidate pair of the batch (cropped from
    the original images); the original calls it once per decoder layer on the matched
    pairs.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        vocab: Vocabulary,
        records: list[ImageRecord],
        device: str,
    ):
        from eoid.teacher_cache.teacher import (
            load_teacher,
            resolve_gamma,
            resolve_precision,
        )

        # the precision and gamma `eoid cache-teacher` would use with this [teacher]
        # section
        self.teacher = load_teacher(
            cfg.teacher.model,
            cfg.teacher.weights,
            device,
            resolve_precision(cfg.teacher.precision, device),
        )
        self.text_emb = self.teacher.encode_texts(
            vocab.prompts(cfg.teacher.template)
        ).float()
        self.valid = torch.as_tensor(vocab.teacher_valid_hois())
        self.hoi_to_verb = torch.as_tensor(vocab.hoi_to_verb)
        self.num_verbs, self.gamma = (
            vocab.num_verbs,
            resolve_gamma(cfg.teacher.gamma, self.teacher),
        )
        self.records = {r.key: r for r in records}

    def probs_for(self, metas: list[SampleMeta]) -> list[torch.Tensor]:
        """Teacher verb distributions (P_i, V) for the candidate pairs of each sample."""
        from eoid.teacher_cache.online import online_teacher

        recs = [self.records[m.key] for m in metas]
        images: list[Image.Image] = [load_rgb(r.path, r.key) for r in recs]
        idx = np.concatenate(
            [np.full(len(m.pair_box_idx), i) for i, m in enumerate(metas)]
        ).astype(np.int64)
        pairs = [m.pair_box_idx.reshape(-1, 2) for m in metas]
        h = np.concatenate(
            [r.boxes_xyxy_px[p[:, 0]] for r, p in zip(recs, pairs)]
        ).reshape(-1, 4)
        o = np.concatenate(
            [r.boxes_xyxy_px[p[:, 1]] for r, p in zip(recs, pairs)]
        ).reshape(-1, 4)
        cls = np.concatenate(
            [r.box_classes[p[:, 1]] for r, p in zip(recs, pairs)]
        ).astype(np.int64)
        probs = online_teacher(
            self.teacher,
            images,
            idx,
            h,
            o,
            cls,
            self.text_emb,
            self.valid,
            self.hoi_to_verb,
            self.num_verbs,
            self.gamma,
        )
        return list(probs.split([len(p) for p in pairs]))

    def fill(
        self, targets: list[PairTargets], metas: list[SampleMeta]
    ) -> list[PairTargets]:
        """Targets with teacher rows computed now (every pair a hit)."""
        out = []
        for t, probs in zip(targets, self.probs_for(metas)):
            out.append(
                t._replace(
                    teacher_verb_probs=probs.to(t.verb_labels.device),
                    teacher_hit=torch.ones_like(t.labelled),
                )
            )
        return out


def open_teacher_for_training(
    cfg: TrainConfig, vocab: Vocabulary, world: World, records: list[ImageRecord]
):
    """(cache reader or None, online teacher or None) for this run.

    The rule: a run needs a teacher exactly when it distils (loss.distill > 0), since
    the distillation term is the only one that reads teacher rows. Then it is the online
    teacher if asked for, else the cache, which must be given. Without distillation
    neither is opened, so a cache or --online-teacher given anyway is not read (a
    no-teacher baseline, or CDN).
    """
    if cfg.loss.distill <= 0:
        if cfg.cache or cfg.online_teacher:
            log.info(
                "loss.distill = 0: no distillation, so no teacher; %s is not read",
                "the online teacher" if cfg.online_teacher else f"cache {cfg.cache}",
            )
        return None, None
    if cfg.online_teacher:
        return None, OnlineTeacher(cfg, vocab, records, world.device)
    if not cfg.cache:
        raise ConfigError(
            "no teacher: pass --cache teacher_cache/ (from `eoid cache-teacher`), or "
            "--online-teacher, or set loss.distill = 0 for plain supervised training."
        )
    reader = open_cache_for_dataset(
        Path(cfg.cache), vocab, Path(cfg.data.train_annotations), cfg.teacher.min_iou
    )
    log.info(
        "teacher cache %s: %s, %d pairs",
        cfg.cache,
        reader.fingerprint["model"],
        reader.fingerprint["num_pairs"],
    )
    return reader, None
