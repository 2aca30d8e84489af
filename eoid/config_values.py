"""Values of config fields: type coercion, range checks, and which input set each value.

The dataclasses in config.py name their ranges with these checks (config_loading.RANGES);
`Sources` lets every message name the ONE input that set a bad value: a file, a --set, a
flag, a recipe.
"""

from __future__ import annotations

import dataclasses
import re
import string
import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, get_args, get_origin

from eoid.errors import ConfigError

# a field's value -> what is wrong with it, or None
Check = Callable[[Any], "str | None"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def described(says: str, check: Check) -> Check:
    """`check` with `says`, the range in words, for docs/config-reference.md."""
    check.says = says  # type: ignore[attr-defined]
    return check


def at_least(low: float) -> Check:
    return described(
        f">= {low}",
        lambda v: f"must be at least {low}" if _number(v) and v < low else None,
    )


def above(low: float) -> Check:
    return described(
        f"> {low}",
        lambda v: f"must be above {low}" if _number(v) and not v > low else None,
    )


def below(high: float) -> Check:
    return described(
        f"< {high}",
        lambda v: f"must be below {high}" if _number(v) and not v < high else None,
    )


def above_up_to(low: float, high: float) -> Check:
    def check(v: Any) -> str | None:
        return (
            f"must lie in ({low}, {high}]"
            if _number(v) and not low < v <= high
            else None
        )

    return described(f"in ({low}, {high}]", check)


def between(low: float, high: float) -> Check:
    def check(v: Any) -> str | None:
        return (
            f"must lie in [{low}, {high}]"
            if _number(v) and not low <= v <= high
            else None
        )

    return described(f"in [{low}, {high}]", check)


def one_of(*names: str) -> Check:
    listed = ", ".join(map(repr, names))
    return described(
        f"one of {listed}",
        lambda v: f"must be one of {listed}" if v not in names else None,
    )


def sizes(v: Any) -> str | None:
    """A non-empty list of positive pixel sizes."""
    if not v:
        return "must list at least one size, e.g. [800]"
    return "must list sizes of at least 1 px" if any(x < 1 for x in v) else None


described("a non-empty list of sizes >= 1 px", sizes)


# what vocab.prompts fills into teacher.template
PROMPT_FIELDS = ("verb_ing", "object")


def template_problem(template: str) -> str | None:
    """What is wrong with a prompt template (unknown {placeholders}, broken braces), or
    None.
    """
    try:
        names = [
            name
            for _, name, _, _ in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as err:
        return f"is not a valid template ({err}); write braces as {{{{ and }}}}"
    unknown = [n for n in names if n not in PROMPT_FIELDS]
    if unknown:
        valid = ", ".join("{" + n + "}" for n in PROMPT_FIELDS)
        return (
            f"has unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)};"
            f" valid: {valid}"
        )
    return None


described("a template with only {verb_ing} and {object}", template_problem)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint, converting TOML arrays to tuples."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in get_args(hint):
            if arm is type(None) and value is None:
                return None
            try:
                return coerce(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        arm, *_rest = get_args(hint)
        return tuple(coerce(v, arm, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")


class Sources:
    """Which one input set each config key: a file, a --set, a flag, a checkpoint's
    recipe.

    Keys are dotted ("optim.lr"); a key nobody set comes from `default` (the dataclass
    defaults, or a caller's description such as "x.pt [student]").
    """

    def __init__(self, default: str = "defaults"):
        self.default = default
        self._by_key: dict[str, str] = {}

    def note(self, layer: Mapping[str, Any], source: str, prefix: str = "") -> None:
        """Every key of `layer` (a parsed table) was set by `source`."""
        for k, v in layer.items():
            self._by_key[prefix + k] = source
            if isinstance(v, Mapping):
                self.note(v, source, f"{prefix}{k}.")

    def of(self, dotted: str) -> str:
        """The source of `dotted`, or of the nearest table above it that was set as a
        whole.
        """
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            found = self._by_key.get(".".join(parts[:n]))
            if found is not None:
                return found
        return self.default

    def where(self, dotted: str) -> str:
        """`source [section]` for messages about a key (a --set names its own key)."""
        source, section = self.of(dotted), dotted.rpartition(".")[0]
        return (
            f"{source} [{section}]"
            if section and not source.startswith("--set")
            else source
        )


# ---------------------------------------------------------------- configs as plain data
# and TOML


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain nested dicts and lists (for TOML, JSON and checkpoints)."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return (
        {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}
        if not is_dataclass(cfg)
        else {
            f.name: (
                to_dict(getattr(cfg, f.name))
                if is_dataclass(getattr(cfg, f.name))
                else plain(getattr(cfg, f.name))
            )
            for f in fields(cfg)
        }
    )


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            merge(out[k], v)
            if isinstance(v, Mapping) and isinstance(out.get(k), dict)
            else v
        )
    return out


def dumps_toml(cfg: Any) -> str:
    """The resolved config as TOML text (written next to every output)."""
    d = to_dict(cfg)
    top = {k: v for k, v in d.items() if not isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [
                f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()
            ]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def shown(value: Any) -> str:
    return (
        _toml_value(value)
        if isinstance(value, (bool, int, float, str, tuple, list))
        else repr(value)
    )


# ---------------------------------------------------------------- values given as text


def parse_part(text: str, flag: str = "--part") -> tuple[int, int]:
    """`i/n` (part i of n, 0-based: cluster job arrays) -> (i, n); "" -> (0, 1), the
    whole job.
    """
    if not text:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise ConfigError(
            f"{flag} {text!r}: expected i/n with 0 <= i < n, e.g. {flag} 0/4"
        )
    return int(m[1]), int(m[2])


def require_path(value: str, what: str, flag: str) -> Path:
    """A required path option; empty is a ConfigError that names the flag."""
    if not value:
        raise ConfigError(
            f"no {what} given: pass {flag} (or set it in the --config TOML)."
        )
    return Path(value)


def part_problem(text: str) -> str | None:
    try:
        parse_part(text)
    except ConfigError:
        return "must be i/n with 0 <= i < n, e.g. 0/4 (or empty: the whole job)"
    return None


described("i/n with 0 <= i < n, or empty", part_problem)


def gamma_problem(value: Any) -> str | None:
    """teacher.gamma: a scale above 0, or "model" (the weights' own logit_scale.exp())."""
    if isinstance(value, str):
        return None if value == "model" else 'must be a number above 0 or "model"'
    return above(0)(value)


described('> 0, or "model"', gamma_problem)


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` (value in TOML syntax, bare words taken as strings) -> nested
    dict.
    """
    if "=" not in text:
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE, e.g. --set loss.distill=500"
        )
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    node: dict[str, Any] = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = parsed
    return node
