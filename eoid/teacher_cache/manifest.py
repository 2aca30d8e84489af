"""The cache's self-description: format version and the fingerprint a reader checks.

The fingerprint holds everything the stored rows depend on (teacher, weights, prompts, gamma,
crop preprocessing, vocabulary, annotation file, counts). Two caches with equal fingerprints
hold the same teacher labels; a phase given a cache whose fingerprint differs from what it
expects refuses it, saying what differs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from eoid.errors import CacheMismatchError
from eoid.files import read_json

# 2: the manifest records a sha256 per file (checksums), checked whenever a cache is opened
FORMAT_VERSION = 2
REBUILD = "Copy the cache again, or rebuild it with `eoid cache-teacher`."
CANDIDATE_RULE = "every human box x every other box, exact duplicates removed (v1)"

_LABELS = {
    "format_version": "cache format version",
    "model": "CLIP model",
    "weights": "CLIP weights",
    "template": "prompt template",
    "prompts_sha256": "prompts",
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


def prompts_sha256(prompts: list[str]) -> str:
    """Hex sha256 of the prompt texts, in order (what the text embeddings depend on)."""
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()


def make_fingerprint(*, model: str, weights: str, template: str, prompts_sha256: str, gamma: float,
                     crop: dict, precision: str, vocabulary: str, excluded_verbs: list[str],
                     annotations_sha256: str, num_images: int, num_pairs: int) -> dict[str, Any]:
    """The fingerprint as a plain JSON-able dict (keys in a fixed order)."""
    return {"format_version": FORMAT_VERSION, "model": model, "weights": weights,
            "template": template, "prompts_sha256": prompts_sha256, "gamma": float(gamma),
            "crop": crop, "precision": precision, "vocabulary": vocabulary,
            "excluded_verbs": list(excluded_verbs), "annotations_sha256": annotations_sha256,
            "candidate_rule": CANDIDATE_RULE, "num_images": int(num_images),
            "num_pairs": int(num_pairs)}


def compare_fingerprints(found: dict[str, Any], expected: dict[str, Any],
                         ignore: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences, e.g. "CLIP model: cache has 'RN50', expected 'RN50x16'"."""
    out = []
    for key in list(dict.fromkeys([*expected, *found])):
        if key in ignore:
            continue
        a, b = found.get(key, "<missing>"), expected.get(key, "<missing>")
        if a != b:
            out.append(f"{_LABELS.get(key, key)}: cache has {a!r}, expected {b!r}")
    return out


def require_match(where: str, found: dict[str, Any], expected: dict[str, Any], fix: str,
                  ignore: tuple[str, ...] = ()) -> None:
    """Raise CacheMismatchError listing every difference, or return if the fingerprints agree."""
    diffs = compare_fingerprints(found, expected, ignore)
    if diffs:
        raise CacheMismatchError(f"{where} does not fit this run: " + "; ".join(diffs) + f". {fix}")


def read_manifest(path: Path) -> dict[str, Any]:
    """A finished cache's manifest.json, refused (CacheMismatchError) if damaged or of another version."""
    file = Path(path) / "manifest.json"
    manifest = read_json(file, CacheMismatchError, REBUILD)
    if not isinstance(manifest, dict):
        raise CacheMismatchError(f"{file} is not a JSON object. {REBUILD}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        older = " (written by an older eoid, without the checksums that prove its bytes)" \
            if isinstance(version, int) and version < FORMAT_VERSION else ""
        raise CacheMismatchError(f"{file}: cache format version {version!r}{older}, this eoid reads version "
                                 f"{FORMAT_VERSION}. Rebuild it with `eoid cache-teacher`.")
    missing = [k for k in ("fingerprint", "layout", "checksums", "config")
               if not isinstance(manifest.get(k), dict)]
    if missing:
        raise CacheMismatchError(f"{file} lacks {', '.join(missing)}: it was edited or cut short. {REBUILD}")
    return manifest
