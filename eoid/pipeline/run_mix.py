"""`eoid mix`: several annotation files, each in its own vocabulary, written as one
training set.

The output folder is an ordinary dataset that `eoid cache-teacher` and `eoid train` take
unchanged:

    OUT/train.json         HICO-DET JSON in the merged vocabulary;
                           file_name = "srcI/<original file_name>"
    OUT/vocabulary.json    the merged vocabulary (pass it as --dataset / data.dataset)
    OUT/images/srcI        a symbolic link to source I's image folder (pass OUT/images as --images)
    OUT/mix_report.json    per source: records, skipped records (and why), labels kept and dropped

Each source is read and validated with its own vocabulary (the base, the mapped source,
or the merged one), then its labels are remapped (mixed_vocab.remap_record).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from eoid.errors import ConfigError, DataError
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.mixed_vocab import (
    load_mixed_vocabulary,
    record_to_hico_json,
    remap_record,
)
from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixSource:
    """One annotation file of the mix, its image folder and the vocabulary it is written
    in.
    """

    annotations: Path
    images: Path
    vocabulary: str  # built-in name or vocabulary JSON


def _link(link: Path, target: Path) -> None:
    """Make `link` a symbolic link to `target` (replacing an older link of ours)."""
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise ConfigError(
            f"{link} exists and is not a link; choose an empty --out folder."
        )
    os.symlink(target.resolve(), link, target_is_directory=True)


def run_mix(
    sources: list[MixSource], mapping: str, out: Path, *, skip_bad: bool = False
) -> Path:
    """Write the merged training set of `sources` into `out`; returns the path of
    OUT/train.json.
    """
    if not sources:
        raise ConfigError(
            "no sources to mix: pass --source ANNOTATIONS IMAGES VOCABULARY at least"
            " once."
        )
    out = output_folder(
        Path(out),
        "the mixed training set",
        inputs=[s.images for s in sources],
        owner="mix",
        signs=("mix_report.json",),
    )
    mixed = load_mixed_vocabulary(mapping)
    output_folder(out / "images", "the mixed training set's image links")
    entries, report = [], []
    for i, src in enumerate(sources):
        if not Path(src.images).is_dir():
            raise DataError(
                f"{src.images}: image folder of {src.annotations} not found. "
                "Fix the --source path."
            )
        vocab = load_vocabulary(src.vocabulary)
        result = read_annotations(
            Path(src.annotations), Path(src.images), vocab, skip_bad=skip_bad
        )
        tag = f"src{i}"
        _link(out / "images" / tag, Path(src.images))
        kept = dropped = 0
        for rec in result.records:
            merged, n_dropped = remap_record(rec, vocab, mixed)
            entries.append(record_to_hico_json(merged, mixed.vocab, f"{tag}/{rec.key}"))
            kept += len(merged.hois)
            dropped += n_dropped
        report.append(
            {
                "source": tag,
                "annotations": str(src.annotations),
                "images": str(src.images),
                "vocabulary": vocab.name,
                "records": len(result.records),
                "skipped_records": result.num_skipped,
                "labels": kept,
                "labels_dropped": dropped,
                "skipped": [b.message() for b in result.bad],
            }
        )
        if result.bad:
            log.warning(
                "%s: skipped %d bad record(s) (%d problem(s)); listed in %s",
                src.annotations,
                result.num_skipped,
                len(result.bad),
                out / "mix_report.json",
            )
        log.info(
            "%s: %d images, %d labels (%d dropped: verb without a valid merged HOI)",
            src.annotations,
            len(result.records),
            kept,
            dropped,
        )
    write_text_atomic(
        out / "vocabulary.json",
        json.dumps(mixed.vocab.to_json(), indent=1),
        "the vocabulary",
    )
    write_text_atomic(out / "train.json", json.dumps(entries))
    summary = {
        "mapping": str(mapping),
        "vocabulary": mixed.vocab.name,
        "num_verbs": mixed.vocab.num_verbs,
        "num_hois": len(mixed.vocab.hois),
        "sources": report,
    }
    write_text_atomic(
        out / "mix_report.json", json.dumps(summary, indent=1), "the mix report"
    )
    return out / "train.json"
