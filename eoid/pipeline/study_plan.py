"""The runs of a study, planned before anything trains: each variant expands to its runs
(the product of its `over` values, each with every seed), each run gets its folder and its
resolved TrainConfig (a typo in any variant fails here), the study's caches their folders,
and a run folder that a different study config wrote is refused rather than skipped or
resumed; `--part i/n` takes every n-th run from i.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoid.config import CacheConfig, TrainConfig, to_dict
from eoid.config_loading import from_dict, load_config, read_toml
from eoid.errors import ConfigError
from eoid.pipeline.study import CacheSpec, Study, Variant


@dataclass(frozen=True)
class RunKey:
    """One training run of a variant: its folder name and the overrides that make it."""

    variant: str
    key: str  # e.g. "seed42" or "uc0_seed42"
    overrides: tuple[str, ...]  # the `over` values and the seed, as --set strings


def _value_text(value: Any) -> str:
    """A TOML scalar written for --set (JSON's string, number and boolean syntax is
    TOML's).
    """
    return json.dumps(value)


def expand_runs(variant: Variant) -> list[RunKey]:
    """The runs of a variant: product of its `over` values, each with every seed, in
    file order.
    """
    keys = [k for k, _ in variant.over]
    runs = []
    for combo in itertools.product(*(vals for _, vals in variant.over)):
        for seed in variant.seeds:
            parts = [re.sub(r"[^A-Za-z0-9.-]+", "-", str(x)) for x in combo] + [
                f"seed{seed}"
            ]
            sets = tuple(f"{k}={_value_text(x)}" for k, x in zip(keys, combo)) + (
                f"optim.seed={seed}",
            )
            runs.append(RunKey(variant.name, "_".join(parts), sets))
    return runs


def runs_for_part(runs: list[RunKey], part: int, num_parts: int) -> list[RunKey]:
    """The runs of job-array part `part` of `num_parts`: every num_parts-th run, from
    `part`.
    """
    return runs[part::num_parts]


@dataclass(frozen=True)
class PlannedRun:
    """A run of the study with its folder and resolved training config."""

    variant: Variant
    run: RunKey
    folder: Path
    cfg: TrainConfig

    @property
    def needs_cache(self) -> bool:
        return self.cfg.loss.distill > 0 and not self.cfg.online_teacher


def cache_config(spec: CacheSpec, shared: tuple[str, ...]) -> CacheConfig:
    """The cache recipe of `spec` with the study's `data.*` overrides (`shared`) and its
    own `set`.
    """
    assert spec.recipe is not None
    data_sets = tuple(o for o in shared if o.strip().startswith("data."))
    cfg = load_config(
        CacheConfig,
        spec.recipe,
        data_sets + spec.overrides,
        out=None if spec.path is None else str(spec.path),
    )
    if not cfg.out:
        raise ConfigError(
            f"{spec.recipe}: the cache recipe names no `out` folder; set `out` there "
            f"or `path` in the study's [caches.{spec.name}]."
        )
    return cfg


def cache_folders(study: Study, shared: tuple[str, ...]) -> dict[str, Path]:
    """Folder of each named cache of the study."""
    return {
        name: spec.path if spec.recipe is None else Path(cache_config(spec, shared).out)
        for name, spec in study.caches.items()
    }


def plan_study(
    study: Study, out: Path, overrides: tuple[str, ...] = ()
) -> list[PlannedRun]:
    """Every run of the study with its TrainConfig: a typo in any variant fails here,
    before training.
    """
    shared = study.overrides + tuple(overrides)
    folders = cache_folders(study, shared)
    planned = []
    for variant in study.variants:
        cache = (
            None
            if variant.cache is None
            else ""
            if variant.cache == ""
            else str(folders[variant.cache])
        )
        for run in expand_runs(variant):
            folder = out / "runs" / variant.name / run.key
            cfg = load_config(
                TrainConfig,
                variant.base,
                shared + variant.overrides + run.overrides,
                cache=cache,
                out=str(folder),
            )
            if not cfg.data.test_annotations:
                raise ConfigError(
                    f"{study.path}: variant {variant.name!r} has no"
                    " data.test_annotations, so its runs would write no results.json;"
                    " set it in the recipe or with --set data.test_annotations=FILE."
                )
            planned.append(PlannedRun(variant, run, folder, cfg))
    return planned


def check_same_config(run: PlannedRun) -> None:
    """Refuse to skip or resume a run folder that an earlier, different study config
    wrote.
    """
    path = run.folder / "config.toml"
    if not path.is_file():
        return
    # read through the dataclass: a field added by a later eoid takes its default, not a
    # difference
    old, new = (
        _flat(to_dict(from_dict(type(run.cfg), read_toml(path), str(path)))),
        _flat(to_dict(run.cfg)),
    )
    diff = sorted(
        k
        for k in old.keys() | new.keys()
        if k not in ("resume", "allow_changes", "break_lock")
        and old.get(k) != new.get(k)
    )
    if diff:
        raise ConfigError(
            f"{path}: this run folder was trained with another config (differs in"
            f" {diff[:5]}); the study or its recipes changed. Use another --out, or"
            " move the folder away to rerun it."
        )


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"section.key": value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(
            _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        )
    return out
