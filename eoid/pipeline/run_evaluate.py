"""`eoid evaluate`: the student (or a predictions file) scored with the official HICO-DET protocol."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eoid.boxes import cxcywh_to_xyxy
from eoid.config import AugmentConfig, DataConfig, EvalConfig, PostprocessConfig, dumps_toml
from eoid.errors import ConfigError
from eoid.pipeline.evaluation.hico_map import gt_from_records, hoi_map_from_matches, match_detections
from eoid.pipeline.evaluation.predictions_io import (ImageTriplets, format_table, read_predictions, results_to_json,
                                          to_detections, write_predictions, write_results)
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.training.builders import augment_params, model_from_checkpoint
from eoid.pipeline.training.dataset import EvalDataset, collate_eval
from eoid.pipeline.training.training_set import read_records, require
from eoid.pipeline.evaluation.unseen_recall import RankedPairs, unseen_pair_recall, unseen_pairs_from_records
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.student.postprocess import postprocess, postprocess_kwargs

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_images(model, paths: list[Path], keys: list[str], vocab: Vocabulary, augment: AugmentConfig,
                   post: PostprocessConfig, device: str, batch_size: int = 2, progress: bool = True
                   ) -> tuple[dict[str, ImageTriplets], dict[str, RankedPairs]]:
    """Post-processed triplets per image key, and every query's pair ranked by interactive score."""
    model.eval()
    loader = torch.utils.data.DataLoader(EvalDataset(paths, keys, augment_params(augment)),
                                         batch_size=batch_size, collate_fn=collate_eval)
    valid = torch.from_numpy(vocab.valid)
    triplets: dict[str, ImageTriplets] = {}
    ranked: dict[str, RankedPairs] = {}
    for images, masks, sizes, batch_keys in tqdm(loader, desc="predict", disable=not progress,
                                                 leave=False):
        outputs = model(images.to(device), masks.to(device))
        sizes_hw = torch.tensor([[h, w] for w, h in sizes])
        preds = postprocess(outputs, sizes_hw, valid_object_verb=valid, **postprocess_kwargs(post))
        # every query's pair in original pixels, for U-R@K (ranked by interactive score)
        scale = torch.tensor([[w, h, w, h] for w, h in sizes], dtype=torch.float32)[:, None, :]
        human = (cxcywh_to_xyxy(outputs.human_boxes_cxcywh.float().cpu()) * scale).double().numpy()
        obj = (cxcywh_to_xyxy(outputs.object_boxes_cxcywh.float().cpu()) * scale).double().numpy()
        is_prob = outputs.interactive_prob().float().cpu().numpy()
        for b, key in enumerate(batch_keys):
            p = preds[b]
            triplets[key] = ImageTriplets(p.human_boxes_xyxy_px.astype(np.float64),
                                          p.object_boxes_xyxy_px.astype(np.float64),
                                          p.object_classes, p.verbs, p.scores.astype(np.float64))
            ranked[key] = RankedPairs(human[b], obj[b], is_prob[b].astype(np.float64))
    return triplets, ranked


def score(triplets: dict[str, ImageTriplets], records: list[ImageRecord], vocab: Vocabulary,
          setting: str, ranked: dict[str, RankedPairs] | None = None, meta: dict | None = None) -> dict:
    """results.json content: default and known-object mAP, and U-R@K when ranked pairs are given."""
    gt = gt_from_records(records, vocab)
    detections = to_detections({k: v for k, v in triplets.items() if k in gt}, vocab.hoi_index())
    unseen = vocab.unseen_hois(setting)
    hoi_to_object = vocab.hoi_to_object
    matches = match_detections(gt, detections, len(hoi_to_object), hoi_to_object, 0.5)
    default = hoi_map_from_matches(matches, hoi_to_object, vocab.rare_hois, unseen, False, "official")
    known = hoi_map_from_matches(matches, hoi_to_object, vocab.rare_hois, unseen, True, "official")
    recall = None
    unseen_verbs = vocab.unseen_verbs(setting)
    if ranked is not None and unseen_verbs:
        recall = unseen_pair_recall(unseen_pairs_from_records(records, unseen_verbs), ranked)
    return results_to_json(default, known, recall, {"setting": setting, "vocabulary": vocab.name,
                                                    **(meta or {})})


def evaluate_model_on_records(model, records: list[ImageRecord], vocab: Vocabulary, augment: AugmentConfig,
                              post: PostprocessConfig, device: str, setting: str, batch_size: int = 2
                              ) -> dict:
    """Predict and score a list of records (used for validation during training)."""
    triplets, ranked = predict_images(model, [r.path for r in records], [r.key for r in records],
                                      vocab, augment, post, device, batch_size, progress=False)
    model.train()
    return score(triplets, records, vocab, setting, ranked)


def evaluate_checkpoint(checkpoint: Path, data: DataConfig, augment: AugmentConfig,
                        post: PostprocessConfig, out: Path, device: str, batch_size: int = 2) -> dict:
    """Score a checkpoint on data.test_annotations; writes predictions.json and results.json into `out`."""
    model, vocab, _ = model_from_checkpoint(checkpoint, device)
    ann = require(data.test_annotations, "test annotation file", "--annotations")
    images = require(data.test_images, "test image folder", "--images")
    records = read_records(ann, images, vocab, data.skip_bad).records
    triplets, ranked = predict_images(model, [r.path for r in records], [r.key for r in records],
                                      vocab, augment, post, device, batch_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.json", triplets)
    results = score(triplets, records, vocab, data.setting, ranked,
                    {"checkpoint": str(checkpoint), "annotations": str(ann)})
    write_results(out, results)
    return results


def run_evaluate(cfg: EvalConfig) -> str:
    """Evaluate a checkpoint or a predictions file; returns the printed table."""
    out = require(cfg.out, "output folder", "--out")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if bool(cfg.checkpoint) == bool(cfg.predictions):
        raise ConfigError("pass exactly one of --checkpoint (score a student) or --predictions "
                          "(score a saved predictions JSON).")
    if cfg.checkpoint:
        results = evaluate_checkpoint(Path(cfg.checkpoint), cfg.data, cfg.augment, cfg.post, out, device,
                                      cfg.batch_size)
    else:
        vocab = load_vocabulary(cfg.data.dataset)
        ann = require(cfg.data.test_annotations, "test annotation file", "--annotations")
        images = Path(cfg.data.test_images) if cfg.data.test_images else ann.parent
        records = read_records_for_scoring(ann, images, vocab, cfg.data.test_images != "")
        triplets = read_predictions(Path(cfg.predictions), vocab.num_verbs, vocab.num_objects,
                                    {r.key for r in records})
        results = score(triplets, records, vocab, cfg.data.setting, None,
                        {"predictions": cfg.predictions, "annotations": str(ann)})
        write_results(out, results)
    (Path(out) / "eval_config.toml").write_text(dumps_toml(cfg))
    if cfg.mode == "known_object":
        results = {**results["known_object"], "ap_method": results["ap_method"]}
    return format_table(results) + f"\nresults: {Path(out) / 'results.json'}"


def read_records_for_scoring(ann: Path, images: Path, vocab: Vocabulary, check_images: bool
                             ) -> list[ImageRecord]:
    """Ground truth for scoring saved predictions: images are opened only when a folder is given."""
    from eoid.pipeline.data.readers import read_annotations
    return read_annotations(ann, images, vocab, check_images=check_images).records
