"""`eoid cache merge A B [C ...] --out M`: a teacher ensemble, one cache whose rows
combine its members'.

The members must hold the same pairs: same annotation file, vocabulary, teacher-excluded
verbs, candidate rule and counts (their fingerprints), and identical plan arrays (image
keys and sizes, offsets, boxes, classes, labelled flags). The first difference is named.
Rows are combined by teacher_cache/ensemble.py (`mean` or `geometric`, weights
normalised). The merged cache is an ordinary cache of the current format, written
through the same store code as any other: `eoid train`, `verify`, `inspect` and `export`
read it as they read any cache. Its verb_probs are the combined rows; its other teacher
columns (schema.TEACHER_COLUMNS: the image embeddings) and its text embeddings are the
FIRST member's (the store keeps one embedding per pair; they are what `inspect` and
`export` show), which its rows were not computed from, so `eoid cache relabel` refuses
it. Its fingerprint names the merge as its model, e.g. "merge(mean; RN50x16-quickgelu,
ViT-L-14-336-quickgelu)", and lists the members' per-teacher values; its manifest lists
every member's fingerprint and path. A kill leaves only an unfinished new folder; the
same command rerun finishes it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from eoid.errors import CacheMismatchError, ConfigError
from eoid.files import output_folder
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store, store_reads
from eoid.teacher_cache.coordination import write_derived
from eoid.teacher_cache.ensemble import RULES, combine_rows, normalised_weights
from eoid.teacher_cache.lookup import CacheReader, check_complete, teacher_valid_verbs
from eoid.teacher_cache.schema import PLAN_NAMES

# fingerprint keys that say which pairs a cache holds: members must agree on every one
ALIGNED = (
    "format_version",
    "vocabulary",
    "excluded_verbs",
    "annotations_sha256",
    "candidate_rule",
    "num_images",
    "num_pairs",
)


def parse_weights(text: str | None, num_members: int) -> list[float] | None:
    """--weights "w1,w2,...": one finite number >= 0 per member, not all 0 (None: equal
    weights).
    """
    if text is None:
        return None
    try:
        weights = [float(w) for w in str(text).split(",")]
    except ValueError:
        raise ConfigError(
            f"--weights {text!r}: give one number per cache, e.g. --weights 2,1"
        ) from None
    if len(weights) != num_members:
        raise ConfigError(
            f"--weights {text!r}: {len(weights)} weight(s) for {num_members} caches;"
            " give one per cache, in the order the caches are listed."
        )
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(
            f"--weights {text!r}: weights must be finite, at least 0, and not all 0."
        )
    return weights


def fingerprint_misalignment(first: dict, other: dict) -> str | None:
    """The first fingerprint field that says `other` holds other pairs than `first`, or
    None.
    """
    diffs = mf.compare_fingerprints(
        other, first, ignore=tuple(k for k in {**first, **other} if k not in ALIGNED)
    )
    return diffs[0] if diffs else None


def first_misalignment(first: CacheReader, other: CacheReader) -> str | None:
    """The first way `other` holds other pairs than `first` (a sentence), or None if
    they line up.
    """
    why = fingerprint_misalignment(first.fingerprint, other.fingerprint)
    if why:
        return why
    if other.image_keys != first.image_keys:
        i = next(
            i
            for i, (a, b) in enumerate(zip(other.image_keys, first.image_keys))
            if a != b
        )
        return f"image {i} is {other.image_keys[i]!r}, expected {first.image_keys[i]!r}"
    if other.image_sizes != first.image_sizes:
        i = next(
            i
            for i, (a, b) in enumerate(zip(other.image_sizes, first.image_sizes))
            if a != b
        )
        return (
            f"image {first.image_keys[i]!r} has size {other.image_sizes[i]}, "
            f"expected {first.image_sizes[i]}"
        )
    # the offsets, then every plan column the readers hold (schema.PLAN_COLUMNS)
    arrays = {
        "offsets": (other.offsets, first.offsets),
        **{
            n: (other.columns[n], first.columns[n])
            for n in PLAN_NAMES
            if n in first.columns
        },
    }
    for name, (a, b) in arrays.items():
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or not np.array_equal(a, b):
            row = (
                int(np.argmax((a != b).reshape(len(a), -1).any(1)))
                if a.shape == b.shape
                else 0
            )
            return f"{name} differs first at row {row}"
    return None


def merged_fingerprint(
    readers: list[CacheReader], rule: str, weights: np.ndarray
) -> dict:
    """The first member's pair fields, the merge as its model, each teacher field as the
    members' list.
    """
    fps = [r.fingerprint for r in readers]
    # every member's keys, in order
    keys = dict.fromkeys(k for fp in fps for k in fp)
    teacher_keys = [
        k
        for k in keys
        if k not in ALIGNED and k not in ("model", "merge_rule", "merge_weights")
    ]
    return {
        **{k: fps[0][k] for k in fps[0] if k in ALIGNED},
        "model": f"merge({rule}; {', '.join(fp['model'] for fp in fps)})",
        **{k: [fp.get(k) for fp in fps] for k in teacher_keys},
        "merge_rule": rule,
        "merge_weights": [float(w) for w in weights],
    }


def run_merge(
    caches: list[Path], out: Path, weights: str | None = None, rule: str = "mean"
) -> Path:
    """Write the merged cache of `caches` at `out` (weights "w1,w2,...", rule
    mean|geometric).
    """
    if len(caches) < 2:
        raise ConfigError("cache merge: give at least two caches to merge.")
    if rule not in RULES:
        raise ConfigError(f"--rule {rule!r}: choose one of {list(RULES)}.")
    w = normalised_weights(parse_weights(weights, len(caches)), len(caches))
    out = output_folder(
        Path(out),
        "the merged cache",
        inputs=caches,
        owner="cache merge",
        marker=store.MARKER,
        signs=mf.CACHE_SIGNS,
    )

    def refuse(cache: Path, why: str | None) -> None:
        if why:
            raise CacheMismatchError(
                f"{cache} does not hold the pairs of {caches[0]}: {why}. Merge caches "
                "built from the same annotation file and vocabulary."
            )

    # cheap: fingerprints before arrays
    manifests = [check_complete(Path(c)) for c in caches]
    for cache, manifest in zip(caches[1:], manifests[1:]):
        refuse(
            cache,
            fingerprint_misalignment(
                manifests[0]["fingerprint"], manifest["fingerprint"]
            ),
        )
    readers = [CacheReader(c, derive=i == 0) for i, c in enumerate(caches)]
    for cache, reader in zip(caches[1:], readers[1:]):
        refuse(cache, first_misalignment(readers[0], reader))
    first = readers[0]
    valid = teacher_valid_verbs(first.vocabulary, first.fingerprint["excluded_verbs"])[
        first.object_class
    ]
    merged = combine_rows([r.verb_probs for r in readers], w, rule, valid)
    fingerprint = merged_fingerprint(readers, rule, w)
    members = [
        {"path": str(c), "fingerprint": r.fingerprint} for c, r in zip(caches, readers)
    ]
    manifest = {
        "format_version": mf.FORMAT_VERSION,
        "complete": True,
        "fingerprint": fingerprint,
        "layout": first.manifest["layout"],
        "embed_dim": first.manifest.get("embed_dim"),
        "num_labelled_pairs": int(first.labelled.sum()),
        "config": {"data": first.manifest["config"].get("data", {})},
        "merge": {
            "rule": rule,
            "weights": [float(x) for x in w],
            "members": members,
            "embeddings_from": str(caches[0]),
        },
    }
    meta = {
        "image_keys": first.image_keys,
        "image_sizes": first.image_sizes,
        "prompts": first.prompts,
        "vocabulary": first.vocabulary,
    }
    store_reads.verify_files(first.path, first.manifest["checksums"], ("text_emb",))
    text_emb = store_reads.load_arrays(first.path, ("text_emb",))["text_emb"]
    return write_derived(
        out,
        first.plan(),
        first.layout,
        text_emb,
        meta,
        manifest,
        lambda lo, hi: {**first.teacher_rows(lo, hi), "verb_probs": merged[lo:hi]},
    )
