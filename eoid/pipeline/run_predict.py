"""`eoid predict`: HOI triplets on your own images, as JSON and as drawn PNGs (student only)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from eoid.config import PredictConfig, dumps_toml, require_path
from eoid.errors import DataError
from eoid.pipeline.evaluation.inference import open_student, predict_images
from eoid.pipeline.training.distributed import World

COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def draw_triplets(image: Image.Image, triplets: list[dict]) -> Image.Image:
    """The image with each triplet's human box, object box, a line between them and its label."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    for i, t in enumerate(triplets):
        colour = COLOURS[i % len(COLOURS)]
        h, o = t["human_box"], t["object_box"]
        draw.rectangle(h, outline=colour, width=2)
        draw.rectangle(o, outline=colour, width=2)
        draw.line([((h[0] + h[2]) / 2, (h[1] + h[3]) / 2), ((o[0] + o[2]) / 2, (o[1] + o[3]) / 2)],
                  fill=colour, width=1)
        draw.text((h[0] + 2, h[1] + 2 + 10 * (i % 4)),
                  f"{t['verb_name']} {t['object_name']} {t['score']:.2f}", fill=colour)
    return canvas


def run_predict(cfg: PredictConfig, images: list[Path], world: World) -> str:
    """Write OUT/predictions.json (top triplets per image, with names) and OUT/<image>.png."""
    out = require_path(cfg.out, "output folder", "--out")
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise DataError(f"no such image file(s): {', '.join(missing[:5])}. Pass existing image paths.")
    model, vocab, device = open_student(cfg.checkpoint, cfg.onnx, cfg.onnx_provider, world.device)
    keys = [f"{i:04d}_{Path(p).name}" for i, p in enumerate(images)]
    triplets, _ = predict_images(model, [Path(p) for p in images], keys, vocab, cfg.augment, cfg.post,
                                 device, batch_size=1)
    out.mkdir(parents=True, exist_ok=True)
    listing = []
    for path, key in zip(images, keys):
        t = triplets[key]
        keep = np.flatnonzero(t.scores >= cfg.threshold)[: cfg.top_k]
        rows = [{"human_box": [round(float(x), 1) for x in t.human_boxes_xyxy[j]],
                 "object_box": [round(float(x), 1) for x in t.object_boxes_xyxy[j]],
                 "object": int(t.object_idx[j]), "object_name": vocab.objects[int(t.object_idx[j])],
                 "verb": int(t.verb_idx[j]), "verb_name": vocab.verbs[int(t.verb_idx[j])],
                 "score": round(float(t.scores[j]), 4)} for j in keep]
        listing.append({"file_name": str(path), "triplets": rows})
        with Image.open(path) as im:
            draw_triplets(im, rows).save(out / f"{Path(key).stem}.png")
    (out / "predictions.json").write_text(json.dumps(listing, indent=1))
    (out / "predict_config.toml").write_text(dumps_toml(cfg))
    return f"{len(images)} image(s): {out / 'predictions.json'} and one PNG each in {out}"
