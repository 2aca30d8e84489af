"""`eoid cache verify`: a cache's integrity, and that it was built from a given dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eoid.errors import CacheMismatchError, ConfigError
from eoid.files import file_sha256
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary, vocabulary_from_json
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.plan import build_plan
from eoid.teacher_cache.stats import cache_stats


def run_verify(
    cache: Path,
    annotations: Path | None = None,
    images: Path | None = None,
    dataset: str | None = None,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Check a cache's integrity and, given a dataset, that it was built from that
    dataset.

    Integrity: every file against the checksums in manifest.json, the counts, and every
    row a teacher distribution (CacheReader). `images` defaults to the folder the cache
    was built from (its manifest). Returns a report; a problem raises CacheMismatchError
    listing all of them.
    """
    if images is not None and annotations is None:
        raise ConfigError(
            "cache verify --images DIR checks the dataset and needs --annotations FILE"
            " too."
        )
    reader = CacheReader(cache, verify_all=True)
    fp, problems = reader.fingerprint, []
    vocab = vocabulary_from_json(reader.vocabulary, f"{cache}/meta.json")
    if (np.diff(reader.offsets) < 0).any() or reader.offsets[0] != 0:
        problems.append("image offsets are not increasing from 0")
    if annotations is not None:
        if file_sha256(Path(annotations)) != fp["annotations_sha256"]:
            problems.append(
                f"annotation file {annotations} differs from the one the cache was"
                " built from"
            )
        if (
            dataset is not None
            and load_vocabulary(dataset).fingerprint() != fp["vocabulary"]
        ):
            problems.append(f"vocabulary {dataset} differs from the cache's")
        images = images or reader.manifest.get("config", {}).get("data", {}).get(
            "train_images"
        )
        if not images or not Path(images).is_dir():
            raise ConfigError(
                "cache verify --annotations FILE also needs the images the cache was"
                f" built from: the manifest's folder {images!r} is not here. Pass"
                " --images DIR."
            )
        records = read_annotations(
            Path(annotations), Path(images), vocab, skip_bad=skip_bad
        ).records
        plan = build_plan(records, vocab.human)
        if (
            plan.image_keys != reader.image_keys
            or not np.array_equal(plan.image_offsets, reader.offsets)
            or not np.array_equal(plan.human_xyxy, reader.human_xyxy)
            or not np.array_equal(plan.object_class, reader.object_class)
        ):
            problems.append(
                "the dataset's images or candidate pairs differ from the cache rows"
            )
    if problems:
        raise CacheMismatchError(
            f"{cache}: verify failed: "
            + "; ".join(problems)
            + ". Rebuild it with `eoid cache-teacher`."
        )
    return {"ok": True, **cache_stats(reader)}
