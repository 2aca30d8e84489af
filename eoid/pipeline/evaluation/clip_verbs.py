"""CLIP at inference: the teacher's verb scores on each predicted pair, alone or blended
with the student's.

The student's boxes and object classes (and object scores) are kept. For every query of
every image, the union crop of its predicted human and object boxes is cut from the
original image and scored by the teacher exactly as the cache scores a training pair:
cosine to the HOI prompts, softmax (gamma) over the HOIs of the predicted object (the
prior mask; `prior=False`: over every HOI), no_interaction left out, each HOI's
probability going to its verb. Then either

  clip   s = s_clip                                  (Table 2 of the paper: CLIP as the classifier)
  blend  s = s_student^(1 - w) * s_clip^w,  w in [0, 1]

per (query, verb), s_student = sigmoid(the student's verb logit). The blend is a
weighted geometric mean: w = 0 is the student exactly, w = 1 is CLIP exactly, and in log
space it is a weighted sum, log s = (1 - w) log s_student + w log s_clip. HOICLIP's
training-free enhancement (Ning et al., CVPR 2023; Artanic30/HOICLIP,
models/models_hoiclip/hoiclip.py) adds its CLIP-built verb classifier's logits to its
HOI logits with a weight (`verb_weight`, 0.5) before the sigmoid, i.e. a weighted sum in
logit space too. We blend log-probabilities instead of logits because the teacher's
score is a softmax over the object's HOIs, not an independent sigmoid (its logit has no
meaning of its own), and because a convex weight interpolates between the two
classifiers with both ends exact, so one number in the recipe says how much CLIP is
trusted. Post-processing (top-k, triplet NMS) and scoring are the student's.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor

from eoid.config import AugmentConfig, PostprocessConfig, TeacherConfig
from eoid.pipeline.data.images import load_rgb
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.evaluation.inference import (
    image_triplets,
    model_outputs,
    query_boxes_px,
    sizes_hw,
)
from eoid.pipeline.evaluation.predictions_io import ImageTriplets
from eoid.pipeline.evaluation.speed import StageClock
from eoid.student.model import StudentOutput
from eoid.student.postprocess import postprocess, postprocess_kwargs
from eoid.teacher_cache.online import online_teacher
from eoid.teacher_cache.teacher import (
    Teacher,
    load_teacher,
    resolve_gamma,
    resolve_precision,
)


class ClipVerbs(NamedTuple):
    """The teacher ready to score verbs: the model, its prompt embeddings, softmax mask
    and scale.
    """

    teacher: Teacher
    text_emb: Tensor  # (H, D) unit-length HOI prompt embeddings
    # (num_objects, H) bool: the HOIs the softmax runs over per object
    hoi_table: np.ndarray
    gamma: float  # softmax scale
    precision: str  # the image tower's: "fp32", "fp16" or "bf16"


def classifier_hoi_table(vocab: Vocabulary, prior: bool) -> np.ndarray:
    """(num_objects, H) bool: the HOIs the softmax runs over for a pair of each object
    class.

    prior: only the HOIs of that object (the teacher's mask); else every HOI.
    no_interaction is left out in both, as the teacher leaves it out.
    """
    table = vocab.teacher_valid_hois()
    if not prior:
        table = np.broadcast_to(table.any(axis=0, keepdims=True), table.shape).copy()
    return table


def load_clip_verbs(
    teacher_cfg: TeacherConfig, vocab: Vocabulary, device: str, prior: bool
) -> ClipVerbs:
    """Load the teacher of `teacher_cfg` and embed the vocabulary's prompts once."""
    precision = resolve_precision(teacher_cfg.precision, device)
    teacher = load_teacher(teacher_cfg.model, teacher_cfg.weights, device, precision)
    text_emb = teacher.encode_texts(vocab.prompts(teacher_cfg.template)).float()
    return ClipVerbs(
        teacher,
        text_emb,
        classifier_hoi_table(vocab, prior),
        resolve_gamma(teacher_cfg.gamma, teacher),
        precision,
    )


def blend_verb_scores(
    student_probs: Tensor, clip_probs: Tensor, weight: float
) -> Tensor:
    """s_student^(1 - weight) * s_clip^weight per entry; (..., V) in [0, 1], weight in
    [0, 1].

    weight 0 returns the student's scores and 1 CLIP's, exactly (0^0 = 1 in torch.pow).
    """
    return torch.pow(student_probs, 1.0 - weight) * torch.pow(clip_probs, weight)


def with_verb_probs(outputs: StudentOutput, verb_probs: Tensor) -> StudentOutput:
    """The student's outputs with verb scores replaced: (B, Q, V) probabilities in [0,
    1].

    postprocess scores a triplet with sigmoid(verb logit), so the probabilities go in as
    logits (logit(0) = -inf and logit(1) = +inf come back out of the sigmoid exactly).
    """
    # float sums may pass 1 by an ulp
    probs = verb_probs.to(outputs.verb_logits.dtype).clamp(0.0, 1.0)
    return outputs._replace(verb_logits=torch.logit(probs), aux=())


def verb_scored(
    outputs: StudentOutput, clip_probs: Tensor, blend_weight: float | None
) -> StudentOutput:
    """The outputs with CLIP's verb scores (blend_weight None) or the blend of both (see
    module doc).
    """
    clip_probs = clip_probs.to(outputs.verb_logits.device)
    if blend_weight is None:
        return with_verb_probs(outputs, clip_probs)
    student_probs = outputs.verb_logits.float().sigmoid()
    return with_verb_probs(
        outputs, blend_verb_scores(student_probs, clip_probs.float(), blend_weight)
    )


def clip_verb_batches(
    model: Any,
    clip: ClipVerbs,
    paths: list[Path],
    keys: list[str],
    vocab: Vocabulary,
    augment: AugmentConfig,
    device: str,
    batch_size: int = 2,
    crop_batch: int = 64,
    clock: StageClock | None = None,
) -> Iterator[tuple[StudentOutput, Tensor, list[tuple[int, int]], list[str]]]:
    """(student outputs, CLIP's verb probabilities (B, Q, V) on CPU, original sizes,
    keys) per batch.

    `clock`: times the "student" and "clip" stages; the caller closes each batch.
    """
    path_of = dict(zip(keys, paths))
    valid_hoi = torch.from_numpy(clip.hoi_table)
    hoi_to_verb = torch.from_numpy(vocab.hoi_to_verb)
    for outputs, sizes, batch_keys in model_outputs(
        model,
        paths,
        keys,
        augment,
        device,
        batch_size,
        desc="predict (CLIP verbs)",
        clock=clock,
    ):
        num_images, num_queries = outputs.object_logits.shape[:2]
        with clock.stage("clip") if clock else nullcontext():
            human, obj = query_boxes_px(outputs, sizes)
            object_idx = (
                outputs.object_logits[..., :-1].argmax(-1).reshape(-1).cpu().numpy()
            )
            originals = [load_rgb(path_of[k], k) for k in batch_keys]
            probs = online_teacher(
                clip.teacher,
                originals,
                np.repeat(np.arange(num_images), num_queries),
                human.reshape(-1, 4),
                obj.reshape(-1, 4),
                object_idx,
                clip.text_emb,
                valid_hoi,
                hoi_to_verb,
                vocab.num_verbs,
                clip.gamma,
                batch_size=crop_batch,
            )
        yield outputs, probs.reshape(num_images, num_queries, -1), sizes, batch_keys


def batch_triplets(
    outputs: StudentOutput,
    sizes: list[tuple[int, int]],
    keys: list[str],
    vocab: Vocabulary,
    post: PostprocessConfig,
) -> dict[str, ImageTriplets]:
    """Post-processed triplets of one batch, per image key."""
    preds = postprocess(
        outputs,
        sizes_hw(sizes),
        valid_object_verb=torch.from_numpy(vocab.valid),
        **postprocess_kwargs(post),
    )
    return {key: image_triplets(p) for key, p in zip(keys, preds)}


def predict_with_clip_verbs(
    model,
    teacher: Teacher,
    text_emb: Tensor,
    hoi_table: np.ndarray,
    paths: list[Path],
    keys: list[str],
    vocab: Vocabulary,
    augment: AugmentConfig,
    post: PostprocessConfig,
    device: str,
    gamma: float,
    batch_size: int = 2,
    crop_batch: int = 64,
    blend_weight: float | None = None,
    clock: StageClock | None = None,
    precision: str = "fp32",
) -> dict[str, ImageTriplets]:
    """Post-processed triplets per image with CLIP's verb scores (blend_weight None) or
    the blend.

    `clock`: times the "student", "clip" and "postprocess" stages of each batch.
    """
    clip = ClipVerbs(teacher, text_emb, hoi_table, gamma, precision)
    triplets: dict[str, ImageTriplets] = {}
    for outputs, probs, sizes, batch_keys in clip_verb_batches(
        model, clip, paths, keys, vocab, augment, device, batch_size, crop_batch, clock
    ):
        with clock.stage("postprocess") if clock else nullcontext():
            triplets.update(
                batch_triplets(
                    verb_scored(outputs, probs, blend_weight),
                    sizes,
                    batch_keys,
                    vocab,
                    post,
                )
            )
        if clock:
            clock.end_batch(len(batch_keys))
    return triplets
