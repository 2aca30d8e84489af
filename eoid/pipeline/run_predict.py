"""`eoid predict`: HOI triplets on your own images, as JSON and as drawn PNGs.

The verb scores are the student's, CLIP's or the blend of both (cfg.verbs;
evaluation/clip_verbs.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from eoid.config import PredictConfig, TeacherConfig, dumps_toml, require_path
from eoid.devices import World
from eoid.errors import ConfigError, DataError
from eoid.files import output_folder, write_text_atomic, writing
from eoid.pipeline.data.images import load_rgb, unreadable_images
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.evaluation.clip_verbs import load_clip_verbs, predict_with_clip_verbs
from eoid.pipeline.evaluation.inference import open_student, predict_images
from eoid.pipeline.evaluation.predictions_io import ImageTriplets

COLOURS = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
]


def draw_triplets(image: Image.Image, triplets: list[dict]) -> Image.Image:
    """The image with each triplet's human box, object box, a line between them and its
    label.
    """
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    for i, t in enumerate(triplets):
        colour = COLOURS[i % len(COLOURS)]
        h, o = t["human_box"], t["object_box"]
        draw.rectangle(h, outline=colour, width=2)
        draw.rectangle(o, outline=colour, width=2)
        draw.line(
            [
                ((h[0] + h[2]) / 2, (h[1] + h[3]) / 2),
                ((o[0] + o[2]) / 2, (o[1] + o[3]) / 2),
            ],
            fill=colour,
            width=1,
        )
        draw.text(
            (h[0] + 2, h[1] + 2 + 10 * (i % 4)),
            f"{t['verb_name']} {t['object_name']} {t['score']:.2f}",
            fill=colour,
        )
    return canvas


def prediction_names(images: list[Path]) -> list[str]:
    """Each image's `file_name` in predictions.json: its path below the images' common
    folder.

    For images given from one folder that is the bare file name, as annotation files
    name them, so `eoid evaluate --predictions` scores the file as it is.
    """
    folders = [str(Path(p).resolve().parent) for p in images]
    common = Path(os.path.commonpath(folders)) if folders else Path(".")
    return [Path(p).resolve().relative_to(common).as_posix() for p in images]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_folders(paths: list[Path]) -> list[Path]:
    """Each folder among `paths` replaced by its image files (by suffix, any case;
    sorted; not recursive); files and missing paths stay as given. A folder without
    images is a DataError."""
    images = []
    for path in map(Path, paths):
        if not path.is_dir():
            images.append(path)
            continue
        found = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            raise DataError(
                f"{path}: a folder without image files ({', '.join(IMAGE_SUFFIXES)})."
                " Pass image files, or a folder that holds them."
            )
        images.extend(found)
    return images


def run_predict(
    cfg: PredictConfig,
    images: list[Path],
    world: World,
    teacher: TeacherConfig | None = None,
) -> str:
    """Write OUT/predictions.json (top triplets per image, with names) and
    OUT/<image>.png.

    `images`: image files and folders of images (see expand_folders). `teacher`: the
    CLIP of verbs.classifier "clip" and "blend" (the CLI's --clip and
    --clip-weights)."""
    out = require_path(cfg.out, "output folder", "--out")
    if cfg.verbs.classifier != "student" and teacher is None:
        raise ConfigError(
            f"verbs.classifier = {cfg.verbs.classifier!r} scores verbs with CLIP: pass "
            "--clip MODEL --clip-weights WEIGHTS (e.g. eoid-synth-clip and bundled)."
        )
    given, images = list(images), expand_folders(images)
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise DataError(
            f"no such image file(s): {', '.join(missing[:5])}. Pass existing image"
            " paths."
        )
    names = prediction_names(images)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(
            f"image(s) given twice: {', '.join(twice[:5])}. Pass each image once."
        )
    unreadable = unreadable_images(images)
    if unreadable:
        raise DataError(
            f"cannot read {len(unreadable)} image(s): {'; '.join(unreadable[:5])}. "
            "Replace them or leave them out of the command."
        )
    output_folder(
        out,
        "the predictions",
        inputs=given,
        owner="predict",
        signs=("predict_config.toml",),
    )
    model, vocab, device = open_student(
        cfg.checkpoint, cfg.onnx, cfg.onnx_provider, world.device
    )
    if cfg.verbs.classifier == "student":
        triplets, _ = predict_images(
            model, images, names, vocab, cfg.augment, cfg.post, device, batch_size=1
        )
    else:
        clip = load_clip_verbs(teacher, vocab, world.device, cfg.verbs.prior)
        blend = cfg.verbs.blend_weight if cfg.verbs.classifier == "blend" else None
        triplets = predict_with_clip_verbs(
            model,
            clip.teacher,
            clip.text_emb,
            clip.hoi_table,
            images,
            names,
            vocab,
            cfg.augment,
            cfg.post,
            device,
            clip.gamma,
            1,
            teacher.batch_size,
            blend_weight=blend,
            precision=clip.precision,
        )
    write_predictions_and_drawings(out, images, names, triplets, vocab, cfg)
    write_text_atomic(
        out / "predict_config.toml", dumps_toml(cfg), "predict_config.toml"
    )
    return (
        f"{len(images)} image(s): {out / 'predictions.json'} and one PNG each in {out}"
    )


def write_predictions_and_drawings(
    out: Path,
    images: list[Path],
    names: list[str],
    triplets: dict[str, ImageTriplets],
    vocab: Vocabulary,
    cfg: PredictConfig,
) -> None:
    """OUT/predictions.json (the format `eoid evaluate --predictions` reads, plus
    verb and object names) and one drawn PNG per image, from each image's triplets
    (keyed by its name)."""
    output_folder(out)
    listing = []
    for i, (path, name) in enumerate(zip(images, names)):
        t = triplets[name]
        keep = np.flatnonzero(t.scores >= cfg.threshold)[: cfg.top_k]
        rows = [
            {
                "human_box": [round(float(x), 1) for x in t.human_boxes_xyxy[j]],
                "object_box": [round(float(x), 1) for x in t.object_boxes_xyxy[j]],
                "object": int(t.object_idx[j]),
                "object_name": vocab.objects[int(t.object_idx[j])],
                "verb": int(t.verb_idx[j]),
                "verb_name": vocab.verbs[int(t.verb_idx[j])],
                "score": round(float(t.scores[j]), 4),
            }
            for j in keep
        ]
        listing.append({"file_name": name, "triplets": rows})
        drawn = draw_triplets(load_rgb(path, name), rows)
        with writing(out, "a drawn PNG"):
            drawn.save(out / f"{i:04d}_{Path(name).stem}.png")
    write_text_atomic(
        out / "predictions.json", json.dumps(listing, indent=1), "predictions.json"
    )
