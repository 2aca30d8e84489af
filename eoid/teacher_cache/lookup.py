"""Teacher rows for query pairs: vectorised IoU lookup, and a reader that holds a cache
in RAM.

Phase 2 asks, per image, for the teacher distribution of each candidate pair: a cached
pair of the same object class whose min(IoU human, IoU object) reaches `min_iou` (0.5)
gives its row; the best-scoring such pair wins (first on ties). The reader loads the
arrays once (~0.3 s for a HICO-size cache); load it before forking DataLoader workers
and they share the pages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eoid.boxes import box_iou_np
from eoid.errors import CacheMismatchError
from eoid.files import read_json
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store, store_reads
from eoid.teacher_cache.distribution import (
    distribution_problems,
    valid_hoi_table,
    valid_verb_table,
)
from eoid.teacher_cache.plan import CachePlan, ShardLayout
from eoid.teacher_cache.schema import TEACHER_NAMES, TeacherRows


def lookup_pairs(
    query_h: np.ndarray,
    query_o: np.ndarray,
    query_cls: np.ndarray,
    cached_h: np.ndarray,
    cached_o: np.ndarray,
    cached_cls: np.ndarray,
    cached_probs: np.ndarray,
    min_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Verb distributions of N query pairs from M cached pairs of the same image.

    query_h, query_o: (N, 4), cached_h, cached_o: (M, 4) xyxy in the original image's
    pixels; query_cls (N,), cached_cls (M,) object classes; cached_probs (M, V). Returns
    verb_probs (N, V) float32 (zeros where missed) and hit (N,) bool.
    """
    num_queries, num_verbs = len(query_h), cached_probs.shape[1]
    probs = np.zeros((num_queries, num_verbs), dtype=np.float32)
    hit = np.zeros(num_queries, dtype=bool)
    if num_queries == 0 or len(cached_h) == 0:
        return probs, hit
    score = np.minimum(box_iou_np(query_h, cached_h), box_iou_np(query_o, cached_o))
    score[
        np.asarray(query_cls).reshape(-1, 1) != np.asarray(cached_cls).reshape(1, -1)
    ] = -1.0
    best = score.argmax(axis=1)
    hit = score[np.arange(num_queries), best] >= min_iou
    probs[hit] = cached_probs[best[hit]]
    return probs, hit


def check_complete(path: Path, formats: tuple[int, ...] = (mf.FORMAT_VERSION,)) -> dict:
    """The manifest of a finished cache; an unfinished, damaged or foreign folder is a
    CacheMismatchError.

    formats: the format versions the caller reads (relabel also reads older ones).
    """
    path = Path(path)
    if (path / "manifest.json").is_file():
        return mf.read_manifest(path, formats)
    if (path / "plan.json").is_file():
        plan = read_json(path / "plan.json", CacheMismatchError, mf.REBUILD)
        layout = ShardLayout(**plan["layout"])
        done = len(store.done_shards(path))
        raise CacheMismatchError(
            f"{path}: unfinished teacher cache ({done} of {layout.num_shards} shards"
            " written). Rerun `eoid cache-teacher` with the same arguments (every"
            " --part) to finish it."
        )
    raise CacheMismatchError(
        f"{path}: not a teacher cache (no manifest.json). "
        "Pass the folder written by `eoid cache-teacher --out`."
    )


def teacher_valid_verbs(vocabulary: dict, excluded_verbs: list[str]) -> np.ndarray:
    """(num_objects, V) bool from a cache's vocabulary JSON: verbs its rows may give
    mass, per object.
    """
    verbs = [v["name"] for v in vocabulary["verbs"]]
    # (verb, object) per HOI
    hois = np.asarray(vocabulary["hois"], dtype=np.int64).reshape(-1, 2)
    excluded = [verbs.index(v) for v in excluded_verbs if v in verbs]
    valid_hoi = valid_hoi_table(
        hois[:, 1], hois[:, 0], len(vocabulary["objects"]), excluded
    )
    return valid_verb_table(valid_hoi, hois[:, 0], len(verbs))


class CacheReader:
    """A finished teacher cache held in RAM; `lookup` costs microseconds per image."""

    def __init__(
        self,
        path: str | Path,
        min_iou: float = 0.5,
        load_embeddings: bool = False,
        verify_all: bool = False,
        formats: tuple[int, ...] = (mf.FORMAT_VERSION,),
        derive: bool = False,
    ):
        """Open and check a cache: the checksums of every file it reads (of every
        file with `verify_all`), the counts, and that every row is a teacher
        distribution. `formats`: the format versions read (relabel also reads format
        1, whose files carry no checksums). load_embeddings: also load the teacher
        columns training does not read (image_emb) whole. derive: check those columns
        here but leave them on disk; `teacher_rows` reads the range it is asked for,
        so a cache derived from this one (relabel, merge) holds one shard of them at
        a time, not all (332k RN50x16 embeddings are 0.5 GB)."""
        self.path = Path(path)
        self.manifest = check_complete(self.path, formats)
        self.min_iou = min_iou
        names = (
            "human_xyxy",
            "object_xyxy",
            "object_class",
            "verb_probs",
            "image_offsets",
            "labelled",
            "pair_box_idx",
        )
        rest = tuple(n for n in TEACHER_NAMES if n not in names)
        if load_embeddings:
            names, rest = names + rest, ()
        # read a range at a time by teacher_rows
        self._on_disk = rest if derive else ()
        if "checksums" in self.manifest:
            store_reads.verify_files(
                self.path,
                self.manifest["checksums"],
                None if verify_all else names + self._on_disk,
            )
        meta = read_json(self.path / "meta.json", CacheMismatchError, mf.REBUILD)
        self.image_keys: list[str] = meta["image_keys"]
        # (width, height) px per image
        self.image_sizes: list[list[int]] = meta["image_sizes"]
        self.prompts: list[str] = meta["prompts"]
        self.vocabulary: dict = meta["vocabulary"]
        try:
            arrays = store_reads.load_arrays(self.path, names)
            store_reads.require_shard_files(self.path, self._on_disk)
        except (
            OSError,
            KeyError,
            ValueError,
            RuntimeError,
            IndexError,
            TypeError,
        ) as err:
            raise CacheMismatchError(
                f"{self.path}: cache arrays unreadable ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}). "
                f"{mf.REBUILD}"
            ) from None
        self.human_xyxy = arrays["human_xyxy"]
        self.object_xyxy = arrays["object_xyxy"]
        self.object_class = arrays["object_class"]
        self.verb_probs = arrays["verb_probs"]  # (P, V) float32
        self.offsets = arrays["image_offsets"]
        self.labelled = arrays["labelled"]
        self.pair_box_idx = arrays["pair_box_idx"]
        # (P, D) float16, with load_embeddings
        self.image_emb = arrays.get("image_emb")
        # every per-pair column loaded, by its schema name
        self.columns: dict[str, np.ndarray] = {
            n: a for n, a in arrays.items() if n != "image_offsets"
        }
        fp = self.manifest["fingerprint"]
        num_images, num_pairs = fp.get("num_images", -1), fp.get("num_pairs", -1)
        if (
            len(self.offsets) != num_images + 1
            or int(self.offsets[-1]) != num_pairs
            or len(self.verb_probs) != num_pairs
            or len(self.image_keys) != num_images
        ):
            raise CacheMismatchError(
                f"{self.path}: arrays do not match the manifest counts "
                f"({num_images} images, {num_pairs} pairs); the "
                "cache is truncated or mixed. Rebuild it."
            )
        problems = distribution_problems(
            self.verb_probs,
            self.object_class,
            teacher_valid_verbs(
                self.vocabulary, self.fingerprint.get("excluded_verbs", [])
            ),
        )
        if problems:
            raise CacheMismatchError(
                f"{self.path}: the stored teacher rows are not distributions: "
                f"{'; '.join(problems)}. Rebuild it with `eoid cache-teacher` "
                "(and a finite teacher.gamma)."
            )
        self._index = {k: i for i, k in enumerate(self.image_keys)}

    @property
    def fingerprint(self) -> dict:
        return self.manifest["fingerprint"]

    @property
    def num_verbs(self) -> int:
        return self.verb_probs.shape[1]

    @property
    def layout(self) -> ShardLayout:
        return ShardLayout(**self.manifest["layout"])

    def plan(self) -> CachePlan:
        """The cache's rows as a plan (the columns fixed before the teacher ran): a
        derived cache's.
        """
        return CachePlan(
            image_keys=self.image_keys,
            image_sizes=np.asarray(self.image_sizes, np.int64),
            image_offsets=self.offsets,
            pair_box_idx=self.pair_box_idx,
            human_xyxy=self.human_xyxy,
            object_xyxy=self.object_xyxy,
            object_class=self.object_class,
            labelled=self.labelled,
        )

    def teacher_rows(self, lo: int, hi: int) -> TeacherRows:
        """Every teacher column (schema.TEACHER_COLUMNS) of rows lo:hi: what a cache
        derived from this one copies (a reader opened with load_embeddings or
        derive)."""
        read = store_reads.load_rows(self.path, self._on_disk, lo, hi)
        return {
            name: read[name] if name in read else self.columns[name][lo:hi]
            for name in TEACHER_NAMES
        }

    def require(self, expected: dict, fix: str, ignore: tuple[str, ...] = ()) -> None:
        """Refuse this cache (CacheMismatchError) if its fingerprint differs from
        `expected`.
        """
        mf.require_match(
            f"teacher cache {self.path}", self.fingerprint, expected, fix, ignore
        )

    def rows(self, key: str) -> slice:
        """The cache rows of one image; an image the cache does not hold is a
        CacheMismatchError.
        """
        i = self._index.get(key)
        if i is None:
            raise CacheMismatchError(
                f"{self.path}: image {key!r} is not in this teacher cache; it was "
                "built from other annotations. Rebuild it for this dataset."
            )
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def lookup(
        self,
        key: str,
        human_xyxy: np.ndarray,
        object_xyxy: np.ndarray,
        object_classes: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(verb_probs (N, V) float32, hit (N,) bool) for N query pairs of image `key`
        (original px).
        """
        r = self.rows(key)
        return lookup_pairs(
            np.asarray(human_xyxy).reshape(-1, 4),
            np.asarray(object_xyxy).reshape(-1, 4),
            np.asarray(object_classes).reshape(-1),
            self.human_xyxy[r],
            self.object_xyxy[r],
            self.object_class[r],
            self.verb_probs[r],
            self.min_iou,
        )
