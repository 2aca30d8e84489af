"""Checkpoints: plain state dicts + the resolved config + the vocabulary, written
atomically.

Written to a temporary name, fsynced, then renamed: a kill mid-write never leaves a file
that looks complete. Loaded with `weights_only=True`: a checkpoint from someone else
runs no code. A leaf (it needs only config, errors and files): training writes
checkpoints, evaluation, predict, export and the CLI read them. Building a student from
one is eoid/pipeline/data/student_models.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eoid.config import AugmentConfig, PostprocessConfig, to_dict
from eoid.config_loading import from_dict
from eoid.errors import CheckpointError, TrainingDiverged, first_line
from eoid.files import write_atomic

FORMAT = "eoid-checkpoint"
VERSION = 1
REQUIRED = {
    "model": dict,
    "config": dict,
    "vocabulary": dict,
    "epoch": int,
    "iteration": int,
}


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically; a failed write is a CheckpointError and leaves
    no temporary file.
    """
    try:
        write_atomic(Path(path), lambda f: torch.save(obj, f))
    # torch's zip writer: ENOSPC is a RuntimeError
    except (OSError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: could not write the checkpoint ({type(err).__name__}: "
            f"{first_line(err)}). Free disk space or choose another "
            "--out; the previous checkpoint is intact."
        ) from None


def save_checkpoint(
    path: Path,
    *,
    model: dict,
    config: dict,
    vocabulary: dict,
    epoch: int,
    iteration: int,
    optimizer: dict | None = None,
    scheduler: dict | None = None,
    extra: dict | None = None,
) -> None:
    """One checkpoint file; `epoch` = epochs completed. Non-finite weights are never
    written (TrainingDiverged): the previous checkpoint stays the last good one."""
    import eoid

    bad = [
        k
        for k, v in model.items()
        if torch.is_tensor(v)
        and v.is_floating_point()
        and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise TrainingDiverged(
            f"{path}: not written: weights {bad[:3]} hold non-finite values after "
            f"iteration {iteration}; the previous checkpoint is kept. Lower optim.lr "
            "(and check the data), then --resume."
        )
    atomic_torch_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "eoid_version": getattr(eoid, "__version__", "0"),
            "torch_version": str(torch.__version__),
            "model": model,
            "optimizer": optimizer,
            "scheduler": scheduler,
            "epoch": epoch,
            "iteration": iteration,
            "config": config,
            "vocabulary": vocabulary,
            "extra": extra or {},
        },
        path,
    )


def load_checkpoint(path: Path, mmap: bool = False) -> dict:
    """Read and check an eoid checkpoint; anything else is a CheckpointError saying what
    is wrong.

    mmap: map the tensors instead of reading them (cheap when only the config is
    wanted).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint. Pass the checkpoint.pt of a run folder."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # truncated zip, foreign pickle with code, ...
        raise CheckpointError(
            f"{path}: not a readable eoid checkpoint ({type(err).__name__}: "
            f"{first_line(err)}). It may be truncated or not "
            "from eoid; use another file."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an eoid checkpoint (no '{FORMAT}' format tag). "
            "To start from DETR weights use student.detr_init instead."
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {ckpt.get('version')}, this eoid "
            f"reads version {VERSION}. Use a matching eoid release."
        )
    missing = [k for k, kind in REQUIRED.items() if not isinstance(ckpt.get(k), kind)]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint lacks {missing} (or holds the wrong kind of value): "
            "it was edited or written by another program. Use the run's own "
            "checkpoint.pt."
        )
    return ckpt


def load_state(target: Any, state: Any, path: Path, what: str) -> None:
    """`target.load_state_dict(state)` (a model, optimizer or scheduler); a misfit is a
    CheckpointError.
    """
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        raise CheckpointError(
            f"{path}: the {what} in it does not fit ({type(err).__name__}: "
            f"{first_line(err)}). The file is damaged or was edited; use the run's "
            "own checkpoint.pt."
        ) from None


def evaluation_recipe(path: Path) -> dict[str, Any]:
    """The [augment] and [post] sections a checkpoint was trained and validated with.

    `evaluate` and `predict` start from these, so a student trained at 160 px is tested
    at 160 px unless the user's config or --set says otherwise. A section this eoid
    cannot read is a ConfigError naming the checkpoint.
    """
    return recipe_sections(load_checkpoint(path, mmap=True).get("config", {}), path)


def recipe_sections(config: dict[str, Any], where: Path | str) -> dict[str, Any]:
    """The [augment] and [post] sections of a resolved config dict, checked by this
    eoid's loader.
    """
    sections = {"augment": AugmentConfig, "post": PostprocessConfig}
    return {
        name: to_dict(from_dict(cls, config[name], f"{where} [{name}]"))
        for name, cls in sections.items()
        if name in config
    }


# student fields that change the shape or meaning of the weights
ARCHITECTURE_FIELDS = ("preset", "num_queries", "is_head")


def require_fits(
    ckpt: dict,
    path: Path,
    vocabulary: dict,
    student: dict,
    fields: tuple[str, ...] = ARCHITECTURE_FIELDS,
) -> None:
    """Refuse (CheckpointError) a checkpoint built for another vocabulary or student
    architecture.

    `vocabulary` is Vocabulary.to_json() of this run, `student` its [student] config as
    a dict, `fields` the student fields compared; the message lists every difference, so
    resuming or fine-tuning never fails deep in torch.
    """
    diffs = []
    theirs = ckpt.get("vocabulary") or {}
    for key, what in (
        ("name", "vocabulary name"),
        ("verbs", "verbs"),
        ("objects", "objects"),
        ("hois", "HOI categories"),
    ):
        a, b = theirs.get(key), vocabulary.get(key)
        if a != b:
            if isinstance(a, list) and isinstance(b, list):
                diffs.append(
                    f"{what}: checkpoint has {len(a)}, this run {len(b)}"
                    + _first_difference(a, b)
                )
            else:
                diffs.append(f"{what}: checkpoint has {a!r}, this run {b!r}")
    saved = (ckpt.get("config") or {}).get("student", {})
    for key in fields:
        if key in saved and saved[key] != student.get(key):
            diffs.append(
                f"student.{key}: checkpoint has {saved[key]!r}, this run"
                f" {student.get(key)!r}"
            )
    if diffs:
        raise CheckpointError(
            f"{path} does not fit this run: "
            + "; ".join(diffs)
            + ". Use the checkpoint of a run with the same vocabulary and student, or"
            " another --out."
        )


def _first_difference(a: list, b: list) -> str:
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else "<none>"), (b[i] if i < len(b) else "<none>")
        if x != y:
            return f" (first difference at {i}: {x!r} vs {y!r})"
    return ""
