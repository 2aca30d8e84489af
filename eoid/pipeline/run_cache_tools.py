"""Cache tools: `eoid cache inspect`, `cache verify` and `cache relabel`.

Relabel writes a NEW cache folder (never edits one in place): the image embeddings are copied,
the prompts (template or vocabulary) and gamma change, and the verb distributions are
recomputed from the stored float16 embeddings with the text encoder alone. A new folder keeps
the old cache usable by runs that point to it, and a kill leaves only an unfinished new folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eoid.errors import CacheMismatchError
from eoid.pipeline.run_cache import build_plan, read_records
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary, vocabulary_from_json
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.crops import crop_region, pad_to_square, union_boxes_np
from eoid.teacher_cache.distribution import pair_verb_probs, valid_hoi_table
from eoid.teacher_cache.lock import FolderLock
from eoid.teacher_cache.lookup import CacheReader

log = logging.getLogger(__name__)


def _excluded(vocab: Vocabulary) -> list[int]:
    return [] if vocab.no_interaction is None else [vocab.no_interaction]


def cache_stats(reader: CacheReader) -> dict[str, Any]:
    """Counts, mean teacher entropy (nats) and the share of teacher mass per verb."""
    probs = reader.verb_probs.astype(np.float32)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)
    verbs = [v["name"] for v in reader.vocabulary["verbs"]]
    mass = probs.sum(0) / max(len(probs), 1)
    return {"images": len(reader.image_keys), "pairs": len(probs),
            "labelled_pairs": int(reader.labelled.sum()),
            "pairs_per_image_max": int(np.diff(reader.offsets).max(initial=0)),
            "mean_entropy_nats": float(entropy.mean()) if len(probs) else 0.0,
            "verb_mass": {v: round(float(m), 6) for v, m in sorted(zip(verbs, mass), key=lambda x: -x[1])}}


def format_stats(stats: dict[str, Any], top: int = 12) -> str:
    """The printed summary of `cache_stats` / `run_inspect`."""
    lines = [f"images {stats['images']}, pairs {stats['pairs']} ({stats['labelled_pairs']} labelled), "
             f"at most {stats['pairs_per_image_max']} pairs in one image",
             f"mean teacher entropy {stats['mean_entropy_nats']:.3f} nats",
             "teacher mass per verb (share of all pairs):"]
    lines += [f"  {verb:<20} {mass:.4f}" for verb, mass in list(stats["verb_mass"].items())[:top]]
    if "grid" in stats:
        lines.append(f"crop grid: {stats['grid']}")
    return "\n".join(lines)


def run_inspect(cache: Path, png: Path | None = None, images: Path | None = None,
                num_samples: int = 16, seed: int = 0) -> dict[str, Any]:
    """Stats of a cache, and optionally a PNG grid of sample union crops with their top-3 verbs."""
    reader = CacheReader(cache)
    stats = cache_stats(reader)
    if png is not None and len(reader.verb_probs):
        images = Path(images or reader.manifest["config"]["data"]["train_images"])
        _draw_grid(reader, images, Path(png), num_samples, np.random.default_rng(seed))
        stats["grid"] = str(png)
    return stats


def _draw_grid(reader: CacheReader, images: Path, png: Path, num: int, rng: np.random.Generator) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    rows = np.sort(rng.choice(len(reader.verb_probs), size=min(num, len(reader.verb_probs)), replace=False))
    pair_image = np.searchsorted(reader.offsets, rows, side="right") - 1
    verbs = [v["name"] for v in reader.vocabulary["verbs"]]
    objects = [o["name"] for o in reader.vocabulary["objects"]]
    cols = int(np.ceil(np.sqrt(len(rows))))
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(3 * cols, 3.4 * -(-len(rows) // cols)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row, img in zip(axes.ravel(), rows, pair_image):
        with Image.open(images / reader.image_keys[img]) as im:
            union = union_boxes_np(reader.human_xyxy[row], reader.object_xyxy[row])[0]
            ax.imshow(pad_to_square(crop_region(im.convert("RGB"), union)))
        p = reader.verb_probs[row].astype(np.float32)
        top = np.argsort(-p)[:3]
        ax.set_title(f"{objects[reader.object_class[row]]}\n" +
                     ", ".join(f"{verbs[v]} {p[v]:.2f}" for v in top if p[v] > 0), fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def run_verify(cache: Path, annotations: Path | None = None, images: Path | None = None,
               dataset: str | None = None, skip_bad: bool = False) -> dict[str, Any]:
    """Check a cache's integrity and, given a dataset, that it was built from that dataset.

    Returns a report; any problem raises CacheMismatchError listing all of them.
    """
    reader = CacheReader(cache)
    fp, problems = reader.fingerprint, []
    probs = reader.verb_probs.astype(np.float32)
    vocab = vocabulary_from_json(reader.vocabulary, f"{cache}/meta.json")
    if not np.isfinite(probs).all():
        problems.append("verb_probs hold NaN or infinite values")
    sums = probs.sum(1)
    if not (np.isclose(sums, 1, atol=5e-3) | (sums == 0)).all():
        problems.append(f"{int((~np.isclose(sums, 1, atol=5e-3)).sum())} rows do not sum to 1")
    if _excluded(vocab) and (probs[:, _excluded(vocab)] != 0).any():
        problems.append("teacher mass on no_interaction")
    if (np.diff(reader.offsets) < 0).any() or reader.offsets[0] != 0:
        problems.append("image offsets are not increasing from 0")
    if annotations is not None:
        from eoid.config import CacheConfig, DataConfig
        if mf.file_sha256(Path(annotations)) != fp["annotations_sha256"]:
            problems.append(f"annotation file {annotations} differs from the one the cache was built from")
        if dataset is not None and load_vocabulary(dataset).fingerprint() != fp["vocabulary"]:
            problems.append(f"vocabulary {dataset} differs from the cache's")
        cfg = CacheConfig(data=DataConfig(dataset=dataset or f"{cache}/meta.json", skip_bad=skip_bad,
                                          train_annotations=str(annotations), train_images=str(images or "")))
        plan = build_plan(read_records(cfg, vocab)[0], vocab.human)
        if plan.image_keys != reader.image_keys or not np.array_equal(plan.image_offsets, reader.offsets) \
                or not np.array_equal(plan.human_xyxy, reader.human_xyxy) \
                or not np.array_equal(plan.object_class, reader.object_class):
            problems.append("the dataset's images or candidate pairs differ from the cache rows")
    if problems:
        raise CacheMismatchError(f"{cache}: verify failed: " + "; ".join(problems) +
                                 ". Rebuild it with `eoid cache-teacher`.")
    return {"ok": True, **cache_stats(reader)}


def relabel_probs(image_emb: np.ndarray, text_emb: torch.Tensor, object_class: np.ndarray,
                  vocab: Vocabulary, gamma: float, chunk: int = 65536) -> np.ndarray:
    """Verb distributions (P, V) float16 from stored embeddings (P, D) and new prompt embeddings."""
    valid = torch.from_numpy(valid_hoi_table(vocab.hoi_to_object, vocab.hoi_to_verb,
                                             vocab.num_objects, _excluded(vocab)))
    out = [pair_verb_probs(torch.from_numpy(image_emb[i:i + chunk].astype(np.float32)), text_emb,
                           torch.from_numpy(object_class[i:i + chunk].astype(np.int64)), valid,
                           torch.from_numpy(vocab.hoi_to_verb), vocab.num_verbs, gamma).numpy()
           for i in range(0, len(image_emb), chunk)]
    return np.concatenate(out).astype(np.float16) if out else np.zeros((0, vocab.num_verbs), np.float16)


def run_relabel(cache: Path, out: Path, template: str | None = None, gamma: float | None = None,
                dataset: str | None = None, weights: str | None = None, device: str = "cpu") -> Path:
    """A new cache at `out` with new prompts / gamma / verb set, from `cache`'s image embeddings."""
    from eoid.teacher_cache.teacher import load_teacher
    reader = CacheReader(cache, load_embeddings=True)
    old, config = reader.fingerprint, json.loads(json.dumps(reader.manifest["config"]))
    vocab = load_vocabulary(dataset) if dataset else vocabulary_from_json(reader.vocabulary, f"{cache}")
    if vocab.objects != [o["name"] for o in reader.vocabulary["objects"]]:
        raise CacheMismatchError(f"{cache}: relabel can change verbs and HOIs, not objects; vocabulary "
                                 f"{dataset} has other objects. Build a new cache with `eoid cache-teacher`.")
    template = template or old["template"]
    gamma = old["gamma"] if gamma is None else float(gamma)
    teacher = load_teacher(config["teacher"]["model"], weights or config["teacher"]["weights"], device)
    if teacher.weights_id != old["weights"]:
        raise CacheMismatchError(f"{cache}: the image embeddings come from weights {old['weights']}, "
                                 f"the text encoder given is {teacher.weights_id}. Pass --clip-weights "
                                 "with the file the cache was built with.")
    prompts = vocab.prompts(template)
    text_emb = teacher.encode_texts(prompts).cpu()
    probs = relabel_probs(reader.image_emb, text_emb, reader.object_class, vocab, gamma)
    fingerprint = {**old, "template": template, "gamma": gamma, "vocabulary": vocab.fingerprint(),
                   "prompts_sha256": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
                   "excluded_verbs": [vocab.verbs[i] for i in _excluded(vocab)]}
    config["teacher"].update(template=template, gamma=gamma)
    if dataset:
        config["data"]["dataset"] = dataset
    layout = store.Layout(**reader.manifest["layout"])
    meta = store.read_json(Path(cache) / "meta.json")
    plan = store.CachePlan(image_keys=reader.image_keys, image_sizes=np.asarray(meta["image_sizes"]),
                           image_offsets=reader.offsets, pair_box_idx=reader.pair_box_idx,
                           human_xyxy=reader.human_xyxy, object_xyxy=reader.object_xyxy,
                           object_class=reader.object_class, labelled=reader.labelled)
    out = Path(out)
    if (out / "manifest.json").exists() or (out.exists() and any(out.iterdir())):
        raise CacheMismatchError(f"{out}: exists and is not empty; relabel writes a new cache. "
                                 "Pass a new --out.")
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out / ".lock-part-0-of-1"):
        (out / store.MARKER).touch()
        store.create_store(out, plan, layout, text_emb.numpy(),
                           {**meta, "prompts": prompts, "vocabulary": vocab.to_json()},
                           {"fingerprint": fingerprint, "layout": layout.to_json()})
        for s in range(layout.num_shards):
            lo, hi = layout.shard_range(s)
            store.write_shard(out, layout, s, reader.image_emb[lo:hi], probs[lo:hi])
        store.write_json_atomic(out / "manifest.json", {
            **reader.manifest, "fingerprint": fingerprint, "config": config,
            "num_labelled_pairs": int(reader.labelled.sum()), "relabelled_from": str(cache)})
    return out
