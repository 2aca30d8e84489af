"""What a finished cache holds, in numbers: counts, teacher entropy, mass per verb."""

from __future__ import annotations

from typing import Any

import numpy as np

from eoid.teacher_cache.lookup import CacheReader


def cache_stats(reader: CacheReader) -> dict[str, Any]:
    """Counts, mean teacher entropy (nats) and the share of teacher mass per verb."""
    probs = np.asarray(reader.verb_probs, dtype=np.float32)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)
    verbs = [v["name"] for v in reader.vocabulary["verbs"]]
    mass = probs.sum(0) / max(len(probs), 1)
    return {
        "images": len(reader.image_keys),
        "pairs": len(probs),
        "labelled_pairs": int(reader.labelled.sum()),
        "pairs_per_image_max": int(np.diff(reader.offsets).max(initial=0)),
        "mean_entropy_nats": float(entropy.mean()) if len(probs) else 0.0,
        "verb_mass": {
            v: round(float(m), 6)
            for v, m in sorted(zip(verbs, mass), key=lambda x: -x[1])
        },
    }


def format_stats(stats: dict[str, Any], top: int = 12) -> str:
    """The printed summary of `cache_stats` / `run_inspect`."""
    lines = [
        (
            f"images {stats['images']}, pairs {stats['pairs']}"
            f" ({stats['labelled_pairs']} labelled), at most"
            f" {stats['pairs_per_image_max']} pairs in one image"
        ),
        f"mean teacher entropy {stats['mean_entropy_nats']:.3f} nats",
        "teacher mass per verb (share of all pairs):",
    ]
    lines += [
        f"  {verb:<20} {mass:.4f}"
        for verb, mass in list(stats["verb_mass"].items())[:top]
    ]
    if "grid" in stats:
        lines.append(f"crop grid: {stats['grid']}")
    if "stats" in stats:
        lines.append(f"stats: {stats['stats']}")
    return "\n".join(lines)
