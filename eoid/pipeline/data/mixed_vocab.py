"""Two vocabularies merged into one, for training on several datasets at once (the
paper's Section 5.6).

A *verb mapping* (data: `eoid/data/vcoco_to_hico_det.json`, or a user's file in the same
format) says how a source vocabulary's verbs enter a base vocabulary:

    {"name": "hico-det+v-coco", "base": "hico-det", "source": "v-coco",
     "mapped":  [{"source": "sit_instr", "verbs": ["sit_on", "sit_at"]}, ...],  # same action
     "added":   [{"source": "surf_instr", "verb": "surf", "phrase": "surfing with",
                  "objects": ["surfboard"]}, ...],                   # new verb + its HOIs
     "dropped": ["stand", ...]}                                      # no counterpart

`base` and `source` are vocabulary names or files (relative to the mapping file). The
merged vocabulary keeps the base's verbs, objects, HOIs, rare list and zero-shot
settings at their indices, then appends the added verbs, their HOIs, and any source
object the base lacks; it gains one setting, "new-verbs" (kind "verb"): the added HOIs,
unseen by construction because no labelled data has them. Source verbs that are mapped
are the *Seen* actions of an evaluation on the source dataset, added ones the *Unseen*
(Table 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eoid.errors import DataError
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import (
    BUILTIN,
    Setting,
    Vocabulary,
    load_vocabulary,
    read_named_json,
    vocabulary_from_json,
)

BUILTIN_MAPPINGS = {"vcoco-to-hico-det": "vcoco_to_hico_det.json"}
NEW_VERBS_SETTING = "new-verbs"


@dataclass(frozen=True)
class AddedVerb:
    """A source verb with no base counterpart: a new verb and the objects it forms HOIs
    with.
    """

    source: str  # the source verb's name, e.g. "surf_instr"
    verb: str  # the merged verb's name, e.g. "surf"
    phrase: str  # its prompt phrase, e.g. "surfing with"
    objects: tuple[str, ...]  # object names of its HOIs, in order


@dataclass(frozen=True)
class VerbMapping:
    """How a source vocabulary's verbs enter a base vocabulary (see the module
    docstring).
    """

    name: str  # name of the merged vocabulary
    # base vocabulary: built-in name or file path
    base: str
    # source vocabulary: built-in name or file path
    source: str
    # source verb -> base verbs (first = preferred for labels)
    mapped: dict[str, tuple[str, ...]]
    added: tuple[AddedVerb, ...]
    dropped: tuple[str, ...]
    where: str  # the file it came from (for messages)


@dataclass(frozen=True, eq=False)
class MixedVocabulary:
    """The merged vocabulary and the index tables between it and its two inputs."""

    # merged: base verbs first, then the added ones
    vocab: Vocabulary
    base: Vocabulary
    source: Vocabulary
    # per source verb: merged verb candidates, () = dropped
    source_to_merged: tuple[tuple[int, ...], ...]
    # source verbs mapped onto base verbs
    seen_source_verbs: tuple[int, ...]
    unseen_source_verbs: tuple[int, ...]  # source verbs added as new verbs
    # merged HOI indices of the added verbs
    added_hois: tuple[int, ...]

    def merged_to_source(self) -> np.ndarray:
        """(merged num_verbs, source num_verbs) bool: a merged verb's prediction
        counts for these source verbs."""
        table = np.zeros((self.vocab.num_verbs, self.source.num_verbs), dtype=bool)
        for s, candidates in enumerate(self.source_to_merged):
            table[list(candidates), s] = True
        return table


def verb_mapping_from_json(
    raw: dict, where: str, folder: Path | None = None
) -> VerbMapping:
    """A VerbMapping from its parsed file; vocabulary paths are taken relative to
    `folder`.
    """

    def resolve(name: str) -> str:
        if name in BUILTIN or folder is None or Path(name).is_absolute():
            return name
        return str(folder / name)

    try:
        mapped = {m["source"]: tuple(m["verbs"]) for m in raw.get("mapped", [])}
        added = tuple(
            AddedVerb(
                a["source"],
                a["verb"],
                a.get("phrase", a["verb"].replace("_", " ")),
                tuple(a["objects"]),
            )
            for a in raw.get("added", [])
        )
        return VerbMapping(
            str(raw["name"]),
            resolve(str(raw["base"])),
            resolve(str(raw["source"])),
            mapped,
            added,
            tuple(raw.get("dropped", [])),
            where,
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError(
            f"{where}: not a valid verb mapping ({type(err).__name__}: {err}). "
            "See eoid/pipeline/data/mixed_vocab.py for the format."
        ) from None


def load_verb_mapping(name: str | Path) -> VerbMapping:
    """A built-in mapping ("vcoco-to-hico-det") or a mapping JSON file."""
    raw, where, folder = read_named_json(
        name,
        BUILTIN_MAPPINGS,
        "verb mapping",
        "--mapping vcoco-to-hico-det or a JSON file",
    )
    return verb_mapping_from_json(raw, where, folder)


def merge_vocabularies(
    base: Vocabulary, source: Vocabulary, mapping: VerbMapping
) -> MixedVocabulary:
    """Merge `source` into `base` as `mapping` says; every inconsistency is one
    DataError listing all.
    """
    where = mapping.where
    problems = []
    listed = (
        list(mapping.mapped) + [a.source for a in mapping.added] + list(mapping.dropped)
    )
    for verb in source.verbs:
        if listed.count(verb) != 1:
            problems.append(
                f"source verb {verb!r} is listed {listed.count(verb)} times "
                "in mapped/added/dropped (list it exactly once)"
            )
    for verb in sorted(set(listed) - set(source.verbs)):
        problems.append(
            f"{verb!r} is not a verb of the source vocabulary {source.name!r}"
        )
    for src, targets in mapping.mapped.items():
        if not targets:
            problems.append(f"mapped verb {src!r} lists no base verb")
        for t in targets:
            if t not in base.verbs:
                problems.append(
                    f"mapped verb {src!r} -> {t!r}, which is not a verb of"
                    f" {base.name!r}"
                )
    new_names = [a.verb for a in mapping.added]
    for name in new_names:
        if name in base.verbs or new_names.count(name) > 1:
            problems.append(
                f"added verb {name!r} already exists (choose another name or map it"
                " instead)"
            )
    objects = list(base.objects) + [o for o in source.objects if o not in base.objects]
    object_ids = list(base.object_ids) + [
        source.object_ids[source.objects.index(o)] for o in objects[base.num_objects :]
    ]
    if len(set(object_ids)) != len(object_ids):
        problems.append(
            "a source object missing from the base has the category id of a base object"
        )
    for a in mapping.added:
        for o in a.objects:
            if o not in objects:
                problems.append(
                    f"added verb {a.verb!r} names object {o!r}, which neither"
                    " vocabulary has"
                )
    if problems:
        raise DataError(
            f"{where}: cannot merge {source.name!r} into {base.name!r}: "
            + "; ".join(problems)
        )

    verbs = list(base.verbs) + new_names
    phrases = list(base.verb_phrases) + [a.phrase for a in mapping.added]
    next_id = max(base.verb_ids, default=0) + 1
    verb_ids = list(base.verb_ids) + list(range(next_id, next_id + len(new_names)))
    hois_of_added = [
        (verbs.index(a.verb), objects.index(o))
        for a in mapping.added
        for o in a.objects
    ]
    hois = list(base.hois) + hois_of_added
    added_hois = tuple(range(len(base.hois), len(hois)))
    settings = dict(base.settings)
    settings[NEW_VERBS_SETTING] = Setting(
        NEW_VERBS_SETTING,
        "verb",
        added_hois,
        f"the verbs {mapping.source!r} adds to {mapping.base!r} "
        f"({', '.join(new_names)}): no labelled data has them",
    )
    merged = Vocabulary(
        name=mapping.name,
        verbs=verbs,
        verb_phrases=phrases,
        objects=objects,
        object_ids=object_ids,
        verb_ids=verb_ids,
        hois=hois,
        human=base.human,
        no_interaction=base.no_interaction,
        rare_hois=list(base.rare_hois),
        settings=settings,
    )
    # same checks as a file
    merged = vocabulary_from_json(merged.to_json(), f"{where} (merged vocabulary)")
    added_by_source = {a.source: a.verb for a in mapping.added}
    table = []
    for verb in source.verbs:
        if verb in mapping.mapped:
            table.append(tuple(verbs.index(t) for t in mapping.mapped[verb]))
        elif verb in added_by_source:
            table.append((verbs.index(added_by_source[verb]),))
        else:
            table.append(())
    return MixedVocabulary(
        merged,
        base,
        source,
        tuple(table),
        tuple(i for i, v in enumerate(source.verbs) if v in mapping.mapped),
        tuple(i for i, v in enumerate(source.verbs) if v in added_by_source),
        added_hois,
    )


def load_mixed_vocabulary(mapping: str | Path) -> MixedVocabulary:
    """Load a mapping and both vocabularies it names, and merge them."""
    m = load_verb_mapping(mapping)
    return merge_vocabularies(load_vocabulary(m.base), load_vocabulary(m.source), m)


def verb_table_into(
    mixed: MixedVocabulary, vocab: Vocabulary
) -> tuple[tuple[int, ...], ...]:
    """Merged verb candidates of each verb of `vocab` (the base, the source or the
    merged vocabulary).
    """
    fp = vocab.fingerprint()
    if fp == mixed.vocab.fingerprint() or fp == mixed.base.fingerprint():
        # base verbs keep their indices
        return tuple((i,) for i in range(vocab.num_verbs))
    if fp == mixed.source.fingerprint():
        return mixed.source_to_merged
    raise DataError(
        f"vocabulary {vocab.name!r} is neither {mixed.base.name!r},"
        f" {mixed.source.name!r} nor the merged {mixed.vocab.name!r}: give each"
        " annotation file the vocabulary it is written in, one of those three."
    )


def verb_table_to_source(
    mixed: MixedVocabulary, vocab: Vocabulary
) -> np.ndarray | None:
    """(vocab num_verbs, source num_verbs) bool: the source verbs a prediction of each
    verb of `vocab` counts for; None when `vocab` is none of the mapping's three
    vocabularies.

    `vocab` is the source itself (identity: a student trained on V-COCO's own verbs),
    the merged vocabulary (merged_to_source) or the base (its rows of that table: base
    verbs keep their indices, and the added verbs, which it lacks, get no prediction).
    """
    fp = vocab.fingerprint()
    if fp == mixed.source.fingerprint():
        return np.eye(mixed.source.num_verbs, dtype=bool)
    if fp == mixed.vocab.fingerprint():
        return mixed.merged_to_source()
    if fp == mixed.base.fingerprint():
        return mixed.merged_to_source()[: mixed.base.num_verbs]
    return None


def remap_record(
    record: ImageRecord, vocab: Vocabulary, mixed: MixedVocabulary
) -> tuple[ImageRecord, int]:
    """`record` (written in `vocab`) in the merged index space, and how many labels were
    dropped.

    A label takes the first merged candidate of its verb that forms a valid merged HOI
    with its object; a label of a dropped verb, or with no valid candidate, is left out
    (counted).
    """
    merged = mixed.vocab
    verbs = verb_table_into(mixed, vocab)
    object_map = np.array(
        [merged.objects.index(o) for o in vocab.objects], dtype=np.int64
    )
    classes = (
        object_map[record.box_classes]
        if record.num_boxes
        else record.box_classes.copy()
    )
    valid = merged.valid
    rows, dropped = [], 0
    for h, o, v in record.hois.tolist():
        choice = next((m for m in verbs[v] if valid[classes[o], m]), None)
        if choice is None:
            dropped += 1
        else:
            rows.append((h, o, choice))
    rows = list(dict.fromkeys(rows))
    out = ImageRecord(
        record.key,
        record.path,
        record.width,
        record.height,
        record.boxes_xyxy_px,
        classes,
        np.asarray(rows, dtype=np.int64).reshape(-1, 3),
    )
    return out, dropped


def record_to_hico_json(
    record: ImageRecord,
    vocab: Vocabulary,
    file_name: str | None = None,
    provenance: list[dict] | None = None,
) -> dict:
    """One entry of the PPDM/CDN HICO-DET JSON (category ids from `vocab`).

    provenance: one dict per label row, written as the label's "provenance" field (the
    readers ignore it).
    """
    labels = []
    for k, (h, o, v) in enumerate(record.hois.tolist()):
        label = {"subject_id": h, "object_id": o, "category_id": vocab.verb_ids[v]}
        if provenance is not None:
            label["provenance"] = provenance[k]
        labels.append(label)
    box_annotations = [
        {
            "bbox": [round(float(c), 2) for c in box],
            "category_id": vocab.object_ids[int(c)],
        }
        for box, c in zip(record.boxes_xyxy_px, record.box_classes)
    ]
    return {
        "file_name": file_name or record.key,
        "annotations": box_annotations,
        "hoi_annotation": labels,
    }
