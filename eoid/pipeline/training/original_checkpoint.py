"""The import engine: the authors' released EoID / CDN checkpoints as eoid checkpoints.

The original `main.py` saves {model, optimizer, lr_scheduler, epoch, args} (+
`criterion`, the whole CLIP teacher, in EoID) with `args` an argparse.Namespace. The
file is read with `weights_only=True`, letting exactly that one class through for this
read: any other pickled object is refused, so the file runs no code. Only `model` and
`args` are used. The keys are renamed (student/original_weights.py), the architecture is
read off the tensors, and the result is written with a resolved TrainConfig recipe
(test-time resize and post-processing = the released test commands') that `evaluate`,
`predict` and `student.init_from` read. `eoid import-checkpoint`
(pipeline/run_import.py) plans, reports and writes with it.
"""

from __future__ import annotations

import argparse
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from eoid.checkpoint import save_checkpoint
from eoid.config import DataConfig, StudentConfig, TrainConfig, to_dict
from eoid.errors import UNSAFE_LOAD_ADVICE, CheckpointError, ConfigError, first_line
from eoid.files import file_sha256
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary
from eoid.student.model import CDN, build_student
from eoid.student.original_weights import (
    Architecture,
    KeyMapping,
    infer_architecture,
    map_original_keys,
    matching_presets,
    refuse_foreign,
    strip_module_prefix,
)
from eoid.student.presets import PRESETS

IMPORTABLE_PRESETS = ("cdn-s", "cdn-b", "cdn-l")
DATASET_BY_VERBS = {117: "hico-det", 29: "v-coco"}
# CDN datasets/vcoco.py: label of a role-less verb's missing object
CDN_VCOCO_ABSENT_OBJECT_ROW = 80
# EoID's dataset_file (+ uc_type) -> eoid data.setting (EoID's rare_first list is
# rf-uc-138)
SETTINGS = {
    "hico_ua_st_v1": "ua",
    "hico_ua_st_v2": "ua",
    "hico_uo_st": "uo",
    "hico": "",
}
UC_TYPES = {
    "uc0": "uc0",
    "uc1": "uc1",
    "uc2": "uc2",
    "uc3": "uc3",
    "uc4": "uc4",
    "rare_first": "rf-uc-138",
    "non_rare_first": "nf-uc",
}


def read_original(path: Path) -> dict:
    """torch.load of an original checkpoint: tensors, plain containers and
    argparse.Namespace only.

    Zip and legacy (torch < 1.6) files both work; legacy ones cannot be memory-mapped.
    """
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file. Pass the .pth checkpoint released by the authors."
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if not found:  # a damaged pickle, not a refused object
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint ({first_line(err)})."
            ) from None
        raise CheckpointError(
            f"{path}: holds a pickled {found[1]} object; eoid reads an original"
            " checkpoint as tensors plus the argparse.Namespace of its args and"
            " nothing else, because unpickling anything else can run code."
            f" {UNSAFE_LOAD_ADVICE} (the authors' release page)."
        ) from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(err).__name__}: "
            f"{first_line(err)})."
        ) from None
    if isinstance(raw, Mapping) and isinstance(raw.get("model"), Mapping):
        return dict(raw)
    if (
        isinstance(raw, Mapping)
        and raw
        and all(isinstance(v, Tensor) for v in raw.values())
    ):
        return {"model": raw}  # a bare state dict
    raise CheckpointError(
        f"{path}: no 'model' state dict at the top level; pass the file the "
        "original main.py wrote (checkpoint*.pth) or the released weights."
    )


def _choose_preset(arch: Architecture, preset: str | None, path: Path) -> str:
    if preset == "tiny":
        raise ConfigError(
            "--preset tiny: no original checkpoint fits the tiny preset (its widths, "
            "conv-stem backbone and box anchors are eoid's own); pass cdn-s, cdn-b or "
            "cdn-l, or leave --preset out."
        )
    if preset not in (None, *IMPORTABLE_PRESETS):
        raise ConfigError(
            f"--preset {preset}: choose one of {', '.join(IMPORTABLE_PRESETS)} "
            "(or leave it out: the weights say which)."
        )
    found = matching_presets(arch)
    if not found:
        raise CheckpointError(
            f"{path}: its weights are {arch.describe()}; no eoid preset has that "
            "architecture (cdn-s: resnet50 3+3, cdn-b: resnet50 6+6, cdn-l: "
            "resnet101 6+6 decoder layers)."
        )
    if preset and preset != found[0]:
        raise ConfigError(
            f"--preset {preset} disagrees with the weights of {path}: they are"
            f" {arch.describe()}, which is {found[0]}. Pass --preset {found[0]} or"
            " leave it out."
        )
    return found[0]


def _choose_dataset(
    arch: Architecture, dataset: str | None, path: Path
) -> tuple[Vocabulary, list | None]:
    """The vocabulary and the object-head rows to keep (None = all)."""
    inferred = DATASET_BY_VERBS.get(arch.num_verbs)
    if inferred is None:
        raise CheckpointError(
            f"{path}: the verb head has {arch.num_verbs} rows; HICO-DET has 117 "
            "verbs and V-COCO 29, and no other dataset can be imported."
        )
    if dataset and dataset != inferred:
        raise ConfigError(
            f"--dataset {dataset} disagrees with {path}: its {arch.num_verbs}-verb head"
            f" is {inferred}'s. Pass --dataset {inferred} or leave it out."
        )
    vocab = load_vocabulary(inferred)
    rows = None
    if inferred == "v-coco" and arch.num_object_rows == vocab.num_objects + 2:
        rows = [
            i for i in range(arch.num_object_rows) if i != CDN_VCOCO_ABSENT_OBJECT_ROW
        ]
    elif arch.num_object_rows != vocab.num_objects + 1:
        raise CheckpointError(
            f"{path}: the object head has {arch.num_object_rows} rows; {inferred} "
            f"needs {vocab.num_objects} objects + no-object = {vocab.num_objects + 1}."
        )
    return vocab, rows


def _args_problems(args: dict, preset: str) -> list[str]:
    """What the weights cannot show (heads, dilation) checked against the pickled args."""
    p = PRESETS[preset]
    wanted = {
        "nheads": p.num_heads,
        "dilation": False,
        "pre_norm": False,
        "position_embedding": "sine",
    }
    return [
        f"args.{k} = {args[k]!r}, eoid's {preset} has {v!r}"
        for k, v in wanted.items()
        if k in args and args[k] != v
    ]


def _setting(args: dict, vocab: Vocabulary) -> str:
    name = args.get("dataset_file", "")
    setting = (
        UC_TYPES.get(args.get("uc_type", ""))
        if name == "hico_uc_st"
        else SETTINGS.get(name)
    )
    return setting if setting and setting in vocab.settings else ""


@dataclass
class ImportPlan:
    """Everything decided about one original checkpoint before anything is written."""

    path: Path
    source: str
    raw: dict  # the file's top level (model, args, epoch, ...)
    args: dict  # vars(args), {} when the file has none
    arch: Architecture
    preset: str
    vocab: Vocabulary
    object_rows: list[int] | None
    is_head: str
    mapping: KeyMapping
    student: CDN  # freshly built for the preset, vocabulary and IS head
    fresh: list[str]  # student keys the file does not fill
    wrong: list[str]  # "key: shapes" that do not fit
    problems: list[str]  # why the plan must not be written ([] = fine)


def plan_import(
    path: Path, source: str, preset: str | None, dataset: str | None
) -> ImportPlan:
    """Read `path`, infer preset and vocabulary, map every key and compare with a fresh
    student.
    """
    raw = read_original(path)
    state = strip_module_prefix(raw["model"])
    refuse_foreign(state, source, str(path))
    args = vars(raw["args"]) if isinstance(raw.get("args"), argparse.Namespace) else {}
    arch = infer_architecture(state)
    preset = _choose_preset(arch, preset, path)
    vocab, rows = _choose_dataset(arch, dataset, path)
    is_head = (
        "interaction"
        if source == "eoid-official"
        else "human_object"
        if "matching_embed.weight" in state
        else "none"
    )
    mapping = map_original_keys(state, source, is_head, rows)
    student = build_student(
        preset, vocab.num_objects, vocab.num_verbs, arch.num_queries, is_head
    )
    own = student.state_dict()
    fresh = sorted(own.keys() - mapping.state.keys())
    wrong = [
        f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in eoid"
        for k, v in mapping.state.items()
        if k in own and v.shape != own[k].shape
    ]
    wrong += [
        f"{k}: not in eoid's student" for k in sorted(mapping.state.keys() - own.keys())
    ]
    problems = _args_problems(args, preset)
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es)")
    if mapping.unplaced:
        problems.append(
            f"{len(mapping.unplaced)} original key(s) with no place in eoid"
        )
    if fresh:
        problems.append(f"{len(fresh)} eoid key(s) the file does not fill")
    return ImportPlan(
        path,
        source,
        raw,
        args,
        arch,
        preset,
        vocab,
        rows,
        is_head,
        mapping,
        student,
        fresh,
        wrong,
        problems,
    )


def write_import(plan: ImportPlan, out: Path) -> None:
    """The eoid checkpoint: the mapped weights, a resolved TrainConfig recipe, the
    vocabulary.
    """
    args = plan.args
    student = plan.student
    student.load_state_dict(plan.mapping.state, strict=True)
    cfg = TrainConfig(
        data=DataConfig(dataset=plan.vocab.name, setting=_setting(args, plan.vocab)),
        student=StudentConfig(
            preset=plan.preset,
            num_queries=plan.arch.num_queries,
            is_head=plan.is_head,
            detach=bool(args.get("vdetach", plan.source == "eoid-official")),
            dropout=float(args.get("dropout", 0.1)),
        ),
    )
    epoch = plan.raw.get("epoch")
    imported = {
        "file": str(plan.path),
        "sha256": file_sha256(plan.path),
        "source": plan.source,
        "epoch": epoch if isinstance(epoch, int) else None,
        "args": {
            k: v for k, v in args.items() if isinstance(v, (bool, int, float, str))
        },
    }
    save_checkpoint(
        out,
        model=student.state_dict(),
        config=to_dict(cfg),
        vocabulary=plan.vocab.to_json(),
        epoch=0,
        iteration=0,
        extra={"imported_from": imported},
    )


def setting_of(plan: ImportPlan) -> str:
    """The zero-shot setting the original run trained on, as eoid names it ("" = none or
    unknown).
    """
    return _setting(plan.args, plan.vocab)
