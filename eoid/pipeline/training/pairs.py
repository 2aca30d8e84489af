"""Which ground-truth pairs of an image the student trains on: labelled (seen) and
unknown pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# data.unknown_pairs: which unlabelled human-object pairs stage 2 may train (see
# training_pairs)
UNKNOWN_PAIR_RULES = ("all", "annotated", "none")


@dataclass(frozen=True)
class TrainingPairs:
    """Candidate pairs of one image as indices into its boxes; labelled pairs first."""

    pairs: np.ndarray  # (P, 2) int64 (human_box_idx, object_box_idx)
    # (P, V) float32 multi-hot seen labels (all 0 on unknown pairs)
    verb_labels: np.ndarray
    labelled: np.ndarray  # (P,) bool
    # (P,) bool: labelled with a verb other than no_interaction
    interactive: np.ndarray


def training_pairs(
    box_classes: np.ndarray,
    hois: np.ndarray,
    num_verbs: int,
    human_class: int,
    no_interaction: int | None,
    rule: str,
    annotated_pairs: np.ndarray | None = None,
) -> TrainingPairs:
    """Labelled pairs from the seen labels, then the unknown pairs by `rule`.

    box_classes: (B,) object index per box; hois: (H, 3) seen labels (human_idx,
    object_idx, verb). rule "all": every human box x every other box without a seen
    label (the paper). rule "annotated": only subject boxes x object boxes of annotated
    HOIs, before the zero-shot filter (`annotated_pairs` (K, 2)), as the original loader
    builds them. rule "none": no unknown pairs (CDN: the labelled pairs only, so stage 2
    has nothing to match).
    """
    hois = np.asarray(hois, dtype=np.int64).reshape(-1, 3)
    labelled: dict[tuple[int, int], set[int]] = {}
    for h, o, v in hois:
        labelled.setdefault((int(h), int(o)), set()).add(int(v))
    if rule == "all":
        humans = np.flatnonzero(np.asarray(box_classes) == human_class)
        candidates = [
            (int(h), int(o)) for h in humans for o in range(len(box_classes)) if o != h
        ]
    elif rule == "annotated":
        ann = (
            np.zeros((0, 2), np.int64)
            if annotated_pairs is None
            else np.asarray(annotated_pairs)
        )
        subjects = list(dict.fromkeys(int(s) for s in ann[:, 0]))
        objects = list(dict.fromkeys(int(o) for o in ann[:, 1]))
        candidates = [(s, o) for s in subjects for o in objects if s != o]
    elif rule == "none":
        candidates = []
    else:
        raise ValueError(f"unknown unknown-pair rule {rule!r}")
    unknown = [p for p in dict.fromkeys(candidates) if p not in labelled]
    seen = list(labelled)
    pairs = np.array(seen + unknown, dtype=np.int64).reshape(-1, 2)
    verbs = np.zeros((len(pairs), num_verbs), dtype=np.float32)
    interactive = np.zeros(len(pairs), dtype=bool)
    for i, p in enumerate(seen):
        vs = sorted(labelled[p])
        verbs[i, vs] = 1.0
        interactive[i] = any(v != no_interaction for v in vs)
    is_labelled = np.zeros(len(pairs), dtype=bool)
    is_labelled[: len(seen)] = True
    return TrainingPairs(pairs, verbs, is_labelled, interactive)
