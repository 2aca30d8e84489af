"""The one entry point for annotation files: read and validate, or check a whole dataset
at once.

    result = read_annotations(Path("trainval_hico.json"), Path("images/train2015"), vocab)
    result.records   # list[ImageRecord], in file order
    result.bad       # problems of the records skipped with skip_bad=True

The format is found from the file: `.mat` -> HICO-DET anno_bbox.mat; a JSON list of
records with `hoi_annotation` -> HICO-DET (PPDM/CDN) or, with the v-coco vocabulary,
V-COCO HOIA; a JSON object with `images` and `annotations` -> COCO instances (boxes
only). What is checked and decided is listed in checks.py.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from eoid.errors import DataError
from eoid.pipeline.data.checks import (
    BOX_TOLERANCE_PX,
    BadRecord,
    RawImage,
    check_raw_image,
)
from eoid.pipeline.data.image_files import file_name_problem, image_sizes
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import Vocabulary


@dataclass
class ReadResult:
    """Records read from one annotation file, and the problems of the records left out."""

    records: list[ImageRecord]
    # one entry per problem of a skipped record
    bad: list[BadRecord] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len({b.index for b in self.bad})


@dataclass
class DatasetReport:
    """Every problem of a dataset, for `eoid data check`."""

    path: Path
    images: Path
    num_records: int
    num_ok: int
    num_boxes: int
    num_labels: int
    problems: list[BadRecord]

    @property
    def counts(self) -> dict[str, int]:
        """Problems per kind, e.g. {"bad_box": 3, "missing_image": 1}."""
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    @property
    def ok(self) -> bool:
        return not self.problems


def _load(path: Path, vocab: Vocabulary, split: str) -> tuple[list[RawImage], bool]:
    """The raw images of `path` and whether objectless (-1) labels are dropped (V-COCO)."""
    if not path.is_file():
        raise DataError(
            f"{path}: annotation file not found. Fix: check the path "
            "(e.g. data/hico_20160224_det/annotations/trainval_hico.json)."
        )
    if path.suffix.lower() == ".mat":
        from eoid.pipeline.data.hico import parse_anno_bbox_mat

        return parse_anno_bbox_mat(path, vocab, split), False
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path}: not valid JSON ({err}). Fix: re-download or re-export the "
            "annotation file."
        ) from None
    except RecursionError:
        raise DataError(
            f"{path}: nested too deeply to be an annotation file (lists or objects"
            " inside each other thousands of levels deep). Fix: re-download or"
            " re-export it."
        ) from None
    except OSError as err:
        raise DataError(
            f"{path}: cannot be read ({err.strerror or err}). Fix: check the file's "
            "permissions and the disk."
        ) from None
    if isinstance(raw, dict) and "images" in raw and "annotations" in raw:
        from eoid.pipeline.data.coco import parse_coco_instances

        return parse_coco_instances(path, raw), False
    if isinstance(raw, list):
        if vocab.name.startswith("v-coco"):
            from eoid.pipeline.data.vcoco import parse_hoia_json

            return parse_hoia_json(raw), True
        from eoid.pipeline.data.hico import parse_hoi_json

        return parse_hoi_json(raw), False
    raise DataError(
        f"{path}: unknown annotation format (a JSON {type(raw).__name__}). Fix: pass a"
        " HICO-DET/V-COCO JSON list of records with 'hoi_annotation', a COCO instances"
        " file with 'images' and 'annotations', or HICO-DET's anno_bbox.mat."
    )


def _check_all(
    path: Path,
    images: Path,
    vocab: Vocabulary,
    check_images: bool,
    split: str,
    tolerance_px: float,
    decode_images: bool = False,
):
    """Yield (raw, record or None, problems) for every record, duplicates included."""
    raws, drop_objectless = _load(path, vocab, split)
    sizes = {}
    # read ahead in threads; a name that is not a file is left to the checks
    if check_images:
        sizes = image_sizes(
            (
                images / r.file_name
                for r in raws
                if file_name_problem(r.file_name) is None
            ),
            decode_images,
        )
    seen: dict[str, int] = {}
    for raw in raws:
        record, problems = check_raw_image(
            raw,
            path,
            images,
            vocab,
            check_images=check_images,
            drop_objectless=drop_objectless,
            tolerance_px=tolerance_px,
            decode_images=decode_images,
            known_sizes=sizes,
        )
        if isinstance(raw.file_name, str):
            if raw.file_name in seen:
                problems = problems + [
                    BadRecord(
                        path,
                        raw.index,
                        raw.file_name,
                        "duplicate_file_name",
                        f"file_name already used by record {seen[raw.file_name]}",
                        "merge the two records into one (file_name is the image's"
                        " unique key)",
                    )
                ]
                record = None
            else:
                seen[raw.file_name] = raw.index
        yield raw, record, problems


def read_annotations(
    path: Path,
    images: Path,
    vocab: Vocabulary,
    *,
    skip_bad: bool = False,
    check_images: bool = True,
    split: str = "train",
    tolerance_px: float = BOX_TOLERANCE_PX,
    decode_images: bool | None = None,
) -> ReadResult:
    """Read and validate an annotation file into ImageRecords (paths inside `images`).

    The first bad record raises a DataError naming the file, the record, the problem and
    the fix, unless `skip_bad` is set: then bad records are left out and listed in
    `.bad`. `check_images=False` touches no image file (sizes from the annotation, else
    0 = unknown). `split` picks bbx_train / bbx_test of anno_bbox.mat; other formats
    ignore it. `decode_images` (default: skip_bad) decodes every image in full, so that
    with skip_bad a truncated or corrupt image is skipped here rather than stopping
    training when first read.
    """
    path, images = Path(path), Path(images)
    decode = skip_bad if decode_images is None else decode_images
    records, bad = [], []
    for raw, record, problems in _check_all(
        path, images, vocab, check_images, split, tolerance_px, decode
    ):
        if problems:
            if not skip_bad:
                more = (
                    f" ({len(problems) - 1} more problem(s) in this record)"
                    if len(problems) > 1
                    else ""
                )
                raise DataError(
                    problems[0].message()
                    + more
                    + f". To list every problem: eoid data check {path} --images"
                    f" {images}"
                )
            bad.extend(problems)
        else:
            records.append(record)
    return ReadResult(records, bad)


def check_dataset(
    path: Path,
    images: Path,
    vocab: Vocabulary,
    *,
    check_images: bool = True,
    split: str = "train",
    tolerance_px: float = BOX_TOLERANCE_PX,
    decode_images: bool = False,
) -> DatasetReport:
    """Every problem of an annotation file at once (a whole-file problem is one entry,
    index -1).

    `decode_images` decodes every image in full (slow: finds truncated files the header
    misses).
    """
    path, images = Path(path), Path(images)
    problems: list[BadRecord] = []
    n = ok = boxes = labels = 0
    try:
        for raw, record, found in _check_all(
            path, images, vocab, check_images, split, tolerance_px, decode_images
        ):
            n += 1
            problems.extend(found)
            if record is not None:
                ok += 1
                boxes += record.num_boxes
                labels += len(record.hois)
    except DataError as err:
        problems.append(BadRecord(path, -1, "", "bad_file", str(err), ""))
    # what cache-teacher and train refuse: a dataset with nothing to learn
    if n == 0 and not problems:
        problems.append(
            BadRecord(
                path,
                -1,
                "",
                "no_records",
                f"{path}: holds no records (an empty "
                "list); cache-teacher and train refuse it. Fix: pass the annotation "
                "file of these images.",
                "",
            )
        )
    return DatasetReport(path, images, n, ok, boxes, labels, problems)


# what another vocabulary causes
VOCABULARY_KINDS = ("invalid_hoi", "unknown_verb", "unknown_object")


def vocabulary_hint(report: DatasetReport, vocabulary: str) -> str | None:
    """A hint when the problems look like a file written in another vocabulary than
    `vocabulary`.
    """
    if not any(p.kind in VOCABULARY_KINDS for p in report.problems):
        return None
    beside = Path(report.path).parent / "vocabulary.json"
    found = beside.is_file() and str(beside) != vocabulary
    tip = (
        f"--dataset {beside} (the vocabulary.json beside it)"
        if found
        else "--dataset v-coco, or --dataset FILE.json (your vocabulary)"
    )
    return (
        f"hint: {', '.join(VOCABULARY_KINDS)} problems often mean the file is written"
        f" in another vocabulary than {vocabulary!r}. Pass {tip}."
    )


def format_report(
    report: DatasetReport, max_per_kind: int = 10, vocabulary: str | None = None
) -> str:
    """The report as text: totals, counts per kind, then up to `max_per_kind` messages
    per kind.

    `vocabulary`: the vocabulary checked against; named in a hint when it may be the
    wrong one.
    """
    lines = [
        f"{report.path}: {report.num_records} records, {report.num_ok} valid"
        f" ({report.num_boxes} boxes, {report.num_labels} labels), images in"
        f" {report.images}"
    ]
    if report.ok:
        lines.append("no problems found")
        return "\n".join(lines)
    lines.append(f"{len(report.problems)} problem(s):")
    lines += [f"  {kind}: {count}" for kind, count in report.counts.items()]
    for kind in report.counts:
        of_kind = [p for p in report.problems if p.kind == kind]
        lines.append(f"[{kind}]")
        lines += [f"  {p.message()}" for p in of_kind[:max_per_kind]]
        if len(of_kind) > max_per_kind:
            lines.append(f"  ... and {len(of_kind) - max_per_kind} more")
    hint = vocabulary_hint(report, vocabulary) if vocabulary is not None else None
    return "\n".join(lines + ([hint] if hint else []))
