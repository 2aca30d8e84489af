"""The training dataset: augmented images with their candidate pairs and teacher rows
attached.

The teacher lookup happens here, in the loader (DESIGN.md): every candidate pair is
looked up in the cache by IoU in original pixel coordinates, so matching and losses see
tensors only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from eoid.boxes import xyxy_to_cxcywh
from eoid.pipeline.data.images import load_rgb
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.transforms import (
    AugmentParams,
    augment_test,
    augment_train,
    pad_batch,
)
from eoid.pipeline.training.pairs import training_pairs
from eoid.student.targets import PairTargets


class TeacherLookup(Protocol):
    def lookup(
        self,
        key: str,
        human_xyxy: np.ndarray,
        object_xyxy: np.ndarray,
        object_classes: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SampleMeta:
    """Bookkeeping that travels with a sample (not used by the loss)."""

    key: str
    index: int
    orig_size: tuple[int, int]  # (width, height) of the original image
    size: tuple[int, int]  # (width, height) after augmentation
    num_pairs: int
    teacher_misses: int  # candidate pairs whose teacher row was not found
    # (P, 2) box indices of the kept pairs into the record
    pair_box_idx: np.ndarray


class TrainDataset(torch.utils.data.Dataset):
    """(image, PairTargets, SampleMeta) per training record; deterministic per (seed,
    epoch, index).
    """

    def __init__(
        self,
        records: list[ImageRecord],
        num_verbs: int,
        human_class: int,
        no_interaction: int | None,
        augment: AugmentParams,
        unknown_rule: str,
        teacher: TeacherLookup | None,
        seed: int,
        annotated_pairs: dict[str, np.ndarray] | None = None,
        train: bool = True,
    ):
        self.records = records
        self.num_verbs = num_verbs
        self.human_class = human_class
        self.no_interaction = no_interaction
        self.augment = augment
        self.unknown_rule = unknown_rule
        self.teacher = teacher
        self.seed = seed
        self.annotated_pairs = annotated_pairs or {}
        self.train = train
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation randomness depends on (seed, epoch, index) only: resumable and
        worker-count free.
        """
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, PairTargets, SampleMeta]:
        rec = self.records[index]
        tp = training_pairs(
            rec.box_classes,
            rec.hois,
            self.num_verbs,
            self.human_class,
            self.no_interaction,
            self.unknown_rule,
            self.annotated_pairs.get(rec.key),
        )
        probs = np.zeros((len(tp.pairs), self.num_verbs), dtype=np.float32)
        hit = np.zeros(len(tp.pairs), dtype=bool)
        if self.teacher is not None and len(tp.pairs):
            probs, hit = self.teacher.lookup(
                rec.key,
                rec.boxes_xyxy_px[tp.pairs[:, 0]],
                rec.boxes_xyxy_px[tp.pairs[:, 1]],
                rec.box_classes[tp.pairs[:, 1]],
            )
        img = load_rgb(rec.path, rec.key)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            aug = augment_train(img, rec.boxes_xyxy_px, self.augment, rng)
        else:
            aug = augment_test(img, rec.boxes_xyxy_px, self.augment)
        keep = (
            aug.box_kept[tp.pairs[:, 0]] & aug.box_kept[tp.pairs[:, 1]]
            if len(tp.pairs)
            else np.zeros(0, dtype=bool)
        )
        h, w = aug.image.shape[1:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        pairs = tp.pairs[keep]
        boxes = torch.from_numpy(aug.boxes_xyxy_px)
        targets = PairTargets(
            human_boxes_cxcywh=xyxy_to_cxcywh(boxes[pairs[:, 0]] / scale).reshape(
                -1, 4
            ),
            object_boxes_cxcywh=xyxy_to_cxcywh(boxes[pairs[:, 1]] / scale).reshape(
                -1, 4
            ),
            object_classes=torch.from_numpy(
                rec.box_classes[pairs[:, 1]].astype(np.int64)
            ),
            verb_labels=torch.from_numpy(tp.verb_labels[keep]),
            labelled=torch.from_numpy(tp.labelled[keep]),
            interactive=torch.from_numpy(tp.interactive[keep]),
            teacher_verb_probs=torch.from_numpy(
                np.ascontiguousarray(probs[keep], dtype=np.float32)
            ),
            teacher_hit=torch.from_numpy(hit[keep]),
        )
        misses = int((~hit[keep]).sum()) if self.teacher is not None else 0
        meta = SampleMeta(
            rec.key,
            index,
            (rec.width, rec.height),
            (w, h),
            int(keep.sum()),
            misses,
            pairs,
        )
        return aug.image, targets, meta


def collate(
    batch: list[tuple[Tensor, PairTargets, SampleMeta]],
) -> tuple[Tensor, Tensor, list[PairTargets], list[SampleMeta]]:
    """Pad images into one batch; targets and metas stay per image."""
    images, targets, metas = zip(*batch)
    padded, mask = pad_batch(list(images))
    return padded, mask, list(targets), list(metas)
