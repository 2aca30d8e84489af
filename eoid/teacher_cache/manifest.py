"""The cache's self-description: format version and the fingerprint a reader checks.

The fingerprint holds everything the stored rows depend on (teacher, weights, prompts,
gamma, crop preprocessing, vocabulary, annotation file, counts). Two caches with equal
fingerprints hold the same teacher labels; a phase given a cache whose fingerprint
differs from what it expects refuses it, saying what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from eoid.errors import CacheMismatchError
from eoid.files import read_json

# 2: the manifest records a sha256 per file (checksums), checked whenever a cache is
# opened, and
#    verb_probs are stored as float32 (1: no checksums; float16 rows, which rounded p >
#    0.99976 to 1)
FORMAT_VERSION = 2
# files that show a folder is a teacher cache even where its marker is gone (zarr's
# creation clears the folder): `eoid.files.output_folder` lets cache commands resume
# such a folder
CACHE_SIGNS = ("zarr.json", "plan.json")
# formats `eoid cache relabel` can read (it recomputes verb_probs)
RELABEL_READS = (1, 2)
REBUILD = "Copy the cache again, or rebuild it with `eoid cache-teacher`."
CANDIDATE_RULE = "every human box x every other box, exact duplicates removed (v1)"

_LABELS = {
    "format_version": "cache format version",
    "model": "CLIP model",
    "weights": "CLIP weights",
    "template": "prompt template",
    "prompts_sha256": "prompts",
    "descriptions_sha256": "descriptions file",
    "merge_rule": "merge rule",
    "merge_weights": "merge weights",
    "gamma": "gamma",
    "crop": "crop preprocessing",
    "precision": "teacher precision",
    "vocabulary": "vocabulary fingerprint",
    "excluded_verbs": "verbs the teacher gives no mass",
    "annotations_sha256": "annotation file (sha256)",
    "candidate_rule": "candidate-pair rule",
    "num_images": "image count",
    "num_pairs": "pair count",
}


def prompts_sha256(prompts: list[str] | list[list[str]]) -> str:
    """Hex sha256 of the prompt texts, in order (what the text embeddings depend on).

    prompts: one text per HOI, or one prompt set (list of texts) per HOI; sets of one
    text hash as the flat list, so a single template keeps the hash caches have always
    recorded.
    """
    if all(isinstance(p, list) and len(p) == 1 for p in prompts):
        prompts = [p[0] for p in prompts]  # type: ignore[index]
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()


def make_fingerprint(
    *,
    model: str,
    weights: str,
    template: str,
    prompts_sha256: str,
    gamma: float,
    crop: dict,
    precision: str,
    vocabulary: str,
    excluded_verbs: list[str],
    annotations_sha256: str,
    num_images: int,
    num_pairs: int,
) -> dict[str, Any]:
    """The fingerprint as a plain JSON-able dict (keys in a fixed order)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model,
        "weights": weights,
        "template": template,
        "prompts_sha256": prompts_sha256,
        "gamma": float(gamma),
        "crop": crop,
        "precision": precision,
        "vocabulary": vocabulary,
        "excluded_verbs": list(excluded_verbs),
        "annotations_sha256": annotations_sha256,
        "candidate_rule": CANDIDATE_RULE,
        "num_images": int(num_images),
        "num_pairs": int(num_pairs),
    }


def compare_fingerprints(
    found: dict[str, Any], expected: dict[str, Any], ignore: tuple[str, ...] = ()
) -> list[str]:
    """Human-readable differences, e.g. "CLIP model: cache has 'RN50', expected
    'RN50x16'".
    """
    out = []
    for key in list(dict.fromkeys([*expected, *found])):
        if key in ignore:
            continue
        a, b = found.get(key, "<missing>"), expected.get(key, "<missing>")
        if a != b:
            out.append(f"{_LABELS.get(key, key)}: cache has {a!r}, expected {b!r}")
    return out


def require_match(
    where: str,
    found: dict[str, Any],
    expected: dict[str, Any],
    fix: str,
    ignore: tuple[str, ...] = (),
) -> None:
    """Raise CacheMismatchError listing every difference, or return if the fingerprints
    agree.
    """
    diffs = compare_fingerprints(found, expected, ignore)
    if diffs:
        raise CacheMismatchError(
            f"{where} does not fit this run: " + "; ".join(diffs) + f". {fix}"
        )


def read_manifest(
    path: Path, formats: tuple[int, ...] = (FORMAT_VERSION,)
) -> dict[str, Any]:
    """A finished cache's manifest.json, refused (CacheMismatchError) if damaged or of
    another version.

    formats: the format versions the caller reads (relabel also reads format 1, which
    has no checksums and float16 verb rows, to upgrade it).
    """
    file = Path(path) / "manifest.json"
    manifest = read_json(file, CacheMismatchError, REBUILD)
    if not isinstance(manifest, dict):
        raise CacheMismatchError(f"{file} is not a JSON object. {REBUILD}")
    version = manifest.get("format_version")
    if version not in formats:
        upgrade = (
            f", or upgrade it: `eoid cache relabel {path} --out NEW` recomputes its"
            " verb rows from its stored embeddings"
            if version in RELABEL_READS
            else ""
        )
        older = (
            " (An older eoid wrote it: float16 verb rows, no checksums to prove its"
            " bytes.)"
            if isinstance(version, int) and version < FORMAT_VERSION
            else ""
        )
        raise CacheMismatchError(
            f"{file}: cache format version {version!r}, this eoid reads version "
            f"{FORMAT_VERSION}. Rebuild it with `eoid cache-teacher`{upgrade}.{older}"
        )
    required = ("fingerprint", "layout", "config") + (
        ("checksums",) if version >= 2 else ()
    )
    missing = [k for k in required if not isinstance(manifest.get(k), dict)]
    if missing:
        raise CacheMismatchError(
            f"{file} lacks {', '.join(missing)}: it was edited or cut short. {REBUILD}"
        )
    return manifest
