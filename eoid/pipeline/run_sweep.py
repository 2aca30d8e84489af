"""`eoid sweep STUDY.toml --out runs/STUDY`: a whole ablation study on shared teacher
caches.

Runs every variant's runs in order (or every n-th from i: one job-array part), each
reading its cache in place; a run with results.json is never rerun, one with only
checkpoint.pt is resumed, a run folder written by a different config is refused. Caches
a study names by recipe are built once (by a single process, or by `--caches-only`
before the parts start). Then DIR/table.md, table.csv and table.png are written from
every finished run. The study file's keys: study.py.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from eoid.config import parse_part
from eoid.devices import World
from eoid.errors import CacheMismatchError, ConfigError, TrainingDiverged
from eoid.files import file_sha256, output_folder, read_json, write_text_atomic
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.run_cache_merge import run_merge
from eoid.pipeline.run_cache_relabel import run_relabel
from eoid.pipeline.run_train import run_train
from eoid.pipeline.study import CacheSpec, Study, build_order, read_study
from eoid.pipeline.study_plan import (
    PlannedRun,
    cache_config,
    cache_folders,
    check_same_config,
    plan_study,
    runs_for_part,
)
from eoid.pipeline.study_tables import collect_rows, markdown_table, write_tables
from eoid.teacher_cache.lookup import check_complete
from eoid.teacher_cache.manifest import require_match

log = logging.getLogger(__name__)


def _teacher_differs(manifest: dict, teacher: Any) -> list[str]:
    """Teacher fields of a cache recipe that disagree with what a finished cache was
    built with.
    """
    built = manifest.get("config", {}).get("teacher", {})
    return [
        f"{k}: cache {built.get(k)!r}, recipe {getattr(teacher, k)!r}"
        for k in ("model", "weights", "template", "gamma", "precision")
        if k in built and built[k] != getattr(teacher, k)
    ]


def _derived_differs(
    manifest: dict, spec: CacheSpec, folders: dict[str, Path]
) -> list[str]:
    """What a finished merged or relabelled cache was made from that its study entry
    does not ask for.
    """
    derived = spec.derived
    assert derived is not None
    sources = [str(folders[s]) for s in derived.sources]
    if derived.kind == "merge":
        made = manifest.get("merge", {})
        weights = [
            float(w)
            for w in (derived.weights or ",".join("1" * len(sources))).split(",")
        ]
        asked = {
            "members": sources,
            "rule": derived.rule,
            "weights": [round(w / sum(weights), 9) for w in weights],
        }
        found = {
            "members": [m.get("path") for m in made.get("members", [])],
            "rule": made.get("rule"),
            "weights": [round(w, 9) for w in made.get("weights", [])],
        }
    else:
        files, teacher = (
            manifest.get("prompt_files", {}),
            manifest.get("config", {}).get("teacher", {}),
        )
        asked = {
            "source": sources[0],
            "templates": derived.templates and str(derived.templates),
            "descriptions": derived.descriptions and str(derived.descriptions),
            "template": derived.template,
            "gamma": derived.gamma,
        }
        found = {
            "source": manifest.get("relabelled_from"),
            "templates": files.get("templates"),
            "descriptions": files.get("descriptions"),
            "template": derived.template and teacher.get("template"),
            "gamma": derived.gamma and teacher.get("gamma"),
        }
    return [
        f"{k}: cache {found[k]!r}, study {asked[k]!r}"
        for k in asked
        if found[k] != asked[k]
    ]


def _build_derived(spec: CacheSpec, folders: dict[str, Path]) -> None:
    """`eoid cache merge` or `eoid cache relabel` of a study's derived cache, its
    sources built.
    """
    derived, out = spec.derived, folders[spec.name]
    assert derived is not None
    sources = [folders[s] for s in derived.sources]
    if derived.kind == "merge":
        run_merge(sources, out, derived.weights, derived.rule)
    else:
        run_relabel(
            sources[0],
            out,
            derived.template,
            derived.gamma,
            templates=derived.templates,
            descriptions=derived.descriptions,
        )


def ensure_caches(
    study: Study,
    names: set[str],
    shared: tuple[str, ...],
    world: World,
    may_build: bool,
) -> dict[str, Path]:
    """Build (or resume) each needed cache once, a merged or relabelled one after its
    sources; a finished one is checked against its recipe or sources, not rebuilt."""
    ready = {}
    folders = cache_folders(study, shared)
    for name in build_order(study.caches, names, str(study.path)):
        spec = study.caches[name]
        folder = folders[name]
        manifest = folder / "manifest.json"
        if manifest.is_file():
            made = read_json(manifest, CacheMismatchError)
            differs = (
                _derived_differs(made, spec, folders)
                if spec.derived
                else (
                    _teacher_differs(made, cache_config(spec, shared).teacher)
                    if spec.recipe
                    else []
                )
            )
            if differs:
                asked = spec.recipe or f"[caches.{name}]"
                raise CacheMismatchError(
                    f"{folder} was built with another teacher than {asked} asks for"
                    f" ({'; '.join(differs)}). Move that folder away, or set `path` in"
                    f" the study's [caches.{name}] to a new folder."
                )
        elif spec.derived is not None and may_build:
            log.info(
                "making teacher cache %r in %s from %s",
                name,
                folder,
                ", ".join(spec.derived.sources),
            )
            _build_derived(spec, folders)
        elif spec.recipe is None and spec.derived is None:
            raise ConfigError(
                f"{study.path} [caches.{name}]: {folder} is not a finished teacher"
                " cache (no manifest.json). Build it with `eoid cache-teacher`, or"
                " give a `recipe`."
            )
        elif not may_build:
            raise ConfigError(
                f"{folder}: cache {name!r} is not built yet, and parts of a job array "
                "must not build it concurrently. Run `eoid sweep STUDY --out DIR "
                "--caches-only` once first, then launch the parts."
            )
        else:
            log.info("building teacher cache %r in %s", name, folder)
            run_cache(cache_config(spec, shared), world)
        ready[name] = folder
    return ready


def check_cache_fits(runs: list[PlannedRun]) -> None:
    """Refuse (CacheMismatchError naming the variant) a run whose cache was built for
    other data.
    """
    checked: set[tuple[str, str, str]] = set()
    for r in runs:
        what = (r.cfg.cache, r.cfg.data.dataset, r.cfg.data.train_annotations)
        if not r.needs_cache or what in checked:
            continue
        if not r.cfg.cache:
            raise ConfigError(
                f"variant {r.variant.name!r}: distillation is on but no cache is named;"
                " give the variant a `cache` (or set loss.distill=0)."
            )
        found = check_complete(Path(r.cfg.cache))["fingerprint"]
        expected = {
            "vocabulary": load_vocabulary(r.cfg.data.dataset).fingerprint(),
            "annotations_sha256": file_sha256(Path(r.cfg.data.train_annotations)),
        }
        require_match(
            f"teacher cache {r.cfg.cache} (variant {r.variant.name!r})",
            found,
            expected,
            fix="Point the variant at a cache built from its training annotations.",
            ignore=tuple(k for k in found if k not in expected),
        )
        checked.add(what)


def run_sweep(
    study_path: Path | str,
    out: Path | str,
    world: World,
    part: str = "",
    overrides: tuple[str, ...] = (),
    caches_only: bool = False,
    collect_only: bool = False,
) -> str:
    """Run (or resume) a study's runs of job-array part `part`, then write its tables;
    returns the table.
    """
    if not out:
        raise ConfigError("no study folder given: pass --out runs/STUDY.")
    study, out = (
        read_study(study_path),
        output_folder(
            Path(out), "the study folder", owner="sweep", signs=("study.toml",)
        ),
    )
    shared = study.overrides + tuple(overrides)
    index, num_parts = parse_part(part)
    planned = plan_study(study, out, tuple(overrides))
    mine = runs_for_part(planned, index, num_parts)
    if not collect_only:
        wanted = planned if caches_only else mine
        names = {r.variant.cache for r in wanted if r.needs_cache and r.variant.cache}
        ensure_caches(
            study, names, shared, world, may_build=num_parts == 1 or caches_only
        )
        if caches_only:
            return "caches ready: " + ", ".join(sorted(names))
        check_cache_fits(mine)
        for r in mine:
            check_same_config(r)
        failed = _train_all(mine, world)
    else:
        failed = []
    if not world.is_main:
        return ""
    write_text_atomic(out / "study.toml", study.path.read_text(), "the study file")
    rows = collect_rows(
        study,
        {
            v.name: [r.folder for r in planned if r.variant.name == v.name]
            for v in study.variants
        },
    )
    written = write_tables(study, rows, out)
    note = f"\nfailed runs (diverged; see their logs): {failed}" if failed else ""
    return (
        markdown_table(study, rows) + "\n\nwrote " + ", ".join(map(str, written)) + note
    )


def _train_all(runs: list[PlannedRun], world: World) -> list[str]:
    """Train runs in order; finished ones (results.json) are skipped, interrupted ones
    resumed.
    """
    failed = []
    for i, r in enumerate(runs):
        name = f"{r.variant.name}/{r.run.key}"
        if (r.folder / "results.json").is_file():
            log.info("[%d/%d] %s: finished, skipped", i + 1, len(runs), name)
            continue
        resume = (r.folder / "checkpoint.pt").is_file()
        log.info(
            "[%d/%d] %s: %s",
            i + 1,
            len(runs),
            name,
            "resuming" if resume else "training",
        )
        try:
            run_train(dataclasses.replace(r.cfg, resume=resume), world)
        except TrainingDiverged as err:
            log.error("%s: %s", name, err)
            failed.append(name)
    return failed
