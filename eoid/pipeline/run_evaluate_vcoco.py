"""`eoid evaluate-vcoco`: a student scored on V-COCO (Table 6).

The student is scored in its own vocabulary, which its checkpoint records: V-COCO's own
29 verb-roles (a student trained on V-COCO, or CDN's V-COCO weights after `eoid
import-checkpoint`), the merged vocabulary of the mapping (trained on the output of
`eoid mix`), or the mapping's base (HICO-DET: its verbs reach the V-COCO verb-roles they
are mapped to). Role AP in scenarios 1 and 2 (official vsrl_eval rules,
evaluation/vcoco_map.py), averaged over V-COCO's 24 evaluated verb-roles (Full), over
those the mapping maps onto base verbs (Seen, 18 for vcoco-to-hico-det) and over those
it adds (Unseen, 6). Writes OUT/vcoco_results.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eoid.config import AugmentConfig
from eoid.config_loading import from_dict
from eoid.devices import World
from eoid.errors import CheckpointError
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.mixed_vocab import (
    load_mixed_vocabulary,
    load_verb_mapping,
    verb_table_to_source,
)
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.evaluation.inference import dense_scores, model_outputs, sizes_hw
from eoid.pipeline.evaluation.vcoco_map import evaluate_vcoco
from eoid.pipeline.evaluation.vcoco_scoring import (
    objectless_labels,
    role_map_summary,
    source_scores,
    vcoco_detections,
    vcoco_gt_from_records,
    vcoco_structure,
)
from eoid.student.postprocess import postprocess


def run_evaluate_vcoco(
    checkpoint: Path,
    annotations: Path,
    images: Path,
    mapping: str,
    out: Path,
    world: World,
    *,
    batch_size: int = 2,
    num_workers: int = 0,
    progress: bool = True,
) -> str:
    """Score `checkpoint` on the V-COCO-format `annotations`; returns the printed table."""
    out = output_folder(
        Path(out),
        "the V-COCO evaluation",
        inputs=[images],
        owner="evaluate-vcoco",
        signs=("vcoco_results.json",),
    )
    mixed = load_mixed_vocabulary(mapping)
    model, vocab, cfg = model_from_checkpoint(Path(checkpoint), world.device)
    to_source = verb_table_to_source(mixed, vocab)
    if to_source is None:
        raise CheckpointError(
            f"{checkpoint} was trained with vocabulary {vocab.name!r}"
            f" ({vocab.num_verbs} verbs), which mapping {mapping!r} does not relate to"
            f" V-COCO: it scores students of {mixed.source.name!r}, {mixed.base.name!r}"
            f" or the merged {mixed.vocab.name!r}. Pass the --mapping of the student's"
            " vocabulary."
        )
    augment = from_dict(
        AugmentConfig, cfg.get("augment", {}), f"{checkpoint} [augment]"
    )
    source = mixed.source
    structure = vcoco_structure(source, load_verb_mapping(mapping).source)
    records = read_annotations(Path(annotations), Path(images), source).records
    gt = vcoco_gt_from_records(
        records, source, structure, objectless_labels(Path(annotations))
    )
    detections = {}
    for outputs, sizes, keys in model_outputs(
        model,
        [r.path for r in records],
        [r.key for r in records],
        augment,
        world.device,
        batch_size,
        num_workers,
        desc="evaluate v-coco",
        progress=progress,
    ):
        num_queries = outputs.verb_logits.shape[1]
        preds = postprocess(
            outputs, sizes_hw(sizes), top_k=num_queries * vocab.num_verbs, use_nms=False
        )
        for key, pred in zip(keys, preds):
            human, obj, _, scores = dense_scores(pred, num_queries, vocab.num_verbs)
            detections[key] = vcoco_detections(
                human, obj, source_scores(scores, to_source), structure
            )
    result = evaluate_vcoco(gt, detections, structure.num_roles)
    summary = role_map_summary(
        result,
        structure,
        mixed.seen_source_verbs,
        mixed.unseen_source_verbs,
        source.verbs,
    )
    summary.update(
        {
            "checkpoint": str(checkpoint),
            "annotations": str(annotations),
            "mapping": str(mapping),
            "images": len(records),
            "agent_ap": {
                a: round(100 * float(x), 2) if np.isfinite(x) else None
                for a, x in zip(structure.actions, result["agent_ap"])
            },
        }
    )
    summary["student_vocabulary"] = vocab.name
    write_text_atomic(
        out / "vcoco_results.json", json.dumps(summary, indent=1), "the V-COCO results"
    )
    lines = [
        (
            f"V-COCO role mAP ({len(records)} images; {summary['num_seen']} seen, "
            f"{summary['num_unseen']} unseen verb-roles)"
        ),
        f"{'':12s}{'Full':>8s}{'Seen':>8s}{'Unseen':>8s}{'HM':>8s}",
    ]
    for s in (1, 2):
        row = summary[f"scenario_{s}"]
        cells = "".join(
            f"{'-' if row[k] is None else format(row[k], '.2f'):>8s}"
            for k in ("full", "seen", "unseen", "hm")
        )
        lines.append(f"{f'scenario {s}':12s}" + cells)
    return "\n".join(lines) + f"\nresults: {out / 'vcoco_results.json'}"
