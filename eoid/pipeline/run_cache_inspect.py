"""`eoid cache inspect`: a cache's numbers, and a PNG grid of union crops with their
top-3 verbs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eoid.files import new_file, output_folder, write_json_atomic, writing
from eoid.teacher_cache.crops import crop_region, pad_to_square, union_boxes_np
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.stats import cache_stats


def run_inspect(
    cache: Path,
    png: Path | None = None,
    images: Path | None = None,
    num_samples: int = 16,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """Stats of a cache, and optionally a PNG grid of sample union crops with their
    top-3 verbs.

    `png`: the grid's file; `out`: a folder that gets stats.json and grid.png (both
    created with their folders, checked writable before any work).
    """
    if out is not None:
        out = output_folder(
            Path(out), "the inspect folder", inputs=[cache], owner="cache inspect"
        )
        png = png or out / "grid.png"
    elif png is not None:
        new_file(Path(png), "the PNG")
    reader = CacheReader(cache)
    stats = cache_stats(reader)
    if png is not None and len(reader.verb_probs):
        images = Path(images or reader.manifest["config"]["data"]["train_images"])
        _draw_grid(reader, images, Path(png), num_samples, np.random.default_rng(seed))
        stats["grid"] = str(png)
    if out is not None:
        write_json_atomic(Path(out) / "stats.json", stats, "the cache's stats")
        stats["stats"] = str(Path(out) / "stats.json")
    return stats


def _draw_grid(
    reader: CacheReader, images: Path, png: Path, num: int, rng: np.random.Generator
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = np.sort(
        rng.choice(
            len(reader.verb_probs), size=min(num, len(reader.verb_probs)), replace=False
        )
    )
    pair_image = np.searchsorted(reader.offsets, rows, side="right") - 1
    verbs = [v["name"] for v in reader.vocabulary["verbs"]]
    objects = [o["name"] for o in reader.vocabulary["objects"]]
    cols = int(np.ceil(np.sqrt(len(rows))))
    fig, axes = plt.subplots(
        -(-len(rows) // cols),
        cols,
        figsize=(3 * cols, 3.4 * -(-len(rows) // cols)),
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row, img in zip(axes.ravel(), rows, pair_image):
        with Image.open(images / reader.image_keys[img]) as im:
            union = union_boxes_np(reader.human_xyxy[row], reader.object_xyxy[row])[0]
            ax.imshow(pad_to_square(crop_region(im.convert("RGB"), union)))
        p = reader.verb_probs[row].astype(np.float32)
        top = np.argsort(-p)[:3]
        ax.set_title(
            f"{objects[reader.object_class[row]]}\n"
            + ", ".join(f"{verbs[v]} {p[v]:.2f}" for v in top if p[v] > 0),
            fontsize=7,
        )
    fig.tight_layout()
    with writing(png, "the PNG grid"):
        fig.savefig(png, dpi=80)
    plt.close(fig)
