"""Ensembles at no training cost: of prompts (text embeddings) and of teachers (cached
rows).

Prompt ensembling is CLIP's (Radford et al. 2021, the `zeroshot_classifier` of its
ImageNet notebook): a class's text embedding is the mean of its prompts' unit-length
embeddings, renormalised. A HOI's prompt set may hold several templates filled in,
free-text descriptions, or both, all weighted alike. A set of one text keeps that text's
embedding as it is (the mean of one is exact, and no renormalisation touches it), so one
template gives the single-prompt bytes.

Teacher ensembles combine the verb rows (P, V) of caches that hold the same pairs, with
weights w_i normalised to sum 1:
    mean       sum_i w_i p_i
    geometric  prod_i max(p_i, GEOMETRIC_FLOOR)^w_i over the verbs valid for the pair's object,
               renormalised; a row with no valid verb stays all zero.
Pure arrays and tensors in and out (the teacher is only called to encode texts).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from eoid.teacher_cache.teacher import Teacher

RULES = ("mean", "geometric")
# A member's zero (a softmax underflow at gamma 100) would veto a verb for good under a
# product; the floor sits below float32's step near 1 (6e-8), so it counts as a firm
# "no", not an infinite one.
GEOMETRIC_FLOOR = 1e-8


def mean_of_sets(text_emb: Tensor, set_idx: Tensor, num_sets: int) -> Tensor:
    """(num_sets, D) per-set embeddings from (T, D) unit-length text embeddings, set_idx
    (T,) int64.

    A set of several texts: their mean, renormalised; a set of one: that text's
    embedding unchanged.
    """
    sums = text_emb.new_zeros(num_sets, text_emb.shape[1]).index_add_(
        0, set_idx, text_emb
    )
    counts = torch.bincount(set_idx, minlength=num_sets).to(text_emb.dtype)[:, None]
    means = sums / counts.clamp(min=1)
    return torch.where(counts > 1, F.normalize(means, dim=-1), means)


def encode_prompt_sets(teacher: Teacher, prompt_sets: list[list[str]]) -> Tensor:
    """(H, D) float32 text embeddings of H prompt sets (one per HOI), each set
    ensembled.
    """
    texts = [text for prompts in prompt_sets for text in prompts]
    set_idx = torch.repeat_interleave(
        torch.arange(len(prompt_sets)),
        torch.tensor([len(p) for p in prompt_sets], dtype=torch.long),
    )
    return mean_of_sets(
        teacher.encode_texts(texts).float().cpu(), set_idx, len(prompt_sets)
    )


def normalised_weights(weights: list[float] | None, num_members: int) -> np.ndarray:
    """(M,) float64 weights summing to 1; None = equal weights. The caller checks signs
    and counts.
    """
    w = (
        np.ones(num_members)
        if weights is None
        else np.asarray(weights, dtype=np.float64)
    )
    return w / w.sum()


def combine_rows(
    rows: list[np.ndarray],
    weights: np.ndarray,
    rule: str,
    valid_verbs: np.ndarray,
    chunk: int = 65536,
) -> np.ndarray:
    """Merged verb rows (P, V) float32 from M members' rows, each (P, V) float32 of the
    same pairs.

    weights (M,) sum to 1; valid_verbs (P, V) bool, the verbs valid for each pair's
    object (the rows' support; a geometric row is renormalised over it).
    """
    out = np.zeros(rows[0].shape, np.float32)
    for lo in range(0, len(out), chunk):
        block = [np.asarray(r[lo : lo + chunk], np.float64) for r in rows]
        if rule == "mean":
            merged = sum(w * p for w, p in zip(weights, block))
        else:
            valid = valid_verbs[lo : lo + chunk]
            log_p = sum(
                w * np.log(np.maximum(p, GEOMETRIC_FLOOR))
                for w, p in zip(weights, block)
            )
            # subtract the row's max before exp: only the ratios matter after
            # renormalising
            log_p = np.where(valid, log_p, -np.inf)
            top = np.max(log_p, axis=1, keepdims=True, initial=-np.inf)
            unnorm = np.where(
                valid, np.exp(log_p - np.where(np.isfinite(top), top, 0.0)), 0.0
            )
            total = unnorm.sum(1, keepdims=True)
            merged = np.divide(
                unnorm, total, out=np.zeros_like(unnorm), where=total > 0
            )
        out[lo : lo + chunk] = merged
    return out
