"""configs/baselines/: each paper baseline differs from its EoID recipe exactly where
its header says.
"""

import re
import tomllib
from pathlib import Path

import pytest

from eoid.config import TrainConfig, to_dict
from eoid.config_loading import load_config

ROOT = Path(__file__).resolve().parents[1]
BASELINES = sorted((ROOT / "configs" / "baselines").glob("*.toml"))
COUNTERPART = re.compile(r"^# Its EoID counterpart is (\S+?);")
# "#   loss.distill = 0.0   why"
DECLARED = re.compile(r"^#   ([a-z_.]+) = (\S+)\s{2,}\S")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(
            _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        )
    return out


def _header(path: Path) -> tuple[Path, dict]:
    """(the counterpart recipe, {field: value}) as the file's header comment states
    them.
    """
    lines = path.read_text().split("\nbase = ")[0].splitlines()
    counterpart = [m[1] for m in map(COUNTERPART.match, lines) if m]
    declared = {
        m[1]: tomllib.loads(f"v = {m[2]}")["v"] for m in map(DECLARED.match, lines) if m
    }
    assert len(counterpart) == 1 and declared, (
        f"{path.name}: header names no counterpart or fields"
    )
    return path.parent / counterpart[0], declared


def test_there_is_a_cdn_baseline_for_every_zero_shot_setting_eoid_trains():
    names = {p.stem for p in BASELINES}
    assert {
        "cdn_ua",
        "cdn_rf_uc_138",
        "cdn_nf_uc",
        "cdn_rf_uc",
        "cdn_uo",
        "cdn_uv",
    } <= names
    assert {f"cdn_uc{i}" for i in range(5)} <= names


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_a_baseline_differs_from_its_eoid_recipe_exactly_in_the_fields_its_header_says(
    path,
):
    counterpart, declared = _header(path)
    ours = _flat(to_dict(load_config(TrainConfig, path)))
    theirs = _flat(to_dict(load_config(TrainConfig, counterpart)))
    differ = {k for k in ours if ours[k] != theirs[k]} - {"out"}
    assert differ == set(declared), (
        f"{path.name}: header {sorted(declared)}, files {sorted(differ)}"
    )
    assert {k: ours[k] for k in differ} == declared
    # same zero-shot setting
    assert ours["data.setting"] == theirs["data.setting"] != ""


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_a_plain_cdn_baseline_has_no_teacher_no_is_loss_no_stage_two_and_no_detach(
    path,
):
    cfg = load_config(TrainConfig, path)
    assert cfg.cache == "" and cfg.loss.distill == 0 and not cfg.online_teacher
    assert (
        cfg.loss.interactive == 0
        and cfg.data.unknown_pairs == "none"
        and not cfg.student.detach
    )
    assert not cfg.post.use_interactive_score


@pytest.mark.slow
def test_the_ua_baseline_trains_as_shipped_without_a_cache_or_stage_two(two_steps_of):
    # the tiny student on a small synthetic world (its own UA setting), two iterations
    steps = two_steps_of(ROOT / "configs" / "baselines" / "cdn_ua.toml")
    assert len(steps) == 2
    for row in steps:
        assert not [
            k
            for k in row
            if k.startswith("loss_") and ("distill" in k or k.startswith("loss_is"))
        ]
        assert row["num_unknown_assigned"] == 0 and row["num_labelled_matched"] > 0
