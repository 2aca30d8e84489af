"""A study: the schema of STUDY.toml, read and checked before anything trains (its
runs are planned in study_plan.py; `eoid sweep` runs them: run_sweep.py).

A study is a TOML file (the paper's are in configs/studies/):

    about   = "Table 3 (UA): A_U only x detach"     # title of the table and the plot
    base    = "../hico_ua.toml"      # training recipe every variant starts from
                                     # (relative to this file)
    seeds   = [42]                   # optim.seed of each run (default [42]); a variant may override
    metrics = ["full", "seen", "unseen"]   # results.json mAP groups shown (full rare
                                           # non_rare seen unseen hm); with seen and unseen
                                           # the tables add hm (their HM)
    columns = ["A_U only", "detach"]       # extra text columns, filled from each
                                           # variant's `columns`
    set     = ["optim.epochs=90"]          # overrides applied to every variant

    [caches.rn50x16]                 # a named teacher cache shared by the variants that use it:
    recipe = "../cache_hico_rn50x16.toml"  #   a cache recipe, built once (resumed if
    #                                      #   interrupted), or
    # path = "teacher_cache/hico_rn50x16"  #   an existing finished cache folder (relative to the
    #                                      #   working directory, as `cache` in recipes); with both,
    #                                      #   `path` is where the recipe's cache is written.
    [caches.ensemble]                # a cache made from the study's other caches,
    #                                #   after them, at `path`:
    merge = ["rn50x16", "vitl14"]    #   `eoid cache merge` of these (in order), with optional
    weights = [1, 1]                 #   weights (default equal) and
    rule = "mean"                    #   rule ("mean" or "geometric"); or
    # relabel = { from = "rn50x16", templates = "../prompts/hoi_templates.txt" }   # `eoid cache
    #                                #   relabel` of one, with `template`, `templates`,
    #                                #   `descriptions` (files relative to this file) and/or `gamma`
    path = "teacher_cache/hico_ensemble"

    [[variants]]
    name    = "neither"              # run folder name: letters, digits, '.', '_', '-'
    label   = "neither"              # row label (default: name)
    base    = "../hico_uc.toml"      # optional: another base recipe for this variant
    cache   = "rn50x16"              # which [caches] entry; default: the only one;
                                     # "" = none (no teacher)
    set     = ["loss.a_u_only=false", "student.detach=false"]
    over    = { "data.setting" = ["uc0", "uc1"] }   # optional: one run per value (x seeds), one row
    columns = { "A_U only" = "", detach = "" }
    paper   = { full = 27.93, seen = 29.15, unseen = 21.84 }   # optional reference numbers

Each variant expands to runs = (product of its `over` values) x seeds; its row in the
table is the mean ± std over those runs. Override order for a run: base recipe < study
`set` < `eoid sweep --set` < variant `set` < `over` value < seed, then the run folder
and cache.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoid.config import TeacherConfig
from eoid.config_loading import check_value, read_toml
from eoid.errors import ConfigError

log = logging.getLogger(__name__)

METRIC_GROUPS = ("full", "rare", "non_rare", "seen", "unseen", "hm")
STUDY_KEYS = {
    "about",
    "base",
    "seeds",
    "metrics",
    "columns",
    "set",
    "caches",
    "variants",
}
VARIANT_KEYS = {
    "name",
    "label",
    "base",
    "cache",
    "seeds",
    "over",
    "set",
    "columns",
    "paper",
}
CACHE_KEYS = {"recipe", "path", "set", "merge", "weights", "rule", "relabel"}
RELABEL_KEYS = {"from", "template", "templates", "descriptions", "gamma"}


@dataclass(frozen=True)
class DerivedCache:
    """A cache a study makes from its other caches: `eoid cache merge` or `eoid cache
    relabel`.
    """

    kind: str  # "merge" or "relabel"
    # names of the study's caches it is made from, in order
    sources: tuple[str, ...]
    weights: str | None = None  # merge: "w1,w2,..." as --weights (None: equal)
    rule: str = "mean"  # merge: "mean" or "geometric"
    template: str | None = None  # relabel: one prompt template
    # relabel: a templates file, resolved against the study file
    templates: Path | None = None
    # relabel: a descriptions file, resolved against the study file
    descriptions: Path | None = None
    gamma: float | str | None = None  # relabel: a new gamma (a number or "model")


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class CacheSpec:
    """One named teacher cache of a study: an existing folder and/or a recipe to build
    it.
    """

    name: str
    # cache recipe (phase: cache), resolved against the study file
    recipe: Path | None
    # cache folder (relative to the working directory), or the recipe's `out`
    path: Path | None
    overrides: tuple[str, ...]  # --set overrides for the recipe
    # made from other caches of the study (then `path` is given)
    derived: DerivedCache | None = None


@dataclass(frozen=True)
class Variant:
    """One row of the study's table."""

    name: str
    label: str
    base: Path
    # name in Study.caches, "" = none, None = the recipe's own `cache`
    cache: str | None
    seeds: tuple[int, ...]
    # (dotted key, values) swept inside the row
    over: tuple[tuple[str, tuple[Any, ...]], ...]
    overrides: tuple[str, ...]
    columns: dict[str, str]
    paper: dict[str, float]


@dataclass(frozen=True)
class Study:
    path: Path
    about: str
    metrics: tuple[str, ...]
    columns: tuple[str, ...]
    overrides: tuple[str, ...]
    caches: dict[str, CacheSpec]
    variants: tuple[Variant, ...]


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    from difflib import get_close_matches

    for key in sorted(set(raw) - allowed):
        near = get_close_matches(key, allowed, n=1)
        tip = f"did you mean {near[0]!r}?" if near else f"valid keys: {sorted(allowed)}"
        raise ConfigError(f"{where}: unknown key {key!r}; {tip}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f'{where}: expected a list of strings like ["loss.distill=500"], got'
            f" {value!r}"
        )
    return tuple(value)


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(
            f"{where}: expected a non-empty list of integer seeds, got {value!r}"
        )
    return tuple(value)


def _derived(spec: dict, study: Path, where: str) -> DerivedCache | None:
    """The `merge` or `relabel` of a [caches.NAME] table, checked; None for a recipe or
    a folder.
    """
    kinds = [k for k in ("merge", "relabel") if k in spec]
    if not kinds:
        for key in ("weights", "rule"):
            if key in spec:
                raise ConfigError(
                    f'{where}: `{key}` belongs to a `merge`; add `merge = ["a", "b"]`.'
                )
        return None
    if len(kinds) > 1 or "recipe" in spec:
        raise ConfigError(f"{where}: give one of `recipe`, `merge` and `relabel`.")
    if "path" not in spec:
        raise ConfigError(
            f'{where}: a {kinds[0]} needs `path = "folder"`, where it is written.'
        )
    if kinds[0] == "merge":
        weights = spec.get("weights")
        if weights is not None and (
            not isinstance(weights, list)
            or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights
            )
        ):
            raise ConfigError(
                f"{where}: `weights` must be a list of numbers, e.g. [2, 1]; got"
                f" {weights!r}"
            )
        if spec.get("rule", "mean") not in ("mean", "geometric"):
            raise ConfigError(
                f'{where}: `rule` must be "mean" or "geometric", got {spec["rule"]!r}'
            )
        return DerivedCache(
            "merge",
            _strings(spec["merge"], f"{where} merge"),
            None if weights is None else ",".join(str(w) for w in weights),
            spec.get("rule", "mean"),
        )
    relabel = spec["relabel"]
    if not isinstance(relabel, dict) or not isinstance(relabel.get("from"), str):
        raise ConfigError(
            f"{where}: `relabel` is a table naming its source, e.g. relabel = "
            '{ from = "rn50x16", templates = "../prompts/hoi_templates.txt" }'
        )
    _check_keys(relabel, RELABEL_KEYS, f"{where} relabel")
    for key in ("template", "gamma"):
        if key in relabel:
            check_value(TeacherConfig, key, relabel[key], f"{where} relabel.{key}")
    files = {
        k: study.parent / relabel[k]
        for k in ("templates", "descriptions")
        if k in relabel
    }
    for key, file in files.items():
        if not file.is_file():
            raise ConfigError(
                f"{where} relabel.{key}: {file} is not a file (a path relative to the"
                " study)."
            )
    return DerivedCache(
        "relabel",
        (relabel["from"],),
        template=relabel.get("template"),
        gamma=relabel.get("gamma"),
        **files,
    )


def build_order(caches: dict[str, CacheSpec], names: set[str], where: str) -> list[str]:
    """`names` and every cache they are made from, each after its sources; an unknown
    source or a circle is a ConfigError."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise ConfigError(
                f"{where}: caches made from each other: {' -> '.join((*chain, name))}."
            )
        spec = caches[name]
        for source in spec.derived.sources if spec.derived else ():
            if source not in caches:
                raise ConfigError(
                    f"{where} [caches.{name}]: {source!r} is not one of the study's"
                    f" caches {sorted(caches)}."
                )
            visit(source, (*chain, name))
        order.append(name)

    for name in sorted(names):
        visit(name, ())
    return order


def read_study(path: Path | str) -> Study:
    """Parse and check a study file; problems are ConfigErrors naming the file and the
    key.
    """
    path = Path(path)
    raw = read_toml(path)
    _check_keys(raw, STUDY_KEYS, str(path))
    if "base" not in raw or not isinstance(raw["base"], str):
        raise ConfigError(
            f'{path}: a study needs `base = "recipe.toml"` (the training recipe).'
        )
    base = path.parent / raw["base"]
    seeds = _seeds(raw.get("seeds", [42]), f"{path} seeds")
    metrics = _strings(
        raw.get("metrics", ["full", "seen", "unseen"]), f"{path} metrics"
    )
    for m in metrics:
        if m not in METRIC_GROUPS:
            raise ConfigError(
                f"{path} metrics: unknown group {m!r}; choose from"
                f" {list(METRIC_GROUPS)}"
            )
    caches = {}
    for name, spec in raw.get("caches", {}).items():
        where = f"{path} [caches.{name}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a table with `recipe` and/or `path`.")
        _check_keys(spec, CACHE_KEYS, where)
        derived = _derived(spec, path, where)
        if "recipe" not in spec and "path" not in spec:
            raise ConfigError(
                f'{where}: give `recipe = "cache_recipe.toml"` or `path ='
                ' "cache_folder"`.'
            )
        caches[name] = CacheSpec(
            name,
            path.parent / spec["recipe"] if "recipe" in spec else None,
            Path(spec["path"]) if "path" in spec else None,
            _strings(spec.get("set", []), f"{where} set"),
            derived,
        )
    build_order(caches, set(caches), str(path))  # every source named, no circle
    variants, seen = [], set()
    for i, v in enumerate(raw.get("variants", [])):
        where = f"{path} [[variants]] #{i + 1}"
        _check_keys(v, VARIANT_KEYS, where)
        name = v.get("name", "")
        if not isinstance(name, str) or not NAME.match(name) or name in seen:
            raise ConfigError(
                f"{where}: `name` {name!r} must be unique and made of letters, digits, "
                "'.', '_' and '-' (it names the run folder)."
            )
        seen.add(name)
        cache = v.get("cache", next(iter(caches)) if len(caches) == 1 else None)
        if cache not in (None, "") and cache not in caches:
            raise ConfigError(
                f"{where}: cache {cache!r} is not one of the study's [caches] "
                f"{sorted(caches)}; add a [caches.{cache}] table or fix the name."
            )
        over = v.get("over", {})
        if not isinstance(over, dict) or not all(
            isinstance(x, list) and x for x in over.values()
        ):
            raise ConfigError(
                f"{where}: `over` must map keys to non-empty lists, e.g. "
                'over = { "data.setting" = ["uc0", "uc1"] }'
            )
        paper = v.get("paper", {})
        if not all(
            k in METRIC_GROUPS and isinstance(x, (int, float)) for k, x in paper.items()
        ):
            raise ConfigError(
                f"{where}: `paper` maps groups {list(METRIC_GROUPS)} to numbers, got"
                f" {paper!r}"
            )
        variants.append(
            Variant(
                name=name,
                label=str(v.get("label", name)),
                base=path.parent / v["base"] if "base" in v else base,
                cache=cache,
                seeds=_seeds(v["seeds"], f"{where} seeds") if "seeds" in v else seeds,
                over=tuple((k, tuple(x)) for k, x in over.items()),
                overrides=_strings(v.get("set", []), f"{where} set"),
                columns={str(k): str(x) for k, x in v.get("columns", {}).items()},
                paper={k: float(x) for k, x in paper.items()},
            )
        )
    if not variants:
        raise ConfigError(
            f"{path}: no [[variants]]; add at least one (an empty `set` runs the base"
            " recipe)."
        )
    return Study(
        path,
        str(raw.get("about", path.stem)),
        metrics,
        _strings(raw.get("columns", []), f"{path} columns"),
        _strings(raw.get("set", []), f"{path} set"),
        caches,
        tuple(variants),
    )
