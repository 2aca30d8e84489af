"""`eoid evaluate`: the student (or a predictions file) scored with the official
HICO-DET protocol.
"""

from __future__ import annotations

import logging
from pathlib import Path

from eoid.config import EvalConfig, dumps_toml, require_path
from eoid.devices import World
from eoid.errors import ConfigError
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.evaluation.predictions_io import (
    format_table,
    read_predictions,
    write_results,
)
from eoid.pipeline.evaluation.scoring import evaluate_checkpoint, score

log = logging.getLogger(__name__)


def run_evaluate(cfg: EvalConfig, world: World) -> str:
    """Evaluate a checkpoint or a predictions file; returns the printed table."""
    out = require_path(cfg.out, "output folder", "--out")
    if bool(cfg.checkpoint) == bool(cfg.predictions):
        raise ConfigError(
            "pass exactly one of --checkpoint (score a student) or --predictions "
            "(score a saved predictions JSON)."
        )
    output_folder(
        out,
        "the evaluation",
        inputs=[p for p in [cfg.data.test_images] if p],
        owner="evaluate",
        signs=("eval_config.toml",),
    )
    if cfg.checkpoint:
        results = evaluate_checkpoint(
            Path(cfg.checkpoint),
            cfg.data,
            cfg.augment,
            cfg.post,
            out,
            world.device,
            cfg.batch_size,
        )
    else:
        vocab = load_vocabulary(cfg.data.dataset)
        ann = require_path(
            cfg.data.test_annotations, "test annotation file", "--annotations"
        )
        images = Path(cfg.data.test_images) if cfg.data.test_images else ann.parent
        # ground truth for saved predictions: images are opened only when a folder is
        # given
        records = read_annotations(
            ann, images, vocab, check_images=cfg.data.test_images != ""
        ).records
        triplets = read_predictions(
            Path(cfg.predictions),
            vocab.num_verbs,
            vocab.num_objects,
            {r.key for r in records},
        )
        results = score(
            triplets,
            records,
            vocab,
            cfg.data.setting,
            None,
            {"predictions": cfg.predictions, "annotations": str(ann)},
        )
        write_results(out, results)
    write_text_atomic(
        Path(out) / "eval_config.toml", dumps_toml(cfg), "the evaluation config"
    )
    if cfg.mode == "known_object":
        results = {
            **results["known_object"],
            "ap_method": results["ap_method"],
            **({"speed": results["speed"]} if "speed" in results else {}),
        }
    return format_table(results) + f"\nresults: {Path(out) / 'results.json'}"
