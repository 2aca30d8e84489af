"""Teacher rows for query pairs: vectorised IoU lookup, and a reader that holds a cache in RAM.

Phase 2 asks, per image, for the teacher distribution of each candidate pair: a cached pair of
the same object class whose min(IoU human, IoU object) reaches `min_iou` (0.5) gives its row;
the best-scoring such pair wins (first on ties). The reader loads the arrays once (~0.3 s for a
HICO-size cache); load it before forking DataLoader workers and they share the pages.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eoid.boxes import box_iou_np
from eoid.errors import CacheMismatchError
from eoid.files import read_json
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.plan import ShardLayout


def lookup_pairs(query_h: np.ndarray, query_o: np.ndarray, query_cls: np.ndarray,
                 cached_h: np.ndarray, cached_o: np.ndarray, cached_cls: np.ndarray,
                 cached_probs: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Verb distributions of N query pairs from M cached pairs of the same image.

    query_h, query_o: (N, 4), cached_h, cached_o: (M, 4) xyxy in the original image's pixels;
    query_cls (N,), cached_cls (M,) object classes; cached_probs (M, V).
    Returns verb_probs (N, V) float32 (zeros where missed) and hit (N,) bool.
    """
    num_queries, num_verbs = len(query_h), cached_probs.shape[1]
    probs = np.zeros((num_queries, num_verbs), dtype=np.float32)
    hit = np.zeros(num_queries, dtype=bool)
    if num_queries == 0 or len(cached_h) == 0:
        return probs, hit
    score = np.minimum(box_iou_np(query_h, cached_h), box_iou_np(query_o, cached_o))
    score[np.asarray(query_cls).reshape(-1, 1) != np.asarray(cached_cls).reshape(1, -1)] = -1.0
    best = score.argmax(axis=1)
    hit = score[np.arange(num_queries), best] >= min_iou
    probs[hit] = cached_probs[best[hit]]
    return probs, hit


def check_complete(path: Path, formats: tuple[int, ...] = (mf.FORMAT_VERSION,)) -> dict:
    """The manifest of a finished cache; an unfinished or foreign folder is a CacheMismatchError.

    formats: the format versions the caller reads (relabel also reads older ones).
    """
    path = Path(path)
    if (path / "manifest.json").is_file():
        manifest = read_json(path / "manifest.json")
        found = manifest.get("format_version")
        if found not in formats:
            upgrade = (f", or upgrade it: `eoid cache relabel {path} --out NEW` recomputes its verb rows "
                       "from its stored embeddings" if found in mf.RELABEL_READS else "")
            raise CacheMismatchError(
                f"{path}/manifest.json: cache format version {found!r}, this eoid reads version "
                f"{mf.FORMAT_VERSION}. Rebuild it with `eoid cache-teacher`{upgrade}.")
        return manifest
    if (path / "plan.json").is_file():
        plan = read_json(path / "plan.json")
        layout = ShardLayout(**plan["layout"])
        done = len(store.done_shards(path))
        raise CacheMismatchError(
            f"{path}: unfinished teacher cache ({done} of {layout.num_shards} shards written). "
            "Rerun `eoid cache-teacher` with the same arguments (every --part) to finish it.")
    raise CacheMismatchError(f"{path}: not a teacher cache (no manifest.json). "
                             "Pass the folder written by `eoid cache-teacher --out`.")


class CacheReader:
    """A finished teacher cache held in RAM; `lookup` costs microseconds per image."""

    def __init__(self, path: str | Path, min_iou: float = 0.5, load_embeddings: bool = False,
                 formats: tuple[int, ...] = (mf.FORMAT_VERSION,)):
        self.path = Path(path)
        self.manifest = check_complete(self.path, formats)
        self.min_iou = min_iou
        meta = read_json(self.path / "meta.json")
        self.image_keys: list[str] = meta["image_keys"]
        self.prompts: list[str] = meta["prompts"]
        self.vocabulary: dict = meta["vocabulary"]
        names = ("human_xyxy", "object_xyxy", "object_class", "verb_probs", "image_offsets",
                 "labelled", "pair_box_idx") + (("image_emb",) if load_embeddings else ())
        try:
            arrays = store.load_arrays(self.path, names)
        except (OSError, KeyError, ValueError) as err:
            raise CacheMismatchError(f"{self.path}: cache arrays unreadable ({err}). "
                                     "Run `eoid cache verify`, or rebuild the cache.") from None
        self.human_xyxy = arrays["human_xyxy"]
        self.object_xyxy = arrays["object_xyxy"]
        self.object_class = arrays["object_class"]
        self.verb_probs = arrays["verb_probs"]          # (P, V) float32
        self.offsets = arrays["image_offsets"]
        self.labelled = arrays["labelled"]
        self.pair_box_idx = arrays["pair_box_idx"]
        self.image_emb = arrays.get("image_emb")
        fp = self.manifest["fingerprint"]
        if len(self.offsets) != fp["num_images"] + 1 or int(self.offsets[-1]) != fp["num_pairs"] \
                or len(self.verb_probs) != fp["num_pairs"] or len(self.image_keys) != fp["num_images"]:
            raise CacheMismatchError(f"{self.path}: arrays do not match the manifest counts "
                                     f"({fp['num_images']} images, {fp['num_pairs']} pairs); the "
                                     "cache is truncated or mixed. Rebuild it.")
        self._index = {k: i for i, k in enumerate(self.image_keys)}

    @property
    def fingerprint(self) -> dict:
        return self.manifest["fingerprint"]

    @property
    def num_verbs(self) -> int:
        return self.verb_probs.shape[1]

    def require(self, expected: dict, fix: str, ignore: tuple[str, ...] = ()) -> None:
        """Refuse this cache (CacheMismatchError) if its fingerprint differs from `expected`."""
        mf.require_match(f"teacher cache {self.path}", self.fingerprint, expected, fix, ignore)

    def rows(self, key: str) -> slice:
        """The cache rows of one image; an image the cache does not hold is a CacheMismatchError."""
        i = self._index.get(key)
        if i is None:
            raise CacheMismatchError(f"{self.path}: image {key!r} is not in this teacher cache; it was "
                                     "built from other annotations. Rebuild it for this dataset.")
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def lookup(self, key: str, human_xyxy: np.ndarray, object_xyxy: np.ndarray,
               object_classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(verb_probs (N, V) float32, hit (N,) bool) for N query pairs of image `key` (original px)."""
        r = self.rows(key)
        return lookup_pairs(np.asarray(human_xyxy).reshape(-1, 4), np.asarray(object_xyxy).reshape(-1, 4),
                            np.asarray(object_classes).reshape(-1), self.human_xyxy[r],
                            self.object_xyxy[r], self.object_class[r], self.verb_probs[r],
                            self.min_iou)
