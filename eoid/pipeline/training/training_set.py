"""From a DataConfig to the records a phase trains or evaluates on (zero-shot filter,
validation split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from eoid.config import DataConfig, require_path
from eoid.errors import ConfigError
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.splits import apply_setting
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.training.pairs import UNKNOWN_PAIR_RULES


@dataclass(frozen=True)
class TrainingSet:
    """Training records with the zero-shot filter applied, and what the filter needs to
    remember.
    """

    records: list[ImageRecord]  # seen labels only
    # held out for model selection (seen labels only)
    val_records: list[ImageRecord]
    # key -> (K, 2) box pairs of annotated HOIs before the filter
    annotated_pairs: dict[str, np.ndarray]
    num_skipped: int  # records skipped with --skip-bad
    # problems found in them (a record may have several)
    num_problems: int
    bad_report: list[dict]  # what was skipped and why


def prepare_training_set(
    data: DataConfig, vocab: Vocabulary, seed: int = 0
) -> TrainingSet:
    """Read the training annotations, remember annotated pairs, apply the setting,
    carve validation, keep data.fraction of the rest (a subset drawn with `seed`, the
    run's optim.seed)."""
    if data.unknown_pairs not in UNKNOWN_PAIR_RULES:
        raise ConfigError(
            f"data.unknown_pairs = {data.unknown_pairs!r}; choose one of"
            f" {UNKNOWN_PAIR_RULES}."
        )
    ann = require_path(
        data.train_annotations, "training annotation file", "--annotations"
    )
    images = require_path(data.train_images, "training image folder", "--images")
    result = read_annotations(ann, images, vocab, skip_bad=data.skip_bad)
    # boxes are cut first, as the original loader cuts them before it reads any label: a
    # label that points past the kept boxes is skipped everywhere, also among the
    # annotated pairs
    records = [_first_boxes(r, data.max_boxes) for r in result.records]
    annotated = {r.key: annotated_pairs(r.hois) for r in records}
    if data.setting:
        records = apply_setting(records, vocab, data.setting)
    records, val = split_validation(records, data, ann)
    records = fraction_subset(records, data.fraction, seed)
    bad = [
        b if isinstance(b, dict) else getattr(b, "__dict__", {"record": str(b)})
        for b in result.bad
    ]
    return TrainingSet(
        records,
        val,
        annotated,
        result.num_skipped,
        len(result.bad),
        json.loads(json.dumps(bad, default=str)),
    )


def annotated_pairs(hois: np.ndarray) -> np.ndarray:
    """(K, 2) int64 distinct (human, object) box pairs of (L, 3) labels, sorted:
    np.unique(axis=0)'s result, without its per-call cost (0.3 ms, 11 s over
    HICO-DET's 38k images; issue 25)."""
    pairs = sorted(set(map(tuple, hois[:, :2].tolist())))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def validation_count(num_records: int, data: DataConfig, where: object) -> int:
    """How many of `num_records` training images the validation split holds.

    data.val_images is a count, as before; data.val_fraction (used when val_images is 0)
    scales with the data: round(fraction x images), at least 1 and never every image.
    """
    if data.val_images < 0 or not 0.0 <= data.val_fraction < 1.0:
        raise ConfigError(
            f"data.val_images = {data.val_images}, data.val_fraction ="
            f" {data.val_fraction}: pass a count >= 0 or a fraction in [0, 1), e.g."
            " --set data.val_fraction=0.1."
        )
    if data.val_images > 0:
        if data.val_images >= num_records:
            raise ConfigError(
                f"data.val_images = {data.val_images} but {where} has only"
                f" {num_records} training images. Pass fewer, e.g. --set"
                f" data.val_images={max(1, num_records // 10)}, or a share that scales"
                " with the data: --set data.val_images=0 --set data.val_fraction=0.1."
            )
        return data.val_images
    if data.val_fraction == 0.0 or num_records < 2:
        return 0
    return min(num_records - 1, max(1, round(data.val_fraction * num_records)))


def split_validation(
    records: list[ImageRecord], data: DataConfig, where: object
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """(training records, validation records): a seeded (data.val_seed) draw, the file's
    order kept.
    """
    count = validation_count(len(records), data, where)
    if count == 0:
        return records, []
    order = np.random.default_rng(data.val_seed).permutation(len(records))
    held = set(order[:count].tolist())
    return (
        [r for i, r in enumerate(records) if i not in held],
        [r for i, r in enumerate(records) if i in held],
    )


def fraction_subset(
    records: list[ImageRecord], fraction: float, seed: int
) -> list[ImageRecord]:
    """The records of a seeded draw of round(fraction x N) images (at least 1), in the
    file's order.

    The draw is a prefix of one permutation per (seed, N): with the same seed and
    records a smaller fraction keeps a subset of a larger one's images (10% inside 25%
    inside 50%). The validation split is carved before, so it is the same at every
    fraction.
    """
    if fraction >= 1.0 or not records:
        return records
    count = max(1, round(fraction * len(records)))
    kept = set(np.random.default_rng(seed).permutation(len(records))[:count].tolist())
    return [r for i, r in enumerate(records) if i in kept]


def _first_boxes(rec: ImageRecord, max_boxes: int) -> ImageRecord:
    """Keep the first `max_boxes` boxes (as the original loader does) and the labels
    among them.
    """
    if rec.num_boxes <= max_boxes:
        return rec
    hois = rec.hois[(rec.hois[:, 0] < max_boxes) & (rec.hois[:, 1] < max_boxes)]
    return ImageRecord(
        rec.key,
        rec.path,
        rec.width,
        rec.height,
        rec.boxes_xyxy_px[:max_boxes],
        rec.box_classes[:max_boxes],
        hois,
    )
