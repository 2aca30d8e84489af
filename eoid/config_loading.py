"""Strict loading of the config dataclasses in eoid.config: the value ranges (RANGES,
PAIRS) and the loader that builds a config from TOML, checking every key, type and
range.

Precedence: the defaults, then `--config file.toml`, then named flags, then `--set
section.key=value`. Unknown keys, wrong types and out-of-range values are a ConfigError
naming the input that set them. No torch import here: the CLI loads configs before it
pays for torch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import fields, is_dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar, get_type_hints

from eoid.config import (
    AugmentConfig,
    CacheConfig,
    DataConfig,
    EvalConfig,
    LossConfig,
    MatcherConfig,
    OptimConfig,
    PostprocessConfig,
    PredictConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VerbsConfig,
)
from eoid.config_values import (
    Check,
    Sources,
    above_up_to,
    at_least,
    below,
    between,
    coerce,
    gamma_problem,
    merge,
    one_of,
    parse_override,
    part_problem,
    shown,
    sizes,
    template_problem,
)
from eoid.errors import ConfigError

T = TypeVar("T")


# ---------------------------------------------------------------- value ranges
# from_dict checks every config it builds (a --config file, --set, flags, a checkpoint's
# recipe) against this table, so a bad value fails when it is loaded, naming the key and
# where it was set. A new field gets one line here. Every number must also be finite
# (checked for all fields).

RANGES: dict[type, dict[str, Check]] = {
    DataConfig: {
        "unknown_pairs": one_of("all", "annotated", "none"),
        "val_images": at_least(0),
        "val_fraction": between(0, 1),
        "val_seed": at_least(0),
        "max_boxes": at_least(1),
        "fraction": above_up_to(0, 1),
    },
    AugmentConfig: {
        "scales": sizes,
        "max_size": at_least(1),
        "crop_scales": sizes,
        "crop_min": at_least(1),
        "crop_max": at_least(1),
        "test_size": at_least(1),
        "color_jitter": at_least(0),
    },
    TeacherConfig: {
        "template": template_problem,
        "gamma": gamma_problem,
        "batch_size": at_least(1),
        "num_workers": at_least(0),
        "precision": one_of("auto", "fp32", "bf16", "fp16"),
        "min_iou": between(0, 1),
        "shard_rows": at_least(1),
    },
    StudentConfig: {
        "preset": one_of("cdn-s", "cdn-b", "cdn-l", "tiny"),
        "num_queries": at_least(1),
        "is_head": one_of("interaction", "human_object", "none"),
        "dropout": below(1),
    },
    MatcherConfig: {
        "cost_box_l1": at_least(0),
        "cost_giou": at_least(0),
        "cost_object": at_least(0),
        "cost_verb": at_least(0),
        "topk": at_least(0),
        "thres_is": between(0, 1),
        "is_iou": between(0, 1),
    },
    LossConfig: {
        "object_ce": at_least(0),
        "no_object_weight": at_least(0),
        "box_l1": at_least(0),
        "giou": at_least(0),
        "verb_focal": at_least(0),
        "focal_alpha": between(0, 1),
        "focal_gamma": at_least(0),
        "distill": at_least(0),
        "interactive": at_least(0),
        "distill_norm": one_of("tensor", "pairs"),
        "is_positives": one_of("overlap", "matched"),
    },
    OptimConfig: {
        "epochs": at_least(1),
        "lr": at_least(0),
        "lr_backbone": at_least(0),
        "weight_decay": at_least(0),
        "lr_drop": at_least(1),
        "clip_max_norm": at_least(0),
        "batch_size": at_least(1),
        "num_workers": at_least(0),
        "seed": at_least(0),
        "eval_every": at_least(1),
        "max_iters": at_least(0),
    },
    PostprocessConfig: {
        "top_k": at_least(1),
        "nms_threshold": between(0, 1),
        "nms_alpha": at_least(0),
        "nms_beta": at_least(0),
    },
    VerbsConfig: {
        "classifier": one_of("student", "clip", "blend"),
        "blend_weight": between(0, 1),
    },
    CacheConfig: {"part": part_problem, "seed": at_least(0)},
    EvalConfig: {"mode": one_of("default", "known_object"), "batch_size": at_least(1)},
    PredictConfig: {"top_k": at_least(1), "threshold": between(0, 1)},
}

# checks of two fields together: (section, (field, field), law, what the law says)
PAIRS: list[tuple[type, tuple[str, str], Callable[[Any, Any], bool], str]] = [
    (
        AugmentConfig,
        ("crop_min", "crop_max"),
        lambda low, high: low <= high,
        "must not exceed",
    ),
]


# ---------------------------------------------------------------- strict loading


def from_dict(
    cls: type[T], raw: Mapping[str, Any], where: str | Sources, prefix: str = ""
) -> T:
    """Build config dataclass `cls` from parsed TOML; unknown keys, bad types or ranges:
    ConfigError.

    where: the one source of every value (e.g. "x.toml [student]"), or a Sources naming
    each key's.
    """
    sources = where if isinstance(where, Sources) else Sources(where)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{sources.where(prefix.rstrip('.'))}: expected a table, got {raw!r}"
        )
    names = {f.name for f in fields(cls)}
    for key in sorted(raw.keys() - names):
        near = get_close_matches(key, names, n=1)
        tip = f"did you mean {near[0]!r}?" if near else f"valid keys: {sorted(names)}"
        raise ConfigError(f"{sources.where(prefix + key)}: unknown key {key!r}; {tip}")
    hints = get_type_hints(cls)
    cfg = cls(
        **{
            k: (
                from_dict(hints[k], v, sources, f"{prefix}{k}.")
                if is_dataclass(hints[k])
                else coerce(v, hints[k], f"{sources.where(prefix + k)} {k}")
            )
            for k, v in raw.items()
        }
    )
    _check_ranges(cfg, sources, prefix)
    return cfg


def _check_ranges(cfg: Any, sources: Sources, prefix: str) -> None:
    """Refuse a value outside its range (RANGES, PAIRS; any non-finite number), naming
    its source.
    """
    checks = RANGES.get(type(cfg), {})
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            continue
        items = value if isinstance(value, tuple) else (value,)
        problem = (
            "must be a finite number"
            if any(isinstance(x, float) and not math.isfinite(x) for x in items)
            else None
        )
        problem = problem or (checks[f.name](value) if f.name in checks else None)
        if problem:
            raise ConfigError(
                f"{sources.of(prefix + f.name)}: {prefix}{f.name} = {shown(value)}"
                f" {problem}."
            )
    for section, (a, b), law, says in PAIRS:
        if type(cfg) is section and not law(getattr(cfg, a), getattr(cfg, b)):
            blamed = next(
                (k for k in (a, b) if sources.of(prefix + k) != sources.default), a
            )
            raise ConfigError(
                f"{sources.of(prefix + blamed)}: {prefix}{a} = {getattr(cfg, a)} {says}"
                f" {prefix}{b} = {getattr(cfg, b)}."
            )


def check_value(cls: type, name: str, value: Any, source: str) -> None:
    """Check one value of field `cls.name` given outside a config (e.g. `--gamma`):
    ConfigError naming it.
    """
    fake = Sources(source)
    section = next(
        (
            k
            for k, v in ((f.name, f.type) for f in fields(TrainConfig))
            if v == cls.__name__
        ),
        "",
    )
    _check_ranges(
        dataclasses.replace(cls(), **{name: value}),
        fake,
        f"{section}." if section else "",
    )


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML recipe; a missing file or bad syntax is a ConfigError naming the
    file.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found. Pass an existing --config file."
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{path}: not valid TOML ({err}). Fix the syntax and rerun."
        ) from None
    except UnicodeDecodeError as err:  # tomllib reads UTF-8 only
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}); TOML files are UTF-8. "
            "Save it as UTF-8 and rerun."
        ) from None
    except OSError as err:  # a folder, no permission, a symlink loop, a name too long
        raise ConfigError(
            f"{path}: cannot read the config file ({err.strerror or err}). Pass a "
            "readable --config file."
        ) from None


def load_config(
    cls: type[T],
    path: Path | str | None = None,
    overrides: tuple[str, ...] = (),
    under: Mapping[str, Any] | None = None,
    under_source: str = "the checkpoint's recipe",
    **flags: Any,
) -> T:
    """Defaults < `under` < TOML file (with `base = "other.toml"` chains) < named flags
    < --set.

    `under`: raw sections that replace the dataclass defaults (e.g. a checkpoint's
    recipe, named `under_source` in messages); `flags` use dotted names as keys with
    `__` for the dot (e.g. `data__setting="ua"`); a flag whose value is None is not
    applied. An error names the one input that set the offending value.
    """
    raw: dict[str, Any] = copy.deepcopy(dict(under or {}))
    sources = Sources()
    sources.note(raw, under_source)
    if path is not None:
        raw = merge(raw, _read_with_base(Path(path), 0, sources))
    for name, value in flags.items():
        if value is None:
            continue
        node = raw
        parts = name.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        sources.note({".".join(parts): value}, f"the flag for {'.'.join(parts)}")
    for text in overrides:
        layer = parse_override(text)
        raw = merge(raw, layer)
        sources.note(layer, f"--set {text}")
    return from_dict(cls, raw, sources)


def _read_with_base(path: Path, depth: int, sources: Sources) -> dict[str, Any]:
    """Read a recipe; a top-level `base = "file.toml"` (relative to it) is read first
    and overridden.
    """
    if depth > 8:
        raise ConfigError(f"{path}: `base` chain deeper than 8 files; is there a loop?")
    raw = read_toml(path)
    base = raw.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a file name, got {base!r}")
    merged = (
        {} if base is None else _read_with_base(path.parent / base, depth + 1, sources)
    )
    sources.note(raw, str(path))
    return merge(merged, raw)
