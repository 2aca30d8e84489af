"""Table 2 of the paper: CLIP as the verb classifier of a converged student.

`eoid evaluate --checkpoint ... --verb-classifier clip --clip MODEL --clip-weights W [--no-prior]`
keeps the student's boxes and object classes (and object scores) and replaces its verb scores
with the teacher's distribution on the union crop of each predicted pair, cut from the original
image: every query of every image, batched through the CLIP image encoder. With the prior mask
(the teacher's own rule) the softmax runs over the HOIs of the predicted object; without it,
over every HOI, each HOI's probability going to its verb. In both, as in the teacher,
`no_interaction` gets no mass. Post-processing (top-k, triplet NMS) and scoring are the student's.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from eoid.config import (
    AugmentConfig,
    DataConfig,
    EvalConfig,
    PostprocessConfig,
    TeacherConfig,
    dumps_toml,
    require_path,
)
from eoid.devices import World
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.images import load_rgb
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.evaluation.inference import image_triplets, model_outputs, query_boxes_px, sizes_hw
from eoid.pipeline.evaluation.predictions_io import (
    ImageTriplets,
    format_table,
    write_predictions,
    write_results,
)
from eoid.pipeline.evaluation.scoring import score
from eoid.student.model import StudentOutput
from eoid.student.postprocess import postprocess, postprocess_kwargs
from eoid.teacher_cache.online import online_teacher
from eoid.teacher_cache.teacher import Teacher, load_teacher, resolve_gamma, resolve_precision

log = logging.getLogger(__name__)


def classifier_hoi_table(vocab: Vocabulary, prior: bool) -> np.ndarray:
    """(num_objects, H) bool: the HOIs the softmax runs over for a pair of each object class.

    prior: only the HOIs of that object (the teacher's mask); else every HOI. no_interaction
    is left out in both, as the teacher leaves it out.
    """
    table = vocab.teacher_valid_hois()
    if not prior:
        table = np.broadcast_to(table.any(axis=0, keepdims=True), table.shape).copy()
    return table


def with_verb_probs(outputs: StudentOutput, verb_probs: torch.Tensor) -> StudentOutput:
    """The student's outputs with verb scores replaced: (B, Q, V) probabilities in [0, 1].

    postprocess scores a triplet with sigmoid(verb logit), so the probabilities go in as logits
    (logit(0) = -inf and logit(1) = +inf come back out of the sigmoid exactly).
    """
    probs = verb_probs.to(outputs.verb_logits.dtype).clamp(0.0, 1.0)  # float sums may pass 1 by an ulp
    return outputs._replace(verb_logits=torch.logit(probs), aux=())


def predict_with_clip_verbs(model, teacher: Teacher, text_emb: torch.Tensor, hoi_table: np.ndarray,
                            paths: list[Path], keys: list[str], vocab: Vocabulary, augment: AugmentConfig,
                            post: PostprocessConfig, device: str, gamma: float, batch_size: int = 2,
                            crop_batch: int = 64) -> dict[str, ImageTriplets]:
    """Post-processed triplets per image with the teacher as the verb classifier (see module doc)."""
    path_of = dict(zip(keys, paths))
    valid_hoi = torch.from_numpy(hoi_table)
    hoi_to_verb = torch.from_numpy(vocab.hoi_to_verb)
    valid_object_verb = torch.from_numpy(vocab.valid)
    triplets: dict[str, ImageTriplets] = {}
    for outputs, sizes, batch_keys in model_outputs(model, paths, keys, augment, device, batch_size,
                                                    desc="predict (CLIP verbs)"):
        num_images, num_queries = outputs.object_logits.shape[:2]
        human, obj = query_boxes_px(outputs, sizes)
        object_idx = outputs.object_logits[..., :-1].argmax(-1).reshape(-1).cpu().numpy()
        originals = [load_rgb(path_of[k], k) for k in batch_keys]
        probs = online_teacher(teacher, originals, np.repeat(np.arange(num_images), num_queries),
                               human.reshape(-1, 4), obj.reshape(-1, 4), object_idx, text_emb, valid_hoi,
                               hoi_to_verb, vocab.num_verbs, gamma, batch_size=crop_batch)
        replaced = with_verb_probs(outputs, probs.reshape(num_images, num_queries, -1).to(device))
        preds = postprocess(replaced, sizes_hw(sizes), valid_object_verb=valid_object_verb,
                            **postprocess_kwargs(post))
        for key, p in zip(batch_keys, preds):
            triplets[key] = image_triplets(p)
    return triplets


def evaluate_clip_classifier(checkpoint: Path, data: DataConfig, augment: AugmentConfig,
                             post: PostprocessConfig, teacher_cfg: TeacherConfig, prior: bool, out: Path,
                             device: str, batch_size: int = 2) -> dict:
    """Score a checkpoint with CLIP verbs on data.test_annotations; writes predictions.json and
    results.json."""
    model, vocab, _ = model_from_checkpoint(checkpoint, device)
    ann = require_path(data.test_annotations, "test annotation file", "--annotations")
    images = require_path(data.test_images, "test image folder", "--images")
    records = read_annotations(ann, images, vocab, skip_bad=data.skip_bad).records
    teacher = load_teacher(teacher_cfg.model, teacher_cfg.weights, device,
                           resolve_precision(teacher_cfg.precision, device))
    text_emb = teacher.encode_texts(vocab.prompts(teacher_cfg.template)).float()
    gamma = resolve_gamma(teacher_cfg.gamma, teacher)
    triplets = predict_with_clip_verbs(model, teacher, text_emb, classifier_hoi_table(vocab, prior),
                                       [r.path for r in records], [r.key for r in records], vocab, augment,
                                       post, device, gamma, batch_size, teacher_cfg.batch_size)
    out = output_folder(Path(out))
    write_predictions(out / "predictions.json", triplets)
    results = score(triplets, records, vocab, data.setting, None,
                    {"checkpoint": str(checkpoint), "annotations": str(ann), "verb_classifier": "clip",
                     "clip": teacher_cfg.model, "clip_weights": teacher.weights_id, "prior": prior,
                     "template": teacher_cfg.template, "gamma": gamma})
    write_results(out, results)
    return results


def run_clip_classifier(cfg: EvalConfig, teacher: TeacherConfig, world: World, prior: bool = True) -> str:
    """`eoid evaluate --verb-classifier clip`: returns the printed table (Full / Rare / Non-rare ...)."""
    out = output_folder(require_path(cfg.out, "output folder", "--out"), "the evaluation",
                        inputs=[p for p in [cfg.data.test_images] if p], owner="evaluate",
                        signs=("eval_config.toml",))
    checkpoint = require_path(cfg.checkpoint, "student checkpoint", "--checkpoint")
    results = evaluate_clip_classifier(checkpoint, cfg.data, cfg.augment, cfg.post, teacher, prior, out,
                                       world.device, cfg.batch_size)
    # the teacher is in results.json "meta"
    write_text_atomic(Path(out) / "eval_config.toml", dumps_toml(cfg), "the evaluation config")
    if cfg.mode == "known_object":
        results = {**results["known_object"], "ap_method": results["ap_method"]}
    verbs = f"verbs: CLIP {teacher.model} ({'with' if prior else 'without'} the prior mask)"
    return format_table(results) + f"\n{verbs}\nresults: {Path(out) / 'results.json'}"
