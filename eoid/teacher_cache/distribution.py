"""The teacher's verb distribution: masked softmax of gamma x cosine over a pair's valid
HOIs.

Prior mask as in the EoID code: for a pair whose object is `o`, keep the HOIs of object
`o` except `no_interaction`, softmax over those (gamma = CLIP's logit scale, 100), then
give each HOI's probability to its verb. Pure tensors in, tensors out.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def valid_hoi_table(
    hoi_to_object: np.ndarray,
    hoi_to_verb: np.ndarray,
    num_objects: int,
    excluded_verbs: list[int] | tuple[int, ...] = (),
) -> np.ndarray:
    """(num_objects, H) bool: HOI h is valid for object o iff it is a HOI of o and its
    verb is kept.

    excluded_verbs: e.g. [no_interaction] (the teacher never gives it mass).
    """
    hoi_to_object = np.asarray(hoi_to_object, dtype=np.int64)
    table = hoi_to_object[None, :] == np.arange(num_objects)[:, None]
    table &= ~np.isin(
        np.asarray(hoi_to_verb, dtype=np.int64), np.asarray(excluded_verbs, np.int64)
    )
    return table


def teacher_verb_probs(
    similarity: Tensor,
    valid_hoi: Tensor,
    hoi_to_verb: Tensor,
    num_verbs: int,
    gamma: float,
) -> Tensor:
    """Teacher's verb distribution per pair: (P, num_verbs) float32, each row sums to 1.

    similarity: (P, H) cosine of each pair's crop embedding to each HOI prompt.
    valid_hoi: (P, H) bool, the HOIs possible for the pair's object (the prior mask).
    hoi_to_verb: (H,) int64. Softmax over the valid HOIs only, then each HOI's mass goes
    to its verb. A pair whose object has no valid HOI gets an all-zero row (no teacher
    signal).
    """
    logits = (gamma * similarity.float()).masked_fill(~valid_hoi, float("-inf"))
    has_valid = valid_hoi.any(dim=1, keepdim=True)
    hoi_probs = torch.where(has_valid, logits, torch.zeros_like(logits)).softmax(dim=1)
    hoi_probs = torch.where(
        has_valid & valid_hoi, hoi_probs, torch.zeros_like(hoi_probs)
    )
    out = hoi_probs.new_zeros(len(hoi_probs), num_verbs)
    return out.index_add_(1, hoi_to_verb.to(hoi_probs.device), hoi_probs)


def pair_verb_probs(
    image_emb: Tensor,
    text_emb: Tensor,
    object_idx: Tensor,
    valid_hoi_by_object: Tensor,
    hoi_to_verb: Tensor,
    num_verbs: int,
    gamma: float,
) -> Tensor:
    """Verb distributions for pairs from their embeddings: (P, num_verbs) float32.

    image_emb: (P, D) unit-length crop embeddings; text_emb: (H, D) unit-length prompt
    embeddings; object_idx: (P,) int64 object class of each pair; valid_hoi_by_object:
    (num_objects, H) bool.
    """
    similarity = image_emb.float() @ text_emb.float().T
    valid = valid_hoi_by_object.to(similarity.device)[object_idx.to(similarity.device)]
    return teacher_verb_probs(similarity, valid, hoi_to_verb, num_verbs, gamma)


def valid_verb_table(
    valid_hoi_by_object: np.ndarray, hoi_to_verb: np.ndarray, num_verbs: int
) -> np.ndarray:
    """(num_objects, V) bool: the verbs a teacher distribution may give mass for each
    object.
    """
    onehot = np.zeros((len(hoi_to_verb), num_verbs), dtype=np.int64)
    onehot[np.arange(len(hoi_to_verb)), np.asarray(hoi_to_verb, dtype=np.int64)] = 1
    return (np.asarray(valid_hoi_by_object, dtype=np.int64) @ onehot) > 0


def distribution_problems(
    verb_probs: np.ndarray,
    object_class: np.ndarray,
    valid_verbs: np.ndarray,
    atol: float = 5e-3,
    chunk: int = 65536,
) -> list[str]:
    """What keeps stored rows from being teacher distributions; [] if every row is one.

    verb_probs (P, V) as stored, object_class (P,), valid_verbs (num_objects, V) bool
    (valid_verb_table). A row must be finite, put no mass outside its object's valid
    verbs, and sum to 1 (within `atol`: float16 storage), or be all zero when its object
    has no valid verb.
    """
    if len(object_class) and not 0 <= int(object_class.min()) <= int(
        object_class.max()
    ) < len(valid_verbs):
        return [f"object classes outside 0..{len(valid_verbs) - 1}"]
    counts = {"finite": 0, "verb": 0, "sum": 0}
    first: dict[str, int] = {}
    for lo in range(0, len(verb_probs), chunk):
        probs = np.asarray(verb_probs[lo : lo + chunk], dtype=np.float32)
        valid = valid_verbs[object_class[lo : lo + chunk]]
        sums = probs.sum(1)
        bad = {
            "finite": ~np.isfinite(probs).all(1),
            "verb": (np.where(valid, 0, probs) != 0).any(1),
            "sum": ~np.where(valid.any(1), np.abs(sums - 1) <= atol, sums == 0),
        }
        bad["sum"] &= ~bad["finite"]
        for kind, rows in bad.items():
            counts[kind] += int(rows.sum())
            if rows.any():
                first.setdefault(kind, lo + int(np.argmax(rows)))
    text = {
        "finite": "hold NaN or infinite values",
        "verb": (
            "give mass to a verb the teacher excludes or that is not valid for their"
            " object"
        ),
        "sum": "do not sum to 1 over the verbs valid for their object",
    }
    return [
        f"{counts[k]} row(s) {text[k]} (first: row {first[k]})"
        for k in counts
        if counts[k]
    ]
