"""The teacher as the original code runs it at train time: crop, encode, mask, softmax.

Phase 2's `--online-teacher` comparison mode calls this on the matched ground-truth
pairs of a batch; the cache writer runs exactly the same steps (crops.py, teacher.py,
distribution.py).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from eoid.teacher_cache.crops import union_crops
from eoid.teacher_cache.distribution import pair_verb_probs
from eoid.teacher_cache.teacher import Teacher


def online_teacher(
    teacher: Teacher,
    images: list[Image.Image],
    pair_image_idx: np.ndarray,
    human_xyxy_px: np.ndarray,
    object_xyxy_px: np.ndarray,
    object_idx: np.ndarray,
    text_emb: Tensor,
    valid_hoi_by_object: Tensor,
    hoi_to_verb: Tensor,
    num_verbs: int,
    gamma: float,
    batch_size: int = 64,
) -> Tensor:
    """Verb distributions (P, num_verbs) float32 for P pairs over a batch of original
    images.

    pair_image_idx (P,): which of `images` each pair is in; boxes (P, 4) xyxy in that
    image's original pixels; object_idx (P,) object class; text_emb (H, D) unit-length
    prompt embeddings; valid_hoi_by_object (num_objects, H) bool prior mask; hoi_to_verb
    (H,) int64.
    """
    pair_image_idx = np.asarray(pair_image_idx, dtype=np.int64)
    crops = [torch.zeros((0, 3, teacher.crop_spec.size, teacher.crop_spec.size))]
    order = np.argsort(pair_image_idx, kind="stable")
    for i in np.unique(pair_image_idx):
        rows = order[pair_image_idx[order] == i]
        crops.append(
            union_crops(
                images[i], human_xyxy_px[rows], object_xyxy_px[rows], teacher.crop_spec
            )
        )
    crops_sorted = torch.cat(crops)
    emb = (
        torch.cat(
            [
                teacher.encode_images(crops_sorted[b : b + batch_size]).cpu()
                for b in range(0, len(crops_sorted), batch_size)
            ]
        )
        if len(crops_sorted)
        else torch.zeros((0, text_emb.shape[1]))
    )
    probs_sorted = pair_verb_probs(
        emb,
        text_emb.cpu(),
        torch.as_tensor(object_idx)[order],
        valid_hoi_by_object.cpu(),
        hoi_to_verb.cpu(),
        num_verbs,
        gamma,
    )
    probs = torch.empty_like(probs_sorted)
    probs[torch.as_tensor(order)] = probs_sorted
    return probs
