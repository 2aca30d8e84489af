"""What the student is trained against: one image's candidate pairs as plain tensors.

The pipeline builds these (boxes after augmentation, teacher rows looked up in the cache
by IoU in original coordinates); the student never sees a dataset, a vocabulary or the
cache.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class PairTargets(NamedTuple):
    """Ground-truth candidate pairs of one image; P = labelled (seen) + unknown pairs."""

    # (P, 4) normalised by the augmented, unpadded image size
    human_boxes_cxcywh: Tensor
    object_boxes_cxcywh: Tensor  # (P, 4) same frame
    object_classes: Tensor  # (P,) int64 object index
    # (P, V) float32 multi-hot seen labels (0 for unknown pairs)
    verb_labels: Tensor
    # (P,) bool: has a seen label -> stage-1 matching; else unknown -> stage 2
    labelled: Tensor
    # (P,) bool: labelled with a verb other than no_interaction (IS positives)
    interactive: Tensor
    # (P, V) float32 teacher distribution; zeros where teacher_hit is False
    teacher_verb_probs: Tensor
    # (P,) bool: the teacher row exists (cache hit or online teacher)
    teacher_hit: Tensor

    def to(self, device: torch.device | str) -> "PairTargets":
        return PairTargets(*(t.to(device, non_blocking=True) for t in self))

    @staticmethod
    def empty(num_verbs: int) -> "PairTargets":
        """An image with no pairs (every query is a no-pair)."""
        return PairTargets(
            torch.zeros(0, 4),
            torch.zeros(0, 4),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, num_verbs),
            torch.zeros(0, dtype=torch.bool),
            torch.zeros(0, dtype=torch.bool),
            torch.zeros(0, num_verbs),
            torch.zeros(0, dtype=torch.bool),
        )
