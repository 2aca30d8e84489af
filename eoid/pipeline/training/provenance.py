"""A run folder's history: what a --resume changes, whether it may, and where the change
is recorded.

RUN/config.toml holds the values the run started with and is never rewritten. A resume whose
config differs from the checkpoint's in a hyper-parameter is refused unless `--allow-changes`
is given; then each change is appended to RUN/config_changes.jsonl (and as a comment to
config.toml) with the epoch and iteration from which it applies. Fields that only say how the
run executes (RUN_ONLY) may change freely; the run's length (RUN_LENGTH) may change too, and is
recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from eoid.config import TrainConfig, to_dict
from eoid.config_loading import from_dict
from eoid.errors import CheckpointError, ConfigError
from eoid.files import write_text_atomic

RUN_ONLY = ("out", "resume", "allow_changes", "break_lock", "optim.num_workers")
# training longer or shorter: allowed, recorded
RUN_LENGTH = ("optim.epochs", "optim.max_iters")


def flat(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"section.key": value}."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        out.update(
            flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        )
    return out


def config_changes(
    saved: dict, now: TrainConfig, where: str
) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (checkpoint's value, this run's)} for every field that differs,
    RUN_ONLY aside.

    `saved` is the checkpoint's config dict, read through the dataclass so that a field
    added by a later eoid takes its default rather than counting as a change.
    """
    try:
        before = flat(to_dict(from_dict(TrainConfig, saved, where)))
    except ConfigError as err:
        raise CheckpointError(
            f"{err} The checkpoint's recipe cannot be read by this eoid."
        ) from None
    after = flat(to_dict(now))
    return {
        k: (before.get(k), after.get(k))
        for k in sorted(before.keys() | after.keys())
        if k not in RUN_ONLY and before.get(k) != after.get(k)
    }


def describe_changes(changes: dict[str, tuple[Any, Any]], limit: int = 5) -> str:
    """The first `limit` changes as "key old -> new; ..." for one-line messages."""
    return "; ".join(
        f"{k} {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:limit]
    )


def require_allowed(
    changes: dict[str, tuple[Any, Any]], allow: bool, checkpoint: Path
) -> None:
    """Refuse hyper-parameter changes (ConfigError listing them) unless `allow`
    (--allow-changes).
    """
    hyper = {k: v for k, v in changes.items() if k not in RUN_LENGTH}
    if hyper and not allow:
        raise ConfigError(
            f"{checkpoint} was trained with other values ({describe_changes(hyper)})."
            " Resume with the same values, or pass --allow-changes to apply them from"
            " here on (recorded in config_changes.jsonl)."
        )


def record_changes(
    out: Path,
    changes: dict[str, tuple[Any, Any]],
    epoch: int,
    iteration: int,
    batch: int,
) -> None:
    """Append the changes to OUT/config_changes.jsonl and, as comments, to
    OUT/config.toml.

    epoch: 1-based epoch from which they apply (from its batch `batch` after a mid-epoch
    stop).
    """
    row = {
        "from_epoch": epoch,
        "from_batch": batch,
        "iteration": iteration,
        "time": time.time(),
        "changes": {k: {"was": a, "now": b} for k, (a, b) in changes.items()},
    }
    log = out / "config_changes.jsonl"
    old = log.read_text() if log.is_file() else ""
    write_text_atomic(log, old + json.dumps(row) + "\n", "config_changes.jsonl")
    config = out / "config.toml"
    if config.is_file():
        where = (
            f"epoch {epoch}"
            + (f", batch {batch}" if batch else "")
            + f" (iteration {iteration})"
        )
        lines = [f"# from {where} with --resume (config_changes.jsonl):"]
        lines += [
            f"#   {k} = {json.dumps(b)}  (was {json.dumps(a)})"
            for k, (a, b) in changes.items()
        ]
        write_text_atomic(
            config, config.read_text() + "\n".join(lines) + "\n", "config.toml"
        )
