"""A student scored with the official HICO-DET protocol: results.json from triplets,
records or a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eoid.config import AugmentConfig, DataConfig, PostprocessConfig, require_path
from eoid.files import output_folder
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.evaluation.hico_map import (
    gt_from_records,
    hoi_map_from_matches,
    match_detections,
)
from eoid.pipeline.evaluation.inference import predict_images
from eoid.pipeline.evaluation.predictions_io import (
    ImageTriplets,
    results_to_json,
    to_detections,
    write_predictions,
    write_results,
)
from eoid.pipeline.evaluation.speed import StageClock, torch_setup
from eoid.pipeline.evaluation.unseen_recall import (
    RankedPairs,
    unseen_pair_recall,
    unseen_pairs_from_records,
)

NO_IS_HEAD_NOTE = (
    "skipped: U-R@K ranks pairs by the interactive score, and this student has no "
    "interactive-score head (student.is_head = 'none', e.g. CDN's weights)"
)


def score(
    triplets: dict[str, ImageTriplets],
    records: list[ImageRecord],
    vocab: Vocabulary,
    setting: str,
    ranked: dict[str, RankedPairs] | None = None,
    meta: dict | None = None,
) -> dict:
    """results.json content: default and known-object mAP, and U-R@K when ranked
    pairs are given (None: the student has no interactive-score head, and
    results.json says U-R@K was skipped)."""
    gt = gt_from_records(records, vocab)
    detections = to_detections(
        {k: v for k, v in triplets.items() if k in gt}, vocab.hoi_index()
    )
    unseen = vocab.unseen_hois(setting)
    hoi_to_object = vocab.hoi_to_object
    matches = match_detections(gt, detections, len(hoi_to_object), hoi_to_object, 0.5)
    default = hoi_map_from_matches(
        matches, hoi_to_object, vocab.rare_hois, unseen, False, "official"
    )
    known = hoi_map_from_matches(
        matches, hoi_to_object, vocab.rare_hois, unseen, True, "official"
    )
    recall = None
    unseen_verbs = vocab.unseen_verbs(setting)
    meta = {"setting": setting, "vocabulary": vocab.name, **(meta or {})}
    if ranked is not None and unseen_verbs:
        recall = unseen_pair_recall(
            unseen_pairs_from_records(records, unseen_verbs), ranked
        )
    elif unseen_verbs:
        meta["unseen_recall"] = NO_IS_HEAD_NOTE
    return results_to_json(default, known, recall, meta)


def evaluate_model_on_records(
    model: Any,
    records: list[ImageRecord],
    vocab: Vocabulary,
    augment: AugmentConfig,
    post: PostprocessConfig,
    device: str,
    setting: str,
    batch_size: int = 2,
) -> dict:
    """Predict and score a list of records (validation during training); leaves the
    model in train mode.
    """
    triplets, ranked = predict_images(
        model,
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        augment,
        post,
        device,
        batch_size,
        progress=False,
    )
    model.train()
    return score(triplets, records, vocab, setting, ranked)


def evaluate_checkpoint(
    checkpoint: Path,
    data: DataConfig,
    augment: AugmentConfig,
    post: PostprocessConfig,
    out: Path,
    device: str,
    batch_size: int = 2,
    progress: bool = True,
    meta: dict | None = None,
) -> dict:
    """Score a checkpoint on data.test_annotations; writes predictions.json and
    results.json into `out`.

    results.json "speed": the inference cost per image (see evaluation/speed.py).
    `progress`: draw the progress bar of the images. `meta`: more entries for
    results.json's meta.
    """
    out = output_folder(Path(out))
    model, vocab, _ = model_from_checkpoint(checkpoint, device)
    ann = require_path(data.test_annotations, "test annotation file", "--annotations")
    images = require_path(data.test_images, "test image folder", "--images")
    records = read_annotations(ann, images, vocab, skip_bad=data.skip_bad).records
    clock = StageClock(device)
    triplets, ranked = predict_images(
        model,
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        augment,
        post,
        device,
        batch_size,
        progress=progress,
        clock=clock,
    )
    write_predictions(out / "predictions.json", triplets)
    results = score(
        triplets,
        records,
        vocab,
        data.setting,
        ranked,
        {"checkpoint": str(checkpoint), "annotations": str(ann), **(meta or {})},
    )
    results["speed"] = clock.report(**torch_setup(model, device, batch_size))
    write_results(out, results)
    return results
