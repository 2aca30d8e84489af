"""Saved predictions (JSON) and evaluation results (results.json, printed table): the
I/O edge.

Predictions file: a list, one entry per image,

    [{"file_name": "HICO_test2015_00000001.jpg",
      "triplets": [{"human_box": [x1, y1, x2, y2], "object_box": [x1, y1, x2, y2],
                    "object": 4, "verb": 76, "score": 0.93}, ...]}, ...]

boxes in pixels of the original image, `object` and `verb` 0-based indices into the
vocabulary. Images of the annotations that are missing from the file have no
predictions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Collection, Mapping, NamedTuple

import numpy as np

from eoid.errors import DataError
from eoid.files import write_text_atomic
from eoid.pipeline.evaluation.ap_arithmetic import harmonic_mean
from eoid.pipeline.evaluation.hico_map import (
    HoiMapResult,
    ImageDetections,
    detections_from_triplets,
)
from eoid.pipeline.evaluation.speed import format_speed

MAP_GROUPS = ("full", "rare", "non_rare", "seen", "unseen")
# results.json "mAP" keys: the groups, then the harmonic mean of Seen and Unseen
MAP_COLUMNS = (*MAP_GROUPS, "hm")
COLUMN_LABELS = {
    "full": "Full",
    "rare": "Rare",
    "non_rare": "Non-rare",
    "seen": "Seen",
    "unseen": "Unseen",
    "hm": "HM",
}


class ImageTriplets(NamedTuple):
    """Predicted triplets of one image, as the predictions file holds them."""

    human_boxes_xyxy: np.ndarray  # (T, 4) float64, px of the original image
    object_boxes_xyxy: np.ndarray  # (T, 4) float64, px
    object_idx: np.ndarray  # (T,) int64 vocabulary object index
    verb_idx: np.ndarray  # (T,) int64 vocabulary verb index
    scores: np.ndarray  # (T,) float64


def _triplet_problem(t: object, num_verbs: int, num_objects: int) -> str | None:
    """What is wrong with one triplet dict, or None."""
    if not isinstance(t, dict):
        return "is not an object with human_box, object_box, object, verb, score"
    missing = {"human_box", "object_box", "object", "verb", "score"} - t.keys()
    if missing:
        return f"lacks the key(s) {sorted(missing)}"
    for name in ("human_box", "object_box"):
        box = t[name]
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(
                isinstance(x, (int, float))
                and not isinstance(x, bool)
                and math.isfinite(x)
                for x in box
            )
        ):
            return (
                f"has {name} {box!r}, not a list of 4 finite numbers [x1, y1, x2, y2]"
            )
        if box[2] < box[0] or box[3] < box[1]:
            return (
                f"has {name} {box!r} with x2 < x1 or y2 < y1 (boxes are [x1, y1, x2,"
                " y2] in pixels)"
            )
    for name, size in (("object", num_objects), ("verb", num_verbs)):
        value = t[name]
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value < size
        ):
            return f"has {name} {value!r}, not a 0-based index in 0..{size - 1}"
    score = t["score"]
    if (
        not isinstance(score, (int, float))
        or isinstance(score, bool)
        or not math.isfinite(score)
    ):
        return f"has score {score!r}, not a finite number"
    return None


def parse_predictions(
    raw: object,
    where: str,
    num_verbs: int,
    num_objects: int,
    known_file_names: Collection[str] | None = None,
) -> dict[str, ImageTriplets]:
    """Check and convert a parsed predictions list; every problem is a DataError naming
    its record.
    """
    if not isinstance(raw, list):
        raise DataError(
            f'{where}: expected a JSON list of {{"file_name", "triplets"}} objects, '
            f"got {type(raw).__name__}. "
            "See eoid/pipeline/evaluation/predictions_io.py for the format."
        )
    known = None if known_file_names is None else set(known_file_names)
    out: dict[str, ImageTriplets] = {}
    for i, rec in enumerate(raw):
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("file_name"), str)
            or not isinstance(rec.get("triplets"), list)
        ):
            raise DataError(
                f'{where}: record {i} needs a string "file_name" and a list "triplets".'
                " Fix that record."
            )
        name = rec["file_name"]
        if known is not None and name not in known:
            raise DataError(
                f"{where}: record {i} ({name}): this file_name is not in the"
                " annotations. Check that the predictions belong to this test set"
                " (file names as in the annotation file, without folders), or remove"
                " the record."
            )
        if name in out:
            raise DataError(
                f"{where}: record {i} ({name}): a second record for the same image. "
                "Merge its triplets into the first record."
            )
        ts = rec["triplets"]
        for j, t in enumerate(ts):
            problem = _triplet_problem(t, num_verbs, num_objects)
            if problem:
                raise DataError(
                    f"{where}: record {i} ({name}): triplet {j} {problem}. "
                    "Fix or remove that triplet."
                )
        out[name] = ImageTriplets(
            np.array([t["human_box"] for t in ts], dtype=np.float64).reshape(-1, 4),
            np.array([t["object_box"] for t in ts], dtype=np.float64).reshape(-1, 4),
            np.array([t["object"] for t in ts], dtype=np.int64),
            np.array([t["verb"] for t in ts], dtype=np.int64),
            np.array([t["score"] for t in ts], dtype=np.float64),
        )
    return out


def read_predictions(
    path: Path,
    num_verbs: int,
    num_objects: int,
    known_file_names: Collection[str] | None = None,
) -> dict[str, ImageTriplets]:
    """Read and check a predictions JSON file; keys are file names, in the file's order."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such predictions file. Pass the JSON written by `eoid predict`"
            " or by your own model."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}). Rewrite the file.") from None
    return parse_predictions(raw, str(path), num_verbs, num_objects, known_file_names)


def predictions_to_json(predictions: Mapping[str, ImageTriplets]) -> list[dict]:
    """The predictions file content for per-image triplets (plain Python numbers)."""
    return [
        {
            "file_name": name,
            "triplets": [
                {
                    "human_box": [float(x) for x in h],
                    "object_box": [float(x) for x in o],
                    "object": int(obj),
                    "verb": int(v),
                    "score": float(s),
                }
                for h, o, obj, v, s in zip(
                    p.human_boxes_xyxy,
                    p.object_boxes_xyxy,
                    p.object_idx,
                    p.verb_idx,
                    p.scores,
                )
            ],
        }
        for name, p in predictions.items()
    ]


def _write_json_atomic(path: Path, content: object) -> None:
    write_text_atomic(path, json.dumps(content, indent=1, allow_nan=False))


def write_predictions(path: Path, predictions: Mapping[str, ImageTriplets]) -> None:
    """Write the predictions file (atomically: a crash leaves the old file or none)."""
    _write_json_atomic(Path(path), predictions_to_json(predictions))


def to_detections(
    predictions: Mapping[str, ImageTriplets], hoi_index: np.ndarray
) -> dict[str, ImageDetections]:
    """Triplets to HOI detections; hoi_index: (num_verbs, num_objects) from
    Vocabulary.hoi_index().
    """
    return {
        name: detections_from_triplets(
            p.human_boxes_xyxy,
            p.object_boxes_xyxy,
            p.verb_idx,
            p.object_idx,
            p.scores,
            hoi_index,
        )
        for name, p in predictions.items()
    }


def _percent(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else 100.0 * float(x)


def _map_block(result: HoiMapResult) -> dict:
    mean_ap = {g: _percent(result.mean_ap[g]) for g in MAP_GROUPS}
    mean_ap["hm"] = harmonic_mean(mean_ap["seen"], mean_ap["unseen"])
    return {
        "mAP": mean_ap,
        "mean_max_recall": {g: _percent(result.mean_max_recall[g]) for g in MAP_GROUPS},
        "ap_per_hoi": [_percent(x) for x in result.ap_per_hoi],
        "max_recall_per_hoi": [_percent(x) for x in result.max_recall_per_hoi],
        "num_gt_per_hoi": [int(n) for n in result.num_gt_per_hoi],
    }


def results_to_json(
    default: HoiMapResult,
    known_object: HoiMapResult | None = None,
    unseen_recall: Mapping[int, float] | None = None,
    meta: Mapping[str, object] | None = None,
) -> dict:
    """The results.json content: percentages, null where a group or HOI has no ground
    truth.

    Top level holds the default mode ("mAP" per group and "hm", the harmonic mean of
    Seen and Unseen; "ap_per_hoi", ...); "known_object" the same block for that mode;
    "unseen_recall" U-R@K as {"3": ..., "5": ..., "10": ...}; "meta" is copied.
    """
    out = {**_map_block(default), "ap_method": default.ap_method}
    if known_object is not None:
        out["known_object"] = _map_block(known_object)
    if unseen_recall is not None:
        out["unseen_recall"] = {str(k): _percent(v) for k, v in unseen_recall.items()}
    if meta:
        out["meta"] = dict(meta)
    return out


def write_results(out_dir: Path, results: Mapping[str, object]) -> Path:
    """Write results.json (from results_to_json) into out_dir, creating it; returns the
    file path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    _write_json_atomic(path, dict(results))
    return path


def format_table(results: Mapping[str, object]) -> str:
    """The printed summary of a results.json dict: mAP per group and mode with HM,
    U-R@K, speed.
    """

    def cell(x: object) -> str:
        return f"{x:10.2f}" if isinstance(x, (int, float)) else f"{'-':>10}"

    header = f"{'mAP (%)':<14}" + "".join(
        f"{COLUMN_LABELS[g]:>10}" for g in MAP_COLUMNS
    )
    lines = [header]
    rows = [("default", results)]
    if "known_object" in results:
        rows.append(("known object", results["known_object"]))
    for label, block in rows:
        # a results.json written before HM was added: computed from its Seen and Unseen
        hm = block["mAP"].get(
            "hm", harmonic_mean(block["mAP"]["seen"], block["mAP"]["unseen"])
        )
        lines.append(
            f"{label:<14}"
            + "".join(cell(block["mAP"][g]) for g in MAP_GROUPS)
            + cell(hm)
        )
    recall = results.get("unseen_recall")
    if recall:
        recall_cells = "  ".join(
            f"U-R@{k} {cell(v).strip()}" for k, v in recall.items()
        )
        lines.append("unseen-pair recall (%): " + recall_cells)
    elif "unseen_recall" in results.get("meta", {}):
        lines.append(f"unseen-pair recall: {results['meta']['unseen_recall']}")
    if "ap_method" in results:
        lines.append(
            f"AP: {results['ap_method']} (11-point as the official HICO-DET MATLAB"
            " code)"
            if results["ap_method"] == "official"
            else f"AP: {results['ap_method']}"
        )
    if "speed" in results:
        lines.append(format_speed(results["speed"]))
    return "\n".join(lines)
