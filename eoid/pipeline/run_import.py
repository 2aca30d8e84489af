"""`eoid import-checkpoint`: the authors' released EoID / CDN checkpoints as eoid
checkpoints.

The runner: check the output, plan the import (pipeline/training/original_checkpoint.py
reads the file with `weights_only=True`, maps every key and builds the student), print
the plan, and write the eoid checkpoint unless it is a dry run or the plan has a
problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from eoid.errors import CheckpointError, ConfigError
from eoid.files import new_file
from eoid.pipeline.training.import_report import format_plan
from eoid.pipeline.training.original_checkpoint import (
    plan_import,
    setting_of,
    write_import,
)


def run_import(
    path: Path,
    source: str,
    out: Path | None,
    preset: str | None,
    dataset: str | None,
    check: bool,
    echo: Callable[[str], Any],
) -> str:
    """Report (through `echo`) how every key of `path` lands; write `out` unless `check`
    or a problem.
    """
    if not check and out is None:
        raise ConfigError(
            "no output given: pass --out CKPT (or --check for a dry run)."
        )
    if out is not None and not check:
        out = new_file(out, "the imported checkpoint")
    plan = plan_import(path, source, preset, dataset)
    echo(format_plan(plan))
    if plan.problems:
        raise CheckpointError(
            f"{path}: refusing to write {out or 'a checkpoint'}: "
            + "; ".join(plan.problems)
            + " (listed above)."
        )
    if check:
        return "dry run (--check): every key lands; nothing written."
    write_import(plan, out)
    setting = setting_of(plan)
    return (
        f"wrote {out}; score it with `eoid evaluate --checkpoint {out} --annotations"
        " ... --images ..." + (f" --setting {setting}`" if setting else "`")
    )
