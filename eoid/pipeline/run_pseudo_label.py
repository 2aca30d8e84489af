"""`eoid pseudo-label`: seen-action labels on boxes-only images from a trained student
(Section 5.6).

A student trained on HICO-DET is run on COCO images that carry ground-truth boxes only.
Each human-object pair of ground-truth boxes (subject of the vocabulary's human class,
any other box as object) takes the predictions whose human box and object box both reach
IoU >= min_iou with it and whose object class equals the box's class; a verb becomes a
pseudo label when the best such triplet score (sigmoid(verb) x object-class probability,
CDN's score) is >= threshold and the verb forms a valid HOI with the object.
"no_interaction" is not written (it would turn the pair into a labelled one and hide it
from the teacher).

The output is the HICO-DET JSON in the student's vocabulary; every label carries
`"provenance": {"source": "pseudo-label", "checkpoint_sha256": ..., "score": ...}`.
Images are processed in batches; finished images are appended to OUT.partial.jsonl, so a
killed run continues where it stopped when started again with the same checkpoint and
threshold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from eoid.boxes import box_iou_np
from eoid.config import AugmentConfig
from eoid.config_loading import from_dict
from eoid.devices import World
from eoid.errors import ConfigError
from eoid.files import file_sha256, new_file, output_folder, write_text_atomic, writing
from eoid.pipeline.data.mixed_vocab import record_to_hico_json
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.evaluation.inference import dense_scores, model_outputs, sizes_hw
from eoid.student.postprocess import postprocess

log = logging.getLogger(__name__)


def pseudo_labels(
    gt_boxes_xyxy: np.ndarray,
    gt_classes: np.ndarray,
    human_class: int,
    pred_human_xyxy: np.ndarray,
    pred_object_xyxy: np.ndarray,
    pred_object_classes: np.ndarray,
    pred_verb_scores: np.ndarray,
    valid_object_verb: np.ndarray,
    threshold: float,
    min_iou: float = 0.5,
    excluded_verbs: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo labels of one image from its predictions.

    gt_boxes_xyxy (B, 4) px, gt_classes (B,) object index; pred_*_xyxy (Q, 4) px,
    pred_object_classes (Q,), pred_verb_scores (Q, V) triplet scores of each query and
    verb; valid_object_verb (num_objects, V) bool. Returns (rows (K, 3) int64 of (human
    box, object box, verb), scores (K,) float64), rows sorted by (human, object, verb).
    """
    num_verbs = pred_verb_scores.shape[1]
    humans = np.nonzero(gt_classes == human_class)[0]
    if len(humans) == 0 or len(pred_verb_scores) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0)
    iou_h = box_iou_np(gt_boxes_xyxy, pred_human_xyxy)  # (B, Q)
    iou_o = box_iou_np(gt_boxes_xyxy, pred_object_xyxy)  # (B, Q)
    same_class = gt_classes[:, None] == pred_object_classes[None, :]
    allowed = np.ones(num_verbs, dtype=bool)
    allowed[list(excluded_verbs)] = False
    rows, scores = [], []
    for h in humans:
        for o in range(len(gt_boxes_xyxy)):
            if o == h:
                continue
            match = (iou_h[h] >= min_iou) & (iou_o[o] >= min_iou) & same_class[o]
            if not match.any():
                continue
            best = pred_verb_scores[match].max(axis=0)  # (V,)
            keep = (best >= threshold) & valid_object_verb[gt_classes[o]] & allowed
            for v in np.nonzero(keep)[0]:
                rows.append((int(h), o, int(v)))
                scores.append(float(best[v]))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3), np.asarray(
        scores, dtype=np.float64
    )


def _read_partial(path: Path, header: dict) -> dict[str, dict]:
    """Entries already written by an earlier run with the same header; {} otherwise."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]) != header:
        log.warning(
            "%s was written with another checkpoint or threshold; starting over", path
        )
        return {}
    done = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill: that image is redone
            continue
        done[entry["file_name"]] = entry
    return done


def run_pseudo_label(
    checkpoint: Path,
    coco: Path,
    images: Path,
    out: Path,
    world: World,
    *,
    threshold: float = 0.1,
    min_iou: float = 0.5,
    batch_size: int = 4,
    num_workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write pseudo-labelled annotations of the COCO instances file `coco` to `out`;
    returns `out`.

    threshold: lowest triplet score kept as a label (the original's file is named
    vcoco_train_pseudo_0.1.json, hence 0.1). Test-time resizing follows the checkpoint's
    config.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(
            f"--threshold {threshold}: a triplet score threshold lies in [0, 1], e.g."
            " 0.1."
        )
    out = Path(out)
    partial = out.with_name(out.name + ".partial.jsonl")
    # the rerun of a killed run: it continues from its partial file
    if partial.is_file():
        output_folder(out.parent, "the pseudo-labelled file's folder")
    else:
        new_file(out, "the pseudo-labelled file")
    model, vocab, cfg = model_from_checkpoint(Path(checkpoint), world.device)
    augment = from_dict(
        AugmentConfig, cfg.get("augment", {}), f"{checkpoint} [augment]"
    )
    records = read_annotations(Path(coco), Path(images), vocab).records
    sha = file_sha256(Path(checkpoint))
    header = {
        "checkpoint_sha256": sha,
        "threshold": threshold,
        "min_iou": min_iou,
        "coco": str(coco),
    }
    done = _read_partial(partial, header)
    if not done:
        write_text_atomic(
            partial, json.dumps(header) + "\n", "the pseudo-labels so far"
        )
    todo = [r for r in records if r.key not in done]
    excluded = () if vocab.no_interaction is None else (vocab.no_interaction,)
    valid = torch.from_numpy(vocab.valid)
    by_key = {r.key: r for r in todo}
    batches = model_outputs(
        model,
        [r.path for r in todo],
        [r.key for r in todo],
        augment,
        world.device,
        batch_size,
        num_workers,
        desc="pseudo-label",
        progress=progress,
    )
    with writing(partial, "the pseudo-labels so far"), open(partial, "a") as sink:
        for outputs, sizes, keys in batches:
            num_queries = outputs.verb_logits.shape[1]
            preds = postprocess(
                outputs,
                sizes_hw(sizes),
                top_k=num_queries * vocab.num_verbs,
                use_nms=False,
                valid_object_verb=valid,
            )
            for key, pred in zip(keys, preds):
                rec = by_key[key]
                human, obj, cls, scores = dense_scores(
                    pred, num_queries, vocab.num_verbs
                )
                rows, label_scores = pseudo_labels(
                    rec.boxes_xyxy_px,
                    rec.box_classes,
                    vocab.human,
                    human,
                    obj,
                    cls,
                    scores,
                    vocab.valid,
                    threshold,
                    min_iou,
                    excluded,
                )
                entry = _entry(rec, rows, label_scores, vocab, sha)
                sink.write(json.dumps(entry) + "\n")
                done[key] = entry
            sink.flush()
    entries = [done[r.key] for r in records]
    write_text_atomic(out, json.dumps(entries))
    partial.unlink()
    num_labels = sum(len(e["hoi_annotation"]) for e in entries)
    log.info(
        "%s: %d images, %d pseudo labels (threshold %.3g)",
        out,
        len(entries),
        num_labels,
        threshold,
    )
    return out


def _entry(
    rec: ImageRecord, rows: np.ndarray, scores: np.ndarray, vocab, sha: str
) -> dict:
    provenance = [
        {
            "source": "pseudo-label",
            "checkpoint_sha256": sha,
            "score": round(float(s), 4),
        }
        for s in scores
    ]
    return record_to_hico_json(rec.with_hois(rows), vocab, rec.key, provenance)
