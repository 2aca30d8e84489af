"""Zero-shot settings applied to training records, and HOI statistics (rare / non-rare).

Applying a setting removes training *labels*, one (human, object, verb) label at a time;
every image and every box stays (the transductive setting of EoID: the unlabelled pairs
become unknown pairs for the teacher and the second matching stage). A setting of kind
"verb" (UA, UV) drops every label whose verb is unseen; kind "hoi" (UC, UO) drops the
labels whose (verb, object class) HOI is unseen. A seen label is never touched: the
original UC loader turned many seen pairs into unknown ones (EOID_CODE_FACTS weak spot
8); this one cannot, because it filters label rows and never rebuilds pairs.
"""

from __future__ import annotations

import numpy as np

from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary


def unseen_label_mask(
    hois: np.ndarray, box_classes: np.ndarray, vocab: Vocabulary, setting: str
) -> np.ndarray:
    """(num_labels,) bool: True where a label (human_idx, object_idx, verb_idx) is
    unseen under `setting`.
    """
    hois = np.asarray(hois, dtype=np.int64).reshape(-1, 3)
    if not setting or len(hois) == 0:
        return np.zeros(len(hois), dtype=bool)
    s = vocab.setting(setting)
    verbs = hois[:, 2]
    if s.kind == "verb":
        unseen_verbs = np.zeros(vocab.num_verbs, dtype=bool)
        unseen_verbs[[vocab.hois[i][0] for i in s.unseen_hois]] = True
        return unseen_verbs[verbs]
    # last slot: not a HOI (never unseen)
    unseen_hoi = np.zeros(len(vocab.hois) + 1, dtype=bool)
    unseen_hoi[list(s.unseen_hois)] = True
    # (num_verbs, num_objects), -1 invalid
    table = vocab.hoi_index()
    return unseen_hoi[table[verbs, box_classes[hois[:, 1]]]]


def apply_setting(
    records: list[ImageRecord], vocab: Vocabulary, setting: str
) -> list[ImageRecord]:
    """Training records with the unseen labels of `setting` removed ("" = unchanged);
    boxes stay.
    """
    if not setting:
        return list(records)
    vocab.setting(setting)  # an unknown name fails here, even for an empty list
    out = []
    for r in records:
        unseen = unseen_label_mask(r.hois, r.box_classes, vocab, setting)
        out.append(r.with_hois(r.hois[~unseen]) if unseen.any() else r)
    return out


def hoi_counts(records: list[ImageRecord], vocab: Vocabulary) -> np.ndarray:
    """(num_hois,) int64: labelled instances of each HOI (one per (human, object, verb)
    label).
    """
    table = vocab.hoi_index()
    counts = np.zeros(len(vocab.hois), dtype=np.int64)
    for r in records:
        if len(r.hois):
            idx = table[r.hois[:, 2], r.box_classes[r.hois[:, 1]]]
            np.add.at(counts, idx[idx >= 0], 1)
    return counts


def rare_hois_from_records(
    records: list[ImageRecord], vocab: Vocabulary, threshold: int = 10
) -> list[int]:
    """HOIs with fewer than `threshold` training instances (HICO-DET's rare set: 138
    HOIs).
    """
    return np.flatnonzero(hoi_counts(records, vocab) < threshold).tolist()
