"""What a training run finds in its run folder before it trains: whether the folder
holds a finished run that this config would only rerun (then nothing is trained and no
file changes), the checkpoint a run resumes from and the config changes it may bring
(checked before any file is written), what a new or resumed run writes first (its config
or the changes, and the skipped bad records), and how many batches of the epoch a
mid-epoch checkpoint covers at this run's batch size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eoid.checkpoint import load_checkpoint, require_fits
from eoid.config import TrainConfig, dumps_toml, to_dict
from eoid.devices import World
from eoid.errors import ConfigError
from eoid.files import write_text_atomic
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.training.provenance import (
    RUN_LENGTH,
    config_changes,
    record_changes,
    require_allowed,
)
from eoid.pipeline.training.training_set import TrainingSet

log = logging.getLogger(__name__)


def finished_run(cfg: TrainConfig, out: Path) -> dict | None:
    """The checkpoint of a finished run in `out` that this config would only rerun, else
    None.

    Finished: every epoch (or optim.max_iters) trained and, with a test set,
    results.json written. Rerunning it (with or without --resume) changes no file; a
    rerun with other hyper-parameters goes on to the usual refusal, and a longer
    optim.epochs trains on.
    """
    last = out / "checkpoint.pt"
    if not last.is_file():
        return None
    ckpt = load_checkpoint(last, mmap=True)
    done = (
        ckpt["epoch"] >= cfg.optim.epochs
        or 0 < cfg.optim.max_iters <= ckpt["iteration"]
    )
    if not done or (cfg.data.test_annotations and not (out / "results.json").is_file()):
        return None
    changes = config_changes(ckpt["config"], cfg, f"{last} [config]")
    if any(k not in RUN_LENGTH for k in changes) and not (
        cfg.resume and cfg.allow_changes
    ):
        return None
    return ckpt


def resume_point(
    cfg: TrainConfig, out: Path, vocab: Vocabulary
) -> tuple[dict | None, dict]:
    """(checkpoint to continue from or None, config changes it allows), checked
    before any file is written: a refused --resume changes nothing in the run folder."""
    last = out / "checkpoint.pt"
    if not last.exists():
        # --resume continues a run if there is one: a job script can always pass it
        if cfg.resume:
            log.warning(
                "%s holds no checkpoint.pt, so there is nothing to resume: starting a"
                " new run there.",
                out,
            )
        return None, {}
    if not cfg.resume:
        raise ConfigError(
            f"{out} already holds a run (checkpoint.pt). Pass --resume to continue it, "
            "or choose another --out."
        )
    ckpt = load_checkpoint(last)
    require_fits(ckpt, last, vocab.to_json(), to_dict(cfg.student))
    changes = config_changes(ckpt["config"], cfg, f"{last} [config]")
    require_allowed(changes, cfg.allow_changes, last)
    return ckpt, changes


def start_run_folder(
    cfg: TrainConfig,
    out: Path,
    data: TrainingSet,
    world: World,
    ckpt: dict | None,
    changes: dict,
) -> None:
    """Write the resolved config of a new run (a resumed run keeps its own and
    records what changed) and the skipped records."""
    if world.is_main:
        if ckpt is None or not (out / "config.toml").is_file():
            write_text_atomic(out / "config.toml", dumps_toml(cfg), "the run's config")
        elif changes:
            batch = int(ckpt.get("extra", {}).get("batches_done", 0))
            record_changes(out, changes, ckpt["epoch"] + 1, ckpt["iteration"], batch)
        if data.num_problems:
            write_text_atomic(
                out / "bad_records.json",
                json.dumps(data.bad_report, indent=1),
                "bad_records.json",
            )
            log.warning(
                "skipped %d bad record(s) (%d problem(s)); listed in %s",
                data.num_skipped,
                data.num_problems,
                out / "bad_records.json",
            )


def batches_done(ckpt: dict, batch_size: int) -> int:
    """Batches of this run's size that the checkpoint's mid-epoch position covers.

    A resume with another optim.batch_size (after running out of memory) goes on from
    the same image of the epoch's order, or up to one batch before it.
    """
    done = int((ckpt.get("extra") or {}).get("batches_done", 0))
    saved = int(
        ((ckpt.get("config") or {}).get("optim") or {}).get("batch_size", batch_size)
    )
    return done * saved // batch_size
