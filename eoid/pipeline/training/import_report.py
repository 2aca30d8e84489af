"""The report `eoid import-checkpoint` prints about one planned import of the authors'
checkpoints.

`format_plan` turns an `ImportPlan` (original_checkpoint.py decides it, before anything
is written) into the lines --check shows: the file's format and top-level keys, the
architecture read off the weights and the preset it is, the pickled args that matter,
the vocabulary and the object-head rows kept, the zero-shot setting, the
interactive-score head, every original -> eoid key group, and each problem that stops
the write. It reads the plan and writes nothing.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping

from eoid.pipeline.training.original_checkpoint import (
    CDN_VCOCO_ABSENT_OBJECT_ROW,
    SETTINGS,
    ImportPlan,
    setting_of,
)


def _file_summary(raw: dict, path: Path) -> str:
    fmt = "zip" if zipfile.is_zipfile(path) else "legacy (torch < 1.6)"
    parts = [f"model ({len(raw['model'])} tensors)"]
    if "args" in raw:
        kind = type(raw["args"])
        parts.append(f"args ({kind.__module__}.{kind.__qualname__})")
    if "epoch" in raw:
        parts.append(f"epoch {raw['epoch']}")
    ignored = [
        (
            f"criterion (EoID's CLIP teacher, {len(raw[k])} tensors)"
            if k == "criterion" and isinstance(raw[k], Mapping)
            else k
        )
        for k in raw
        if k not in ("model", "args", "epoch")
    ]
    return (
        f"file: {fmt} format; {', '.join(parts)}; ignored:"
        f" {', '.join(ignored) or 'nothing'}"
    )


def _setting_line(setting: str, dataset_file: str | None) -> str:
    if setting:
        return (
            f"zero-shot setting: {setting} (args.dataset_file {dataset_file!r}); `eoid"
            f" evaluate --setting {setting}` reports its Seen / Unseen split"
        )
    if dataset_file in SETTINGS:
        return (
            f"zero-shot setting: none (args.dataset_file {dataset_file!r}: trained on"
            " every label)"
        )
    return (
        f"zero-shot setting: not known for args.dataset_file {dataset_file!r}; pass"
        " --setting to `eoid evaluate` for a Seen / Unseen split"
    )


IS_HEAD_LINES = {
    "interaction": "is_embed (EoID's IS head, on the interaction decoder)",
    "human_object": (
        "CDN's matching_embed (on the human-object decoder) -> is_embed, "
        "student.is_head = 'human_object'"
    ),
    "none": (
        "none: CDN has no IS head, so neither has the imported student (student.is_head"
        " = 'none'); post-processing does not use it, evaluate skips U-R@K, and a"
        " training run from it (student.init_from) starts a fresh one"
    ),
}


def format_plan(plan: ImportPlan) -> str:
    """The report --check prints: file, architecture, vocabulary, IS head, the mapping,
    problems.
    """
    args, rows = plan.args, plan.object_rows
    shown = [
        f"{k} {args[k]!r}"
        for k in ("nheads", "dilation", "dataset_file", "uc_type")
        if k in args
    ]
    vocab = plan.vocab
    vocab_line = (
        f"vocabulary: {vocab.name} ({vocab.num_objects} objects, {vocab.num_verbs}"
        " verbs)"
    )
    if rows:
        vocab_line += (
            f"; object head rows 0..{rows[-2]} and {rows[-1]} kept, row"
            f" {CDN_VCOCO_ABSENT_OBJECT_ROW} (CDN's 'absent object' of role-less verbs)"
            " dropped"
        )
    setting = setting_of(plan)
    lines = [
        f"import-checkpoint: {plan.path} ({plan.source})",
        _file_summary(plan.raw, plan.path),
        (
            f"architecture from the weights: {plan.arch.describe()} -> preset"
            f" {plan.preset}"
        ),
        "args: "
        + (
            ", ".join(shown)
            if args
            else "none in the file: assumed 8 heads, no dilation"
        ),
        vocab_line,
        _setting_line(setting, args.get("dataset_file")),
        f"interactive-score head: {IS_HEAD_LINES[plan.is_head]}",
        "mapping (original -> eoid: tensors):",
    ]
    lines += [
        f"  {src:<38} -> {dst:<38} {n}" for (src, dst), n in plan.mapping.groups.items()
    ]
    lines += [f"dropped: {d}" for d in plan.mapping.dropped]
    lines += [
        (
            "original keys with no place in eoid:"
            f" {', '.join(plan.mapping.unplaced) or 'none'}"
        ),
        f"eoid keys left at their fresh init: {', '.join(plan.fresh) or 'none'}",
        f"shape mismatches: {'; '.join(plan.wrong) or 'none'}",
    ]
    lines += [f"problem: {p}" for p in plan.problems]
    return "\n".join(lines)
