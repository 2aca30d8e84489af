"""Table 2 of the paper, and CLIP at inference: CLIP's verb scores, alone or blended
with the student's.

`eoid evaluate --checkpoint ... --verb-classifier clip|blend --clip MODEL --clip-weights
W [--no-prior] [--blend-weight W]` keeps the student's boxes and object classes (and
object scores) and replaces its verb scores with the teacher's distribution on the union
crop of each predicted pair (clip), or with s_student^(1 - w) * s_clip^w (blend): see
evaluation/clip_verbs.py for the rule and why this form. Post-processing (top-k, triplet
NMS) and scoring are the student's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from eoid.config import (
    AugmentConfig,
    DataConfig,
    EvalConfig,
    PostprocessConfig,
    TeacherConfig,
    VerbsConfig,
    dumps_toml,
    require_path,
)
from eoid.devices import World
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.evaluation.clip_verbs import load_clip_verbs, predict_with_clip_verbs
from eoid.pipeline.evaluation.predictions_io import (
    format_table,
    write_predictions,
    write_results,
)
from eoid.pipeline.evaluation.scoring import score
from eoid.pipeline.evaluation.speed import StageClock, torch_setup

log = logging.getLogger(__name__)


def evaluate_clip_classifier(
    checkpoint: Path,
    data: DataConfig,
    augment: AugmentConfig,
    post: PostprocessConfig,
    teacher_cfg: TeacherConfig,
    verbs: VerbsConfig,
    out: Path,
    device: str,
    batch_size: int = 2,
) -> dict:
    """Score a checkpoint with CLIP's (or blended) verbs on data.test_annotations;
    writes predictions.json and results.json (with the inference cost per image,
    CLIP's tower included)."""
    model, vocab, _ = model_from_checkpoint(checkpoint, device)
    ann = require_path(data.test_annotations, "test annotation file", "--annotations")
    images = require_path(data.test_images, "test image folder", "--images")
    records = read_annotations(ann, images, vocab, skip_bad=data.skip_bad).records
    clip = load_clip_verbs(teacher_cfg, vocab, device, verbs.prior)
    blend = verbs.blend_weight if verbs.classifier == "blend" else None
    clock = StageClock(device)
    triplets = predict_with_clip_verbs(
        model,
        clip.teacher,
        clip.text_emb,
        clip.hoi_table,
        [r.path for r in records],
        [r.key for r in records],
        vocab,
        augment,
        post,
        device,
        clip.gamma,
        batch_size,
        teacher_cfg.batch_size,
        blend_weight=blend,
        clock=clock,
        precision=clip.precision,
    )
    out = output_folder(Path(out))
    write_predictions(out / "predictions.json", triplets)
    meta = {
        "checkpoint": str(checkpoint),
        "annotations": str(ann),
        "verb_classifier": verbs.classifier,
        "clip": teacher_cfg.model,
        "clip_weights": clip.teacher.weights_id,
        "prior": verbs.prior,
        "template": teacher_cfg.template,
        "gamma": clip.gamma,
    }
    if blend is not None:
        meta["blend_weight"] = blend
    results = score(triplets, records, vocab, data.setting, None, meta)
    results["speed"] = clock.report(
        **torch_setup(model, device, batch_size),
        clip=teacher_cfg.model,
        clip_precision=clip.precision,
        clip_crop_batch=teacher_cfg.batch_size,
    )
    write_results(out, results)
    return results


def run_clip_classifier(cfg: EvalConfig, teacher: TeacherConfig, world: World) -> str:
    """`eoid evaluate --verb-classifier clip|blend`: returns the printed table (Full ...
    HM, speed).
    """
    out = output_folder(
        require_path(cfg.out, "output folder", "--out"),
        "the evaluation",
        inputs=[p for p in [cfg.data.test_images] if p],
        owner="evaluate",
        signs=("eval_config.toml",),
    )
    checkpoint = require_path(cfg.checkpoint, "student checkpoint", "--checkpoint")
    results = evaluate_clip_classifier(
        checkpoint,
        cfg.data,
        cfg.augment,
        cfg.post,
        teacher,
        cfg.verbs,
        out,
        world.device,
        cfg.batch_size,
    )
    # the teacher is in results.json "meta"
    write_text_atomic(
        Path(out) / "eval_config.toml", dumps_toml(cfg), "the evaluation config"
    )
    table_of = results
    if cfg.mode == "known_object":
        table_of = {
            **results["known_object"],
            "ap_method": results["ap_method"],
            "speed": results["speed"],
        }
    return (
        format_table(table_of) + f"\n{describe_verbs(cfg.verbs, teacher)}"
        f"\nresults: {Path(out) / 'results.json'}"
    )


def describe_verbs(verbs: VerbsConfig, teacher: TeacherConfig) -> str:
    """The printed line saying where the verb scores came from."""
    mask = f"{'with' if verbs.prior else 'without'} the prior mask"
    if verbs.classifier == "blend":
        return (
            f"verbs: student^{1 - verbs.blend_weight:g} x CLIP^{verbs.blend_weight:g} "
            f"(CLIP {teacher.model}, {mask})"
        )
    return f"verbs: CLIP {teacher.model} ({mask})"
