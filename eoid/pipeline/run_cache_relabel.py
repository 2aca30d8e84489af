"""`eoid cache relabel`: new prompts, gamma or verb set for a cache, from its stored image embeddings.

Relabel writes a NEW cache folder (never edits one in place): the image embeddings are copied,
the prompts (template or vocabulary) and gamma change, and the verb distributions are
recomputed from the stored float16 embeddings with the text encoder alone. A new folder keeps
the old cache usable by runs that point to it, and a kill leaves only an unfinished new folder.
It also upgrades a cache of an older format (1: float16 verb rows) to the current one. Rows
recomputed from float16 embeddings are close to, not equal to, what `eoid cache-teacher` (and
the online teacher) compute from the encoder's float32 embeddings.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from eoid.config import TeacherConfig, check_value
from eoid.errors import CacheMismatchError
from eoid.files import FolderLock, output_folder, read_json, write_json_atomic
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary, vocabulary_from_json
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.distribution import pair_verb_probs
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.plan import CachePlan, ShardLayout


def relabel_probs(image_emb: np.ndarray, text_emb: torch.Tensor, object_class: np.ndarray,
                  vocab: Vocabulary, gamma: float, chunk: int = 65536) -> np.ndarray:
    """Verb distributions (P, V) float32 from stored embeddings (P, D) and new prompt embeddings."""
    valid = torch.from_numpy(vocab.teacher_valid_hois())
    out = [pair_verb_probs(torch.from_numpy(image_emb[i:i + chunk].astype(np.float32)), text_emb,
                           torch.from_numpy(object_class[i:i + chunk].astype(np.int64)), valid,
                           torch.from_numpy(vocab.hoi_to_verb), vocab.num_verbs, gamma).numpy()
           for i in range(0, len(image_emb), chunk)]
    return np.concatenate(out) if out else np.zeros((0, vocab.num_verbs), np.float32)


def run_relabel(cache: Path, out: Path, template: str | None = None, gamma: float | str | None = None,
                dataset: str | None = None, weights: str | None = None, device: str = "cpu") -> Path:
    """A new cache at `out` with new prompts / gamma / verb set, from `cache`'s image embeddings.

    gamma: a number, "model" (the weights' logit_scale.exp()), or None to keep the cache's.
    A format-1 cache (float16 rows, no checksums) is read too: its relabelled copy is current.
    """
    from eoid.teacher_cache.teacher import load_teacher, resolve_gamma
    out = Path(out)
    if (out / "manifest.json").exists() or (out.exists() and any(out.iterdir())):
        raise CacheMismatchError(f"{out}: exists and is not empty; relabel writes a new cache. "
                                 "Pass a new --out.")
    output_folder(out, "the relabelled cache")
    if gamma is not None:
        check_value(TeacherConfig, "gamma", gamma if gamma == "model" else float(gamma), "--gamma")
    if template is not None:
        check_value(TeacherConfig, "template", template, "--template")
    reader = CacheReader(cache, load_embeddings=True, formats=mf.RELABEL_READS)
    old, config = reader.fingerprint, json.loads(json.dumps(reader.manifest["config"]))
    vocab = load_vocabulary(dataset) if dataset else vocabulary_from_json(reader.vocabulary, f"{cache}")
    if vocab.objects != [o["name"] for o in reader.vocabulary["objects"]]:
        raise CacheMismatchError(f"{cache}: relabel can change verbs and HOIs, not objects; vocabulary "
                                 f"{dataset} has other objects. Build a new cache with `eoid cache-teacher`.")
    template = template or old["template"]
    teacher = load_teacher(config["teacher"]["model"], weights or config["teacher"]["weights"], device)
    if teacher.weights_id != old["weights"]:
        raise CacheMismatchError(f"{cache}: the image embeddings come from weights {old['weights']}, "
                                 f"the text encoder given is {teacher.weights_id}. Pass --clip-weights "
                                 "with the file the cache was built with.")
    resolved = old["gamma"] if gamma is None else resolve_gamma(gamma, teacher)
    prompts = vocab.prompts(template)
    text_emb = teacher.encode_texts(prompts).cpu()
    probs = relabel_probs(reader.image_emb, text_emb, reader.object_class, vocab, resolved)
    fingerprint = {**old, "format_version": mf.FORMAT_VERSION, "template": template, "gamma": resolved,
                   "vocabulary": vocab.fingerprint(),
                   "prompts_sha256": mf.prompts_sha256(prompts),
                   "excluded_verbs": [vocab.verbs[i] for i in vocab.teacher_excluded_verbs]}
    config["teacher"].update(template=template, gamma=config["teacher"]["gamma"] if gamma is None else gamma)
    if dataset:
        config["data"]["dataset"] = dataset
    layout = ShardLayout(**reader.manifest["layout"])
    meta = read_json(Path(cache) / "meta.json", CacheMismatchError)
    plan = CachePlan(image_keys=reader.image_keys, image_sizes=np.asarray(meta["image_sizes"]),
                     image_offsets=reader.offsets, pair_box_idx=reader.pair_box_idx,
                     human_xyxy=reader.human_xyxy, object_xyxy=reader.object_xyxy,
                     object_class=reader.object_class, labelled=reader.labelled)
    with FolderLock(out / ".lock-part-0-of-1"):
        (out / store.MARKER).touch()
        store.create_store(out, plan, layout, text_emb.numpy(),
                           {**meta, "prompts": prompts, "vocabulary": vocab.to_json()},
                           {"fingerprint": fingerprint, "layout": layout.to_json()})
        for s in range(layout.num_shards):
            lo, hi = layout.shard_range(s)
            store.write_shard(out, layout, s, reader.image_emb[lo:hi], probs[lo:hi])
        write_json_atomic(out / "manifest.json", {
            **reader.manifest, "format_version": mf.FORMAT_VERSION, "fingerprint": fingerprint,
            "config": config, "num_labelled_pairs": int(reader.labelled.sum()),
            "relabelled_from": str(cache), "checksums": store.collect_checksums(out, layout)})
    return out
